"""Database errors the worker survives, and how it recovers from them."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError

from ..backends.base import Backend
from ..exceptions import BackendError

logger = logging.getLogger("django_rexecutor.worker")

try:
    import psycopg

    _PSYCOPG_ERRORS: tuple[type[Exception], ...] = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
    )
except ImportError:  # pragma: no cover - psycopg is a dependency, but SQLite needs none
    _PSYCOPG_ERRORS = ()

#: Raised when the database is unreachable, restarts, kills our connection or is locked; the
#: worker retries these. Anything else (a missing table, a bug) is not retried.
DB_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    BackendError,
    *_PSYCOPG_ERRORS,
)


def drop_connection(backend: Backend) -> None:
    """Close the calling thread's connection of ``backend`` so the next query opens a new one
    (Django does not reconnect a broken connection by itself outside requests)."""
    backend.drop_connection()
