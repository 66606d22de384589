"""What every part of the Django backend shares: the database alias, its engine, the job
tables' managers, transactions and the database's clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet

from ...job import ErrorDetails
from ...models import JobErrorRecord, JobQuerySet, JobRecord
from ..base import Backend
from .engines import Engine, engine_for


class DjangoBase(Backend):
    """The state the parts (``Enqueueing``, ``Claiming``, …) build on; ``DjangoBackend``
    combines them."""

    def __init__(self, alias: str | None = None) -> None:
        if alias is None:
            from ...conf import rexecutor_settings

            alias = rexecutor_settings.DATABASE
        self.alias = alias
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The engine of the alias's database vendor, chosen on first use (so configuring an
        alias of an unsupported database fails when the backend is used, with a message
        naming it, not when settings are read)."""
        engine = self._engine
        if engine is None:
            engine = self._engine = engine_for(connections[self.alias])
        return engine

    @property
    def vendor(self) -> str:
        return str(connections[self.alias].vendor)

    @property
    def jobs(self) -> JobQuerySet:
        return JobRecord.objects.using(self.alias)

    @property
    def errors(self) -> QuerySet[JobErrorRecord]:
        return JobErrorRecord.objects.using(self.alias)

    def _atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.alias)

    def _add_error(self, job_id: int, attempt: int, error: ErrorDetails, at: Any) -> None:
        error_record(job_id, attempt, error, at).save(using=self.alias, force_insert=True)

    def current_time(self) -> datetime:
        return self.engine.current_time()


def error_record(job_id: int, attempt: int, error: ErrorDetails, at: Any) -> JobErrorRecord:
    """The row of one entry of a job's error history (``at``: a time or ``Now()``)."""
    return JobErrorRecord(
        job_id=job_id,
        attempt=attempt,
        error_type=error.error_type,
        message=error.message,
        traceback=error.traceback,
        recorded_at=at,
    )


__all__ = ["DjangoBase", "error_record"]
