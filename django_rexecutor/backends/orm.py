"""The production backend: jobs in Django models, on PostgreSQL or SQLite.

Enqueue runs in the caller's transaction on the configured alias. Claims are one
``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` statement on PostgreSQL;
on SQLite the same statement is safe because SQLite runs one writer at a time. Result writes are
fenced by status, attempt and worker (see ``backends.base``)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models import DateTimeField, F, Min, Q, TextField, Value
from django.db.models.functions import Cast, Greatest, Least, Now
from django.utils import timezone

from ..exceptions import InvalidTransition, JobNotFound
from ..job import Job, JobError, JobId
from ..models import JobErrorRecord, JobRecord, WorkerRecord
from ..query import Query
from ..status import READY_STATUSES, TERMINAL_STATUSES, ErrorType, JobStatus
from ..uniqueness import UniquenessCriteria
from .base import (
    Backend,
    BulkResult,
    Claim,
    EnqueuableJob,
    ErrorDetails,
    PruneRule,
    PruneSpec,
    SkipReason,
    WorkerInfo,
    rerun_status,
    skip_reason,
    snoozed_status,
)
from .compiler import compile_query
from .sql import (
    COMPLETE_SQL,
    COPY_SQL,
    EARLIEST,
    FENCE_CHUNK,
    FINISHED_AT,
    INSERT_SQL,
    JOB_FIELDS,
    JSON_FIELDS,
    LATEST,
    READY,
    RESERVE_IDS_SQL,
    SCHEDULED,
    TIMESTAMPS,
    claim_sql,
    hot_cursor,
    job_from_row,
    server_bound_cursor,
    to_json,
    unreadable_message,
)

logger = logging.getLogger("django_rexecutor.backends")


class DjangoBackend(Backend):
    """Jobs stored through the Django ORM in the ``REXECUTOR["DATABASE"]`` alias."""

    supports_transactions = True

    def __init__(self, alias: str | None = None) -> None:
        if alias is None:
            from ..conf import rexecutor_settings

            alias = rexecutor_settings.DATABASE
        self.alias = alias

    def __repr__(self) -> str:
        return f"DjangoBackend(alias={self.alias!r})"

    @property
    def vendor(self) -> str:
        return connections[self.alias].vendor

    @property
    def supports_notifications(self) -> bool:  # type: ignore[override]
        return self.vendor == "postgresql"

    def using(self, alias: str) -> DjangoBackend:
        return self if alias == self.alias else type(self)(alias)

    @property
    def jobs(self) -> Any:
        return JobRecord.objects.using(self.alias)

    def _atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.alias)

    # -- enqueue -------------------------------------------------------------------------
    def _record(self, job: EnqueuableJob) -> JobRecord:
        return JobRecord(
            executor=job.executor,
            status=JobStatus.SCHEDULED,
            data=job.data,
            metadata=job.metadata,
            max_attempts=job.max_attempts,
            priority=job.priority,
            tags=list(job.tags),
            scheduled_at=job.scheduled_at,
            inserted_at=timezone.now(),
            unique_key=job.unique_key,
        )

    def _row(self, job: EnqueuableJob, now: datetime) -> tuple[Any, ...]:
        """The values of ``INSERT_COLUMNS`` for a new job, JSON already encoded."""
        return (
            job.executor,
            SCHEDULED,
            None if job.data is None else to_json(job.data),
            None if job.metadata is None else to_json(job.metadata),
            0,
            job.max_attempts,
            job.priority,
            to_json(list(job.tags)) if job.tags else "[]",
            job.unique_key,
            now,
            job.scheduled_at,
        )

    def _insert(self, job: EnqueuableJob) -> int:
        """Insert one job and return its id. On PostgreSQL this is one ``INSERT … RETURNING``
        on the alias's cursor (so it joins the caller's transaction), without a model
        instance: ``Model.save()`` costs more CPU than the database round trip itself."""
        connection = connections[self.alias]
        if connection.vendor != "postgresql":
            record = self._record(job)
            record.save(using=self.alias, force_insert=True)
            return int(record.pk)
        with server_bound_cursor(connection) as cursor:
            cursor.execute(INSERT_SQL, self._row(job, timezone.now()))
            return int(cursor.fetchone()[0])

    def enqueue(self, job: EnqueuableJob) -> JobId:
        criteria = job.uniqueness
        if criteria is None or criteria.disabled:
            return JobId(self._insert(job))
        with self._atomic():
            self._lock(criteria.lock_id(job.executor))
            existing = self._find_duplicate(job, criteria)
            if existing is not None:
                self._apply_replace(existing, job, criteria)
                return JobId(existing.pk, inserted=False)
            return JobId(self._insert(job))

    def enqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        if any(j.uniqueness is not None and not j.uniqueness.disabled for j in jobs):
            with self._atomic():
                return [self.enqueue(j) for j in jobs]
        if not jobs:
            return []
        if self.vendor == "postgresql":
            return [JobId(i) for i in self._copy_in(jobs)]
        records = self.jobs.bulk_create([self._record(j) for j in jobs], batch_size=5000)
        return [JobId(r.pk) for r in records]

    def _copy_in(self, jobs: Sequence[EnqueuableJob]) -> list[int]:
        """Bulk insert with ``COPY``: reserve the ids from the table's sequence in one query,
        then stream the rows with those ids, so they come back in order without ``RETURNING``
        (which ``COPY`` lacks). The insert trigger still fires once for the statement."""
        connection = connections[self.alias]
        now = timezone.now()
        with self._atomic(), connection.cursor() as cursor:
            cursor.execute(RESERVE_IDS_SQL, [len(jobs)])
            ids = sorted(row[0] for row in cursor.fetchall())
            with cursor.cursor.copy(COPY_SQL) as copy:
                for job_id, job in zip(ids, jobs, strict=True):
                    copy.write_row((job_id, *self._row(job, now)))
        return ids

    def _lock(self, lock_id: int) -> None:
        """Serialise enqueues that could conflict until this transaction ends."""
        with connections[self.alias].cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
            else:
                # A write statement takes SQLite's write lock for the rest of the
                # transaction, so no other process can insert a duplicate meanwhile.
                cursor.execute(f"UPDATE {JobRecord._meta.db_table} SET id = id WHERE 0")

    def _find_duplicate(self, job: EnqueuableJob, criteria: UniquenessCriteria) -> JobRecord | None:
        qs = self.jobs.filter(status__in=[s.value for s in criteria.statuses])
        if criteria.has_key:
            qs = qs.filter(unique_key=criteria.key_hash)
        if criteria.executor:
            qs = qs.filter(executor=job.executor)
        if criteria.window is not None:
            qs = qs.filter(
                scheduled_at__gte=job.scheduled_at - criteria.window,
                scheduled_at__lte=job.scheduled_at + criteria.window,
            )
        return qs.select_for_update().order_by("id").first()

    def _apply_replace(
        self, existing: JobRecord, job: EnqueuableJob, criteria: UniquenessCriteria
    ) -> None:
        replace = criteria.on_conflict_replace
        if replace is None or existing.status not in replace.statuses:
            return
        for name in replace.fields:
            setattr(existing, name, getattr(job, name))
        existing.save(using=self.alias, update_fields=sorted(replace.fields))

    # -- claiming ------------------------------------------------------------------------
    def claim_jobs(self, worker_id: str, capacity: Mapping[str, int], limit: int) -> list[Job]:
        wanted = {name: min(n, limit) for name, n in capacity.items() if n > 0}
        if limit <= 0 or not wanted:
            return []
        connection = connections[self.alias]
        sql, params = claim_sql(connection.vendor, worker_id, wanted, limit)
        # One statement, so autocommit makes it atomic without a BEGIN/COMMIT round trip. The
        # rows become ``Job`` values directly: model instances cost more than the claim itself.
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        with_errors = [row[0] for row in rows if row[-1]]
        errors = self._errors_of(with_errors) if with_errors else {}
        jobs: list[Job] = []
        for row in rows:
            job = job_from_row(row, errors, connection)
            if job.unreadable:
                self._discard_unreadable(job)
            else:
                jobs.append(job)
        jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
        return jobs

    def _discard_unreadable(self, job: Job) -> None:
        """A claimed row that cannot become a ``Job`` fails alone and for good (retrying
        cannot fix it): discarded under this claim, with an error naming the bad fields.
        The jobs claimed with it run normally."""
        problem = unreadable_message(job)
        error = ErrorDetails(ErrorType.UNREADABLE, problem)
        logger.error(
            "Job %s (%s) attempt %s discarded: %s", job.id, job.executor, job.attempt, problem
        )
        try:
            self.mark_job_discarded(job.id, error, claim=Claim.of(job))
        except DatabaseError:
            # The good jobs of this claim must still run; the rescue pass returns this one.
            logger.exception("Could not discard job %s", job.id)

    def _errors_of(
        self, job_ids: Sequence[int], *, tracebacks: bool = True
    ) -> dict[int, list[JobError]]:
        """The error histories of ``job_ids``, oldest first; without the traceback texts
        (``""``) unless ``tracebacks``."""
        out: dict[int, list[JobError]] = {}
        if not job_ids:
            return out
        traceback: Any = "traceback" if tracebacks else Value("", output_field=TextField())
        rows = (
            JobErrorRecord.objects.using(self.alias)
            .filter(job_id__in=job_ids)
            .values_list("job_id", "attempt", "error_type", "message", traceback, "recorded_at")
        )
        for job_id, *error in rows:
            out.setdefault(job_id, []).append(JobError(*error))
        return out

    def next_scheduled_at(self, executors: Collection[str]) -> datetime | None:
        # Clamped to the times Python can represent: a row scheduled at ``-infinity`` is due
        # (the claim takes and discards it), one at ``infinity`` never is.
        due = Least(Greatest("scheduled_at", Value(EARLIEST)), Value(LATEST))
        result = self.jobs.filter(status__in=READY, executor__in=list(executors)).aggregate(
            at=Min(due, output_field=DateTimeField())
        )
        return result["at"]

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        """On PostgreSQL, wait on LISTEN/NOTIFY (``backends.notify``) up to ``timeout``;
        elsewhere just sleep: the caller's polling is the guarantee either way."""
        if self.vendor == "postgresql":
            from .notify import get_notifier

            get_notifier(self.alias).wait(executors, timeout)
        else:
            time.sleep(max(0.0, timeout))

    # -- results -------------------------------------------------------------------------
    def _write_result(
        self,
        job_id: int,
        claim: Claim | None,
        updates: dict[str, Any],
        error: ErrorDetails | None,
    ) -> bool:
        """Apply ``updates`` to the job if it is still executing under ``claim``; a job whose
        cancellation was requested becomes cancelled instead."""
        with self._atomic():
            qs = self.jobs.filter(pk=job_id, status=JobStatus.EXECUTING)
            if claim is not None:
                qs = qs.filter(attempt=claim.attempt, claimed_by=claim.worker_id)
            row = (
                qs.select_for_update()
                .values("attempt", "cancel_requested_at", "cancel_reason")
                .first()
            )
            if row is None:
                if not self.jobs.filter(pk=job_id).exists():
                    raise JobNotFound(job_id)
                return False
            now = timezone.now()
            if row["cancel_requested_at"] is not None:
                updates = {"status": JobStatus.CANCELLED, "cancelled_at": now}
                reason = row["cancel_reason"] or "cancelled while running"
                error = ErrorDetails(ErrorType.CANCELLED, reason)
            self.jobs.filter(pk=job_id).update(**updates)
            if error is not None:
                self._add_error(job_id, row["attempt"], error, now)
            return True

    def _add_error(self, job_id: int, attempt: int, error: ErrorDetails, at: datetime) -> None:
        JobErrorRecord.objects.using(self.alias).create(
            job_id=job_id,
            attempt=attempt,
            error_type=error.error_type,
            message=error.message,
            traceback=error.traceback,
            recorded_at=at,
        )

    def mark_job_complete(
        self, job_id: int, *, claim: Claim | None = None, result: Any = None
    ) -> bool:
        updates = {"status": JobStatus.COMPLETE, "completed_at": timezone.now(), "result": result}
        return self._write_result(job_id, claim, updates, None)

    def mark_job_retryable(
        self,
        job_id: int,
        next_scheduled_at: datetime,
        error: ErrorDetails,
        *,
        claim: Claim | None = None,
    ) -> bool:
        updates = {"status": JobStatus.RETRYABLE, "scheduled_at": next_scheduled_at}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_discarded(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        updates = {"status": JobStatus.DISCARDED, "discarded_at": timezone.now()}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_cancelled(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        updates = {"status": JobStatus.CANCELLED, "cancelled_at": timezone.now()}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_snoozed(
        self, job_id: int, next_scheduled_at: datetime, *, claim: Claim | None = None
    ) -> bool:
        return self._give_back(job_id, next_scheduled_at, claim)

    def _give_back(self, job_id: int, at: datetime, claim: Claim | None) -> bool:
        attempt = self.jobs.filter(pk=job_id).values_list("attempt", flat=True).first()
        if attempt is None:
            raise JobNotFound(job_id)
        updates = {
            "status": snoozed_status(attempt - 1),
            "attempt": F("attempt") - 1,
            "scheduled_at": at,
        }
        return self._write_result(job_id, claim, updates, None)

    def complete_jobs(self, claims: Sequence[Claim]) -> int:
        if not claims:
            return 0
        connection = connections[self.alias]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        completed: set[int] = set()
        # One autocommitted statement per chunk (atomic on its own, one round trip), fenced
        # by (id, attempt, worker) and skipping cancel-requested jobs.
        with hot_cursor(connection) as cursor:
            for start in range(0, len(claims), FENCE_CHUNK):
                chunk = claims[start : start + FENCE_CHUNK]
                fence = ", ".join(["(%s, %s, %s)"] * len(chunk))
                params: list[Any] = [now]
                for c in chunk:
                    params += (c.job_id, c.attempt, c.worker_id)
                cursor.execute(COMPLETE_SQL.format(fence=fence), params)
                completed.update(row[0] for row in cursor.fetchall())
        written = len(completed)
        # The rest were cancelled meanwhile, are stale or gone: settle them one by one.
        for c in claims:
            if c.job_id not in completed:
                with contextlib.suppress(JobNotFound):
                    written += self.mark_job_complete(c.job_id, claim=c)
        return written

    def release_jobs(self, claims: Sequence[Claim]) -> int:
        now = timezone.now()
        released = 0
        for c in claims:
            with contextlib.suppress(JobNotFound):
                released += self._give_back(c.job_id, now, c)
        return released

    # -- management ----------------------------------------------------------------------
    def _locked(self, job_id: int, executor: str | None) -> JobRecord:
        record = self.jobs.select_for_update().filter(pk=job_id).first()
        if record is None or (executor is not None and record.executor != executor):
            raise JobNotFound(job_id, f"for executor {executor!r}." if executor else "")
        return record

    def _fresh(self, job_id: int) -> Job:
        return next(self._read_jobs(self.jobs.filter(pk=job_id), 1, True))

    def cancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        with self._atomic():
            record = self._locked(job_id, executor)
            status = JobStatus(record.status)
            now = timezone.now()
            if status in TERMINAL_STATUSES:
                raise InvalidTransition(
                    job_id, status, "cancel", "Only waiting or running jobs can be cancelled."
                )
            if status == JobStatus.EXECUTING:
                if record.cancel_requested_at is None:
                    self.jobs.filter(pk=job_id).update(
                        cancel_requested_at=now, cancel_reason=reason
                    )
            else:
                self.jobs.filter(pk=job_id).update(status=JobStatus.CANCELLED, cancelled_at=now)
                self._add_error(
                    job_id, record.attempt, ErrorDetails(ErrorType.CANCELLED, reason), now
                )
            return self._fresh(job_id)

    def rerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        with self._atomic():
            record = self._locked(job_id, executor)
            status = JobStatus(record.status)
            if status in (JobStatus.EXECUTING, JobStatus.SCHEDULED):
                raise InvalidTransition(
                    job_id, status, "rerun", "Only finished or retryable jobs can be rerun."
                )
            self.jobs.filter(pk=job_id).update(
                status=rerun_status(record.attempt),
                max_attempts=F("max_attempts") + 1,
                scheduled_at=timezone.now(),
                completed_at=None,
                cancelled_at=None,
                discarded_at=None,
                cancel_requested_at=None,
                result=None,
            )
            return self._fresh(job_id)

    #: Ids handled per transaction by the bulk operations (well under SQLite's variable limit).
    bulk_batch_size = 500

    def _bulk_rows(
        self, ids: Sequence[int], executor: str | None
    ) -> dict[int, tuple[JobStatus, int]]:
        """(status, attempt) of the jobs among ``ids`` (of ``executor``), locked."""
        qs = self.jobs.select_for_update().filter(pk__in=ids)
        if executor is not None:
            qs = qs.filter(executor=executor)
        return {
            pk: (JobStatus(status), attempt)
            for pk, status, attempt in qs.values_list("pk", "status", "attempt")
        }

    def rerun_jobs(self, job_ids: Iterable[int], *, executor: str | None = None) -> BulkResult:
        ids = list(dict.fromkeys(int(i) for i in job_ids))
        done: list[int] = []
        skipped: dict[int, str] = {}
        for start in range(0, len(ids), self.bulk_batch_size):
            chunk = ids[start : start + self.bulk_batch_size]
            with self._atomic():
                rows = self._bulk_rows(chunk, executor)
                by_status: dict[JobStatus, list[int]] = {}
                for pk in chunk:
                    if pk not in rows:
                        skipped[pk] = SkipReason.NOT_FOUND
                        continue
                    status, attempt = rows[pk]
                    if status in (JobStatus.EXECUTING, JobStatus.SCHEDULED):
                        skipped[pk] = skip_reason(status)
                        continue
                    by_status.setdefault(rerun_status(attempt), []).append(pk)
                    done.append(pk)
                now = timezone.now()
                for new_status, pks in by_status.items():
                    self.jobs.filter(pk__in=pks).update(
                        status=new_status,
                        max_attempts=F("max_attempts") + 1,
                        scheduled_at=now,
                        completed_at=None,
                        cancelled_at=None,
                        discarded_at=None,
                        cancel_requested_at=None,
                        result=None,
                    )
        return BulkResult(tuple(done), skipped)

    def cancel_jobs(
        self, job_ids: Iterable[int], reason: str, *, executor: str | None = None
    ) -> BulkResult:
        ids = list(dict.fromkeys(int(i) for i in job_ids))
        done: list[int] = []
        requested: list[int] = []
        skipped: dict[int, str] = {}
        for start in range(0, len(ids), self.bulk_batch_size):
            chunk = ids[start : start + self.bulk_batch_size]
            with self._atomic():
                rows = self._bulk_rows(chunk, executor)
                waiting: list[tuple[int, int]] = []
                running: list[int] = []
                for pk in chunk:
                    if pk not in rows:
                        skipped[pk] = SkipReason.NOT_FOUND
                        continue
                    status, attempt = rows[pk]
                    if status in TERMINAL_STATUSES:
                        skipped[pk] = skip_reason(status)
                    elif status == JobStatus.EXECUTING:
                        running.append(pk)
                    else:
                        waiting.append((pk, attempt))
                    if pk not in skipped:
                        done.append(pk)
                now = timezone.now()
                if waiting:
                    self.jobs.filter(pk__in=[pk for pk, _ in waiting]).update(
                        status=JobStatus.CANCELLED, cancelled_at=now
                    )
                    JobErrorRecord.objects.using(self.alias).bulk_create(
                        JobErrorRecord(
                            job_id=pk,
                            attempt=attempt,
                            error_type=ErrorType.CANCELLED,
                            message=reason,
                            recorded_at=now,
                        )
                        for pk, attempt in waiting
                    )
                if running:
                    self.jobs.filter(pk__in=running, cancel_requested_at__isnull=True).update(
                        cancel_requested_at=now, cancel_reason=reason
                    )
                    requested += running
        return BulkResult(tuple(done), skipped, tuple(requested))

    def update_job(self, job: Job, *, executor: str | None = None) -> Job:
        from ..encoding import to_json_native
        from ..validation import check_aware, check_max_attempts, check_priority, check_tags

        fields = {
            "data": to_json_native(job.data, what="data"),
            "metadata": to_json_native(job.metadata, what="metadata"),
            "max_attempts": check_max_attempts(job.max_attempts),
            "priority": check_priority(job.priority),
            "tags": check_tags(job.tags),
            "scheduled_at": check_aware(job.scheduled_at, name="scheduled_at"),
        }
        with self._atomic():
            record = self._locked(job.id, executor)
            status = JobStatus(record.status)
            if status not in READY_STATUSES:
                raise InvalidTransition(
                    job.id, status, "update", "Only waiting jobs can be updated."
                )
            self.jobs.filter(pk=job.id).update(**fields)
            return self._fresh(job.id)

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
        the primary key), each row decoded on its own (``sql.job_from_row``)."""
        connection = connections[self.alias]
        columns = {f"rx_{f}": Cast(f, TextField()) for f in TIMESTAMPS + JSON_FIELDS}
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

    # -- pruning -------------------------------------------------------------------------
    def prune_jobs(self, spec: PruneSpec) -> int:
        return sum(self._prune_rule(rule, spec.batch_size) for rule in spec.rules)

    def _rule_queryset(self, rule: PruneRule) -> Any:
        qs = self.jobs.filter(status=rule.status)
        if rule.only is not None:
            qs = qs.filter(executor__in=sorted(rule.only))
        if rule.except_ is not None:
            qs = qs.exclude(executor__in=sorted(rule.except_))
        if rule.status in TERMINAL_STATUSES:
            return qs.annotate(aged_at=FINISHED_AT)
        return qs.annotate(aged_at=F("scheduled_at"))

    def _prune_rule(self, rule: PruneRule, batch_size: int) -> int:
        qs = self._rule_queryset(rule)
        deleted = 0
        while True:
            if rule.max_age is not None:
                batch = qs.filter(aged_at__lt=timezone.now() - rule.max_age)
                ids = list(batch.order_by("id").values_list("pk", flat=True)[:batch_size])
            else:
                newest_first = qs.order_by(F("aged_at").desc(nulls_last=True), "-id")
                keep = rule.max_length or 0
                ids = list(newest_first.values_list("pk", flat=True)[keep : keep + batch_size])
            if not ids:
                return deleted
            deleted += self.delete_jobs(ids)

    def delete_jobs(self, ids: Sequence[int]) -> int:
        """Delete jobs and their errors in one short transaction, without Django's cascade
        collector (which would load every error row)."""
        if self.vendor == "postgresql":
            # One array parameter is much cheaper to send and plan than thousands of IN items,
            # and has no parameter-count limit.
            id_list = [int(i) for i in ids]
            errors, jobs = JobErrorRecord._meta.db_table, JobRecord._meta.db_table
            with self._atomic(), connections[self.alias].cursor() as cursor:
                cursor.execute(f"DELETE FROM {errors} WHERE job_id = ANY(%s)", [id_list])
                cursor.execute(f"DELETE FROM {jobs} WHERE id = ANY(%s)", [id_list])
                return int(cursor.rowcount)
        with self._atomic():
            JobErrorRecord.objects.using(self.alias).filter(job_id__in=ids)._raw_delete(self.alias)
            return int(self.jobs.filter(pk__in=ids)._raw_delete(self.alias))

    # -- workers -------------------------------------------------------------------------
    def record_heartbeat(
        self,
        worker_id: str,
        *,
        executors: Collection[str],
        concurrency: int,
        running: Collection[int] = (),
    ) -> None:
        import os
        import socket

        workers = WorkerRecord.objects.using(self.alias)
        fields = {"heartbeat_at": Now(), "running": sorted(running)}
        if workers.filter(pk=worker_id).update(**fields):
            return
        workers.create(
            worker_id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            executors=sorted(executors),
            concurrency=concurrency,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            running=sorted(running),
        )

    def remove_worker(self, worker_id: str) -> None:
        WorkerRecord.objects.using(self.alias).filter(pk=worker_id).delete()

    def live_workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                worker_id=w.worker_id,
                hostname=w.hostname,
                pid=w.pid,
                executors=list(w.executors),
                concurrency=w.concurrency,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                running=list(w.running),
            )
            for w in WorkerRecord.objects.using(self.alias).order_by("-heartbeat_at")
        ]

    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        workers = WorkerRecord.objects.using(self.alias)
        # Compare in the database's clock, so skewed worker clocks cannot rescue live jobs.
        alive = workers.filter(heartbeat_at__gte=Now() - after).values("worker_id")
        orphans = list(
            self.jobs.filter(status=JobStatus.EXECUTING)
            .filter(Q(claimed_by__isnull=True) | ~Q(claimed_by__in=alive))
            .values_list("pk", "attempt", "claimed_by")
        )
        rescued: list[int] = []
        for job_id, attempt, worker_id in orphans:
            claim = Claim(job_id, attempt, worker_id) if worker_id else None
            record = self.jobs.filter(pk=job_id).values("max_attempts").first()
            if record is None:
                continue
            error = ErrorDetails(
                ErrorType.ORPHANED,
                f"worker {worker_id or '?'} stopped sending heartbeats while running attempt"
                f" {attempt}",
            )
            if attempt >= record["max_attempts"]:
                written = self.mark_job_discarded(job_id, error, claim=claim)
            else:
                written = self.mark_job_retryable(job_id, timezone.now(), error, claim=claim)
            if written:
                rescued.append(job_id)
        workers.filter(heartbeat_at__lt=Now() - after).delete()
        return rescued

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        if not job_ids:
            return set()
        return set(
            self.jobs.filter(pk__in=list(job_ids), cancel_requested_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
