"""Database errors the worker survives, and the connection care around jobs and after errors."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
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
    try:
        backend.drop_connection()
    except Exception:
        logger.debug("Closing a broken connection failed", exc_info=True)


def tidy_connections(backend: Backend) -> None:
    """``backend.tidy_connections()`` for the calling thread (by default Django's
    ``close_old_connections()``, as around a request): closes a connection past its
    ``CONN_MAX_AGE`` or broken by an earlier error, so the next query reconnects. Called around
    every attempt; a failure here is not the job's."""
    try:
        backend.tidy_connections()
    except Exception:
        logger.debug("Closing old database connections failed", exc_info=True)


async def atidy_connections(backend: Backend) -> None:
    """``tidy_connections`` in the thread where Django's async ORM runs its queries (the one
    ``sync_to_async`` uses for thread-sensitive calls), whose connection nothing else tidies."""
    await sync_to_async(tidy_connections)(backend)
