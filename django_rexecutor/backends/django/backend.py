"""The production backend: jobs in Django models, on any database that has an engine.

``DjangoBackend`` combines the parts, each written once against Django's ORM and the
``Engine`` of the alias's database vendor (``engines/``): ``enqueue`` (inserts in the caller's
transaction, uniqueness, a cron tick's job), ``claims`` (claims, fenced result writes, batched
completion), ``changes`` (cancel, rerun, update), ``reading`` (queries) and ``upkeep``
(pruning, cron tick records, locks, heartbeats, rescue). What differs between databases is the
engine's; nothing here asks which database it is."""

from __future__ import annotations

import logging
from collections.abc import Collection

from django.db import connections

from ...notifiers.base import Notifier
from .changes import Changing
from .claims import Claiming
from .enqueue import Enqueueing
from .observing import Observing
from .upkeep import Upkeep
from .workflows import WorkflowSteps

logger = logging.getLogger("django_rexecutor.backends")


class DjangoBackend(Enqueueing, Claiming, Changing, Upkeep, Observing, WorkflowSteps):
    """Jobs stored through the Django ORM in the ``REXECUTOR["DATABASE"]`` alias."""

    def __repr__(self) -> str:
        return f"DjangoBackend(alias={self.alias!r})"

    @property
    def supports_notifications(self) -> bool:  # type: ignore[override]
        return self.engine.supports_notifications

    @property
    def supports_parallel_writes(self) -> bool:  # type: ignore[override]
        return self.engine.supports_parallel_writes

    @property
    def database(self) -> str:  # type: ignore[override]
        return self.alias

    @property
    def store(self) -> str:
        return f"{self.alias} ({self.vendor})"

    def using(self, alias: str) -> DjangoBackend:
        return self if alias == self.alias else type(self)(alias)

    def notifier(self) -> Notifier:
        return self.engine.notifier()

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        """Wait on the engine's notifications (PostgreSQL: LISTEN/NOTIFY) up to ``timeout``,
        or just sleep without them: the caller's polling is the guarantee either way."""
        self.engine.wait_for_jobs(executors, timeout)

    def drop_connection(self) -> None:
        try:
            connections[self.alias].close()
        except Exception:
            logger.debug("Closing a broken connection failed", exc_info=True)
