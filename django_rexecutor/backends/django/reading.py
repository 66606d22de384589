"""Reading jobs: queries by id in keyset pages, error histories, and when the next job of some
executors is due. Rows become ``Job`` values through ``rows.job_from_row``."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, Min, TextField, Value
from django.db.models.functions import Cast, Greatest, Least

from ...job import Job, JobError
from ...models import JSON_FIELDS, TIMESTAMP_FIELDS, PausedExecutorRecord
from ...query import Query
from ...status import READY_STATUSES
from .base import DjangoBase
from .compiler import compile_query
from .rows import JOB_FIELDS, LATER_TIMESTAMPS, job_from_row

READY = sorted(s.value for s in READY_STATUSES)
#: The earliest and latest times Python can represent; stored times beyond them are clamped
#: where the library only compares them (``next_scheduled_at``).
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


class Reading(DjangoBase):
    #: Rows read per statement by ``query`` (and the error histories of as many jobs).
    query_batch_size = 500

    def query(
        self,
        query: Query,
        *,
        limit: int | None = None,
        after_id: int | None = None,
        tracebacks: bool = True,
    ) -> list[Job]:
        qs = self.jobs.filter(compile_query(query))
        if after_id is not None:
            qs = qs.filter(pk__gt=after_id)
        return list(self._read_jobs(qs, limit, tracebacks))

    def _read_jobs(self, qs: Any, limit: int | None, tracebacks: bool) -> Iterator[Job]:
        """The jobs of ``qs`` by id, read ``query_batch_size`` rows at a time (keyset pages on
        the primary key), each row decoded on its own (``rows.job_from_row``)."""
        connection = connections[self.alias]
        cast = (*TIMESTAMP_FIELDS, *JSON_FIELDS, *LATER_TIMESTAMPS)
        columns = {f"rx_{f}": Cast(f, TextField()) for f in cast}
        fields = [f"rx_{f}" if f"rx_{f}" in columns else f for f in JOB_FIELDS]
        rows_of = qs.annotate(**columns).order_by("pk").values_list(*fields)
        last: int | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = min(remaining or self.query_batch_size, self.query_batch_size)
            page = rows_of if last is None else rows_of.filter(pk__gt=last)
            rows = list(page[:size])
            if not rows:
                return
            errors = self._errors_of([row[0] for row in rows], tracebacks=tracebacks)
            for row in rows:
                yield job_from_row(row, errors, connection)
            if len(rows) < size:
                return
            last = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def _fresh(self, job_id: int) -> Job:
        """The job as stored now (it exists)."""
        return next(self._read_jobs(self.jobs.filter(pk=job_id), 1, True))

    def _errors_of(
        self, job_ids: Sequence[int], *, tracebacks: bool = True
    ) -> dict[int, list[JobError]]:
        """The error histories of ``job_ids``, oldest first; without the traceback texts
        (``""``) unless ``tracebacks``."""
        out: dict[int, list[JobError]] = {}
        if not job_ids:
            return out
        traceback: Any = "traceback" if tracebacks else Value("", output_field=TextField())
        rows = self.errors.filter(job_id__in=job_ids).values_list(
            "job_id", "attempt", "error_type", "message", traceback, "recorded_at"
        )
        for job_id, *error in rows:
            out.setdefault(job_id, []).append(JobError(*error))
        return out

    def next_scheduled_at(self, executors: Collection[str]) -> datetime | None:
        # Clamped to the times Python can represent: a row scheduled at ``-infinity`` is due
        # (the claim takes and discards it), one at ``infinity`` never is.
        due = Least(Greatest("scheduled_at", Value(EARLIEST)), Value(LATEST))
        paused = PausedExecutorRecord.objects.using(self.alias).values("executor")
        waiting = self.jobs.filter(status__in=READY, executor__in=list(executors))
        result = waiting.exclude(executor__in=paused).aggregate(
            at=Min(due, output_field=DateTimeField())
        )
        return result["at"]
