"""The production backend: jobs in Django models, on PostgreSQL or SQLite.

Enqueue runs in the caller's transaction on the configured alias. Claims are one
``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` statement on PostgreSQL;
on SQLite the same statement is safe because SQLite runs one writer at a time. Result writes are
fenced by status, attempt and worker (see ``backends.base``)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.db.models import DateTimeField, F, Min, Q, TextField, Value
from django.db.models.functions import Cast, Greatest, Least, Now
from django.utils import timezone

from ..conf import rexecutor_settings
from ..encoding import to_json
from ..exceptions import JobNotFound, UniquenessConflict
from ..job import ErrorDetails, Job, JobError, JobId, storable_text
from ..models import (
    JSON_FIELDS,
    CronTickRecord,
    JobErrorRecord,
    JobRecord,
    UniquenessLockRecord,
    WorkerRecord,
)
from ..notifiers.base import Notifier
from ..query import Query
from ..status import TERMINAL_STATUSES, ErrorType, JobStatus
from ..transitions import (
    CANCELLABLE,
    FINISH_FIELD,
    RERUNNABLE,
    SkipReason,
    cancel_error,
    check_cancel,
    check_rerun,
    check_update,
    orphaned_error,
    rerun_changes,
    rerun_status,
    rescue_outcome,
    running_cancel_error,
    skip_reason,
    snoozed_status,
)
from ..uniqueness import UniquenessCriteria
from ..validation import check_payload_size, check_payloads
from .base import Backend
from .compiler import compile_query
from .sql import (
    COMPLETE_SQL,
    COPY_SQL,
    EARLIEST,
    FENCE_CHUNK,
    FINISHED_AT,
    INSERT_SQL,
    JOB_FIELDS,
    LATEST,
    READY,
    RESERVE_IDS_SQL,
    SCHEDULED,
    TIMESTAMPS,
    claim_sql,
    hot_cursor,
    job_from_row,
    now_sql,
    server_bound_cursor,
    unreadable_message,
)
from .values import BulkResult, Claim, EnqueuableJob, PruneRule, PruneSpec, WorkerInfo

logger = logging.getLogger("django_rexecutor.backends")

_LOCK_TABLE = UniquenessLockRecord._meta.db_table
#: Take the lock row of a uniqueness slot (see ``UniquenessLockRecord``).
LOCK_SLOT_SQL = (
    f"INSERT INTO {_LOCK_TABLE} (slot, version) VALUES (%s, 1)"
    f" ON CONFLICT (slot) DO UPDATE SET version = {_LOCK_TABLE}.version + 1"
)
_CONFLICT_MESSAGE = (
    "A concurrent enqueue for the same uniqueness rule committed after this transaction's "
    "snapshot was taken (isolation level REPEATABLE READ or SERIALIZABLE), so its job cannot "
    "be seen here and nothing was enqueued. Roll back and retry the whole transaction, or "
    "enqueue outside it (or in a READ COMMITTED one)."
)


def _snapshot_per_transaction(connection: Any) -> bool:
    """Whether the connection's transactions read one snapshot throughout (``REPEATABLE READ``
    or ``SERIALIZABLE`` in the alias's ``OPTIONS``)."""
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    level = getattr(connection, "isolation_level", IsolationLevel.READ_COMMITTED)
    return level in (IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE)


def _is_serialization_failure(exc: BaseException) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "40001" or getattr(cause, "pgcode", None) == "40001"


#: What a rescue sets besides the status, to the time of the rescue.
_RESCUE_SETS = {
    JobStatus.RETRYABLE: "scheduled_at",  # due again at once
    JobStatus.DISCARDED: FINISH_FIELD[JobStatus.DISCARDED],
    JobStatus.CANCELLED: FINISH_FIELD[JobStatus.CANCELLED],
}


def advisory_lock_key(name: str) -> int:
    """The PostgreSQL advisory lock key of ``try_lock(name)``: a stable signed 64-bit int."""
    digest = hashlib.blake2b(f"django_rexecutor.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class DjangoBackend(Backend):
    """Jobs stored through the Django ORM in the ``REXECUTOR["DATABASE"]`` alias."""

    #: Orphans rescued per transaction (``rescue_orphaned_jobs``).
    rescue_batch_size = 1000

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

    @property
    def database(self) -> str:  # type: ignore[override]
        return self.alias

    @property
    def store(self) -> str:
        return f"{self.alias} ({self.vendor})"

    def using(self, alias: str) -> DjangoBackend:
        return self if alias == self.alias else type(self)(alias)

    @property
    def jobs(self) -> Any:
        return JobRecord.objects.using(self.alias)

    def _atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.alias)

    # -- enqueue -------------------------------------------------------------------------
    def _record(self, job: EnqueuableJob, limit: int | None) -> JobRecord:
        check_payloads(job, limit)
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

    def _row(self, job: EnqueuableJob, now: datetime, limit: int | None) -> tuple[Any, ...]:
        """The values of ``INSERT_COLUMNS`` for a new job, JSON already encoded (and checked
        against ``MAX_PAYLOAD_BYTES`` as it is)."""
        data, metadata = (
            None if value is None else check_payload_size(to_json(value), what=what, limit=limit)
            for what, value in (("data", job.data), ("metadata", job.metadata))
        )
        tags = check_payload_size(to_json(job.tags), what="tags", limit=limit) if job.tags else "[]"
        return (
            job.executor,
            SCHEDULED,
            data,
            metadata,
            0,
            job.max_attempts,
            job.priority,
            tags,
            job.unique_key,
            now,
            job.scheduled_at,
        )

    def _insert(self, job: EnqueuableJob) -> int:
        """Insert one job and return its id. On PostgreSQL this is one ``INSERT … RETURNING``
        on the alias's cursor (so it joins the caller's transaction), without a model
        instance: ``Model.save()`` costs more CPU than the database round trip itself."""
        connection = connections[self.alias]
        limit = rexecutor_settings.MAX_PAYLOAD_BYTES
        if connection.vendor != "postgresql":
            record = self._record(job, limit)
            record.save(using=self.alias, force_insert=True)
            return int(record.pk)
        row = self._row(job, timezone.now(), limit)
        with server_bound_cursor(connection) as cursor:
            cursor.execute(INSERT_SQL, row)
            return int(cursor.fetchone()[0])

    def enqueue(self, job: EnqueuableJob) -> JobId:
        criteria = job.uniqueness
        if criteria is None or criteria.disabled:
            return JobId(self._insert(job))
        # Checked before the lock: a conflicting enqueue may write this data into another job.
        check_payloads(job, rexecutor_settings.MAX_PAYLOAD_BYTES)
        with self._unique_transaction():
            return self._enqueue_unique(job, criteria)

    def _enqueue_unique(self, job: EnqueuableJob, criteria: UniquenessCriteria) -> JobId:
        """The duplicate check and the insert, inside ``_unique_transaction``."""
        self._lock(criteria.lock_slot(job.executor))
        existing = self._find_duplicate(job, criteria)
        if existing is not None:
            self._apply_replace(existing, job, criteria)
            return JobId(existing.pk, inserted=False)
        return JobId(self._insert(job))

    @contextlib.contextmanager
    def _unique_transaction(self) -> Iterator[None]:
        """A transaction (a savepoint inside the caller's) in which unique enqueues see every
        job committed before their lock was granted.

        Under ``REPEATABLE READ`` and ``SERIALIZABLE`` a transaction reads the snapshot taken
        by its first statement, so an enqueue that waited for the lock could not see the job
        whose commit released it. A transaction of our own is therefore made
        ``READ COMMITTED``; inside the caller's transaction, the lock row's upsert fails with a
        serialization error in that case, which becomes ``UniquenessConflict``."""
        connection = connections[self.alias]
        own = not connection.in_atomic_block and connection.get_autocommit()
        try:
            with self._atomic():
                if (
                    own
                    and connection.vendor == "postgresql"
                    and _snapshot_per_transaction(connection)
                ):
                    with connection.cursor() as cursor:
                        cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                yield
        except OperationalError as exc:
            if _is_serialization_failure(exc):
                raise UniquenessConflict(_CONFLICT_MESSAGE) from exc
            raise

    def enqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        limit = rexecutor_settings.MAX_PAYLOAD_BYTES
        if any(j.uniqueness is not None and not j.uniqueness.disabled for j in jobs):
            for job in jobs:  # all checked before anything is written
                check_payloads(job, limit)
            with self._unique_transaction():
                return [
                    self._enqueue_unique(j, j.uniqueness)
                    if j.uniqueness is not None and not j.uniqueness.disabled
                    else JobId(self._insert(j))
                    for j in jobs
                ]
        if not jobs:
            return []
        if self.vendor == "postgresql":
            return [JobId(i) for i in self._copy_in(jobs, limit)]
        records = self.jobs.bulk_create([self._record(j, limit) for j in jobs], batch_size=5000)
        return [JobId(r.pk) for r in records]

    def _copy_in(self, jobs: Sequence[EnqueuableJob], limit: int | None) -> list[int]:
        """Bulk insert with ``COPY``: reserve the ids from the table's sequence in one query,
        then stream the rows with those ids, so they come back in order without ``RETURNING``
        (which ``COPY`` lacks). The insert trigger still fires once for the statement."""
        connection = connections[self.alias]
        now = timezone.now()
        with self._atomic(), connection.cursor() as cursor:
            cursor.execute(RESERVE_IDS_SQL, [len(jobs)])
            ids = sorted(row[0] for row in cursor.fetchall())
            # Rows are encoded (and size-checked) while the COPY streams, so the database
            # works on the first rows while Python builds the next. A payload over the limit
            # raises mid-stream: the COPY is aborted and the atomic block rolls it back whole.
            with cursor.cursor.copy(COPY_SQL) as copy:
                for job_id, job in zip(ids, jobs, strict=True):
                    copy.write_row((job_id, *self._row(job, now, limit)))
        return ids

    def _lock(self, slot: int) -> None:
        """Serialise enqueues that could conflict until this transaction ends."""
        with connections[self.alias].cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute(LOCK_SLOT_SQL, [slot])
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
        bounds = criteria.window_bounds(job.scheduled_at)
        if bounds is not None:
            qs = qs.filter(scheduled_at__range=bounds)
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
        """On PostgreSQL, wait on LISTEN/NOTIFY (``notifiers.postgresql``) up to ``timeout``;
        elsewhere just sleep: the caller's polling is the guarantee either way."""
        if self.vendor == "postgresql":
            self.notifier().wait(executors, timeout)
        else:
            time.sleep(max(0.0, timeout))

    def notifier(self) -> Notifier:
        if self.vendor == "postgresql":
            from ..notifiers.postgresql import get_notifier

            return get_notifier(self.alias)
        return super().notifier()

    def drop_connection(self) -> None:
        try:
            connections[self.alias].close()
        except Exception:
            logger.debug("Closing a broken connection failed", exc_info=True)

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
            now = Now()
            if row["cancel_requested_at"] is not None:
                updates = {"status": JobStatus.CANCELLED, "cancelled_at": now}
                error = running_cancel_error(row["cancel_reason"])
            self.jobs.filter(pk=job_id).update(**updates)
            if error is not None:
                self._add_error(job_id, row["attempt"], error, now)
            return True

    def _add_error(self, job_id: int, attempt: int, error: ErrorDetails, at: Any) -> None:
        _error_record(job_id, attempt, error, at).save(using=self.alias, force_insert=True)

    def mark_job_complete(
        self, job_id: int, *, claim: Claim | None = None, result: Any = None
    ) -> bool:
        updates = {"status": JobStatus.COMPLETE, "completed_at": Now(), "result": result}
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
        updates = {"status": JobStatus.DISCARDED, "discarded_at": Now()}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_cancelled(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        updates = {"status": JobStatus.CANCELLED, "cancelled_at": Now()}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_snoozed(
        self, job_id: int, next_scheduled_at: datetime, *, claim: Claim | None = None
    ) -> bool:
        return self._give_back(job_id, next_scheduled_at, claim)

    def _give_back(self, job_id: int, at: datetime | Now, claim: Claim | None) -> bool:
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
        completed_sql = COMPLETE_SQL.replace("{now}", now_sql(connection))
        completed: set[int] = set()
        # One autocommitted statement per chunk (atomic on its own, one round trip), fenced
        # by (id, attempt, worker) and skipping cancel-requested jobs.
        with hot_cursor(connection) as cursor:
            for start in range(0, len(claims), FENCE_CHUNK):
                chunk = claims[start : start + FENCE_CHUNK]
                fence = ", ".join(["(%s, %s, %s)"] * len(chunk))
                params: list[Any] = []
                for c in chunk:
                    params += (c.job_id, c.attempt, c.worker_id)
                cursor.execute(completed_sql.replace("{fence}", fence), params)
                completed.update(row[0] for row in cursor.fetchall())
        written = len(completed)
        # The rest were cancelled meanwhile, are stale or gone: settle them one by one.
        for c in claims:
            if c.job_id not in completed:
                with contextlib.suppress(JobNotFound):
                    written += self.mark_job_complete(c.job_id, claim=c)
        return written

    def release_jobs(self, claims: Sequence[Claim]) -> int:
        released = 0
        for c in claims:
            with contextlib.suppress(JobNotFound):
                released += self._give_back(c.job_id, Now(), c)
        return released

    def release_unseen_claims(self, worker_id: str, known: Collection[int]) -> list[int]:
        keep = set(known)
        # Few rows: the jobs a worker runs, plus those of one lost claim.
        executing = self.jobs.filter(status=JobStatus.EXECUTING, claimed_by=worker_id)
        unseen = [
            Claim(pk, attempt, worker_id)
            for pk, attempt in executing.values_list("pk", "attempt")
            if pk not in keep
        ]
        return [c.job_id for c in unseen if self.release_jobs([c])]

    # -- management ----------------------------------------------------------------------
    def _locked(self, job_id: int, executor: str | None) -> JobRecord:
        record = self.jobs.select_for_update().filter(pk=job_id).first()
        if record is None or (executor is not None and record.executor != executor):
            raise JobNotFound(job_id, f"for executor {executor!r}." if executor else "")
        return record

    def _fresh(self, job_id: int) -> Job:
        return next(self._read_jobs(self.jobs.filter(pk=job_id), 1, True))

    def cancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        reason = storable_text(reason)
        with self._atomic():
            record = self._locked(job_id, executor)
            status = JobStatus(record.status)
            now = Now()
            check_cancel(job_id, status)
            if status == JobStatus.EXECUTING:
                if record.cancel_requested_at is None:
                    self.jobs.filter(pk=job_id).update(
                        cancel_requested_at=now, cancel_reason=reason
                    )
            else:
                self.jobs.filter(pk=job_id).update(status=JobStatus.CANCELLED, cancelled_at=now)
                self._add_error(job_id, record.attempt, cancel_error(reason), now)
            return self._fresh(job_id)

    def rerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        with self._atomic():
            record = self._locked(job_id, executor)
            check_rerun(job_id, JobStatus(record.status))
            self.jobs.filter(pk=job_id).update(
                **rerun_changes(record.attempt, max_attempts=F("max_attempts") + 1, now=Now())
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
                # Jobs whose rerun writes the same values (one of their attempt counts, and
                # their ids): one statement per status they go back to.
                by_status: dict[JobStatus, tuple[int, list[int]]] = {}
                for pk in chunk:
                    if pk not in rows:
                        skipped[pk] = SkipReason.NOT_FOUND
                        continue
                    status, attempt = rows[pk]
                    if status not in RERUNNABLE:
                        skipped[pk] = skip_reason(status)
                        continue
                    by_status.setdefault(rerun_status(attempt), (attempt, []))[1].append(pk)
                    done.append(pk)
                now = Now()
                for attempt, pks in by_status.values():
                    self.jobs.filter(pk__in=pks).update(
                        **rerun_changes(attempt, max_attempts=F("max_attempts") + 1, now=now)
                    )
        return BulkResult(tuple(done), skipped)

    def cancel_jobs(
        self, job_ids: Iterable[int], reason: str, *, executor: str | None = None
    ) -> BulkResult:
        reason = storable_text(reason)
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
                    if status not in CANCELLABLE:
                        skipped[pk] = skip_reason(status)
                    elif status == JobStatus.EXECUTING:
                        running.append(pk)
                    else:
                        waiting.append((pk, attempt))
                    if pk not in skipped:
                        done.append(pk)
                now = Now()
                if waiting:
                    self.jobs.filter(pk__in=[pk for pk, _ in waiting]).update(
                        status=JobStatus.CANCELLED, cancelled_at=now
                    )
                    error = cancel_error(reason)
                    JobErrorRecord.objects.using(self.alias).bulk_create(
                        _error_record(pk, attempt, error, now) for pk, attempt in waiting
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
            check_update(job.id, JobStatus(record.status))
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

    def count_prunable(self, rule: PruneRule) -> int:
        qs = self._rule_queryset(rule)
        if rule.max_age is not None:
            return int(qs.filter(aged_at__lt=timezone.now() - rule.max_age).count())
        return max(0, int(qs.count()) - (rule.max_length or 0))

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
                bound = Q(aged_at__lt=timezone.now() - rule.max_age)
                ids = list(
                    qs.filter(bound).order_by("id").values_list("pk", flat=True)[:batch_size]
                )
            else:
                newest_first = qs.order_by(F("aged_at").desc(nulls_last=True), "-id")
                keep = rule.max_length or 0
                rows = list(newest_first.values_list("pk", "aged_at")[keep : keep + batch_size])
                ids = [pk for pk, _ in rows]
                # A job of the batch that finished again meanwhile is newer than the batch's
                # newest: it is among the ones to keep now, so the delete must skip it.
                newest = rows[0][1] if rows else None
                bound = Q(aged_at__isnull=True)
                if newest is not None:
                    bound |= Q(aged_at__lte=newest)
            if not ids:
                return deleted
            removed = self.delete_jobs(ids, qs.filter(bound))
            if not removed:
                # Every job of the batch changed meanwhile; the next run carries on.
                return deleted
            deleted += removed

    def delete_jobs(self, ids: Sequence[int], covered: Any) -> int:
        """Delete the jobs among ``ids`` that the queryset ``covered`` still matches, with
        their errors, in one short transaction; returns how many jobs went.

        The DELETE itself carries ``covered``'s conditions (status, executors, age), so a job
        that changed after its id was selected (rerun and claimed by a worker, finished again)
        is left alone. Django's cascade collector is bypassed: it would load every error row."""
        query = covered.query
        where, where_params = query.get_compiler(self.alias).compile(query.where)
        errors, jobs = JobErrorRecord._meta.db_table, JobRecord._meta.db_table
        id_list = [int(i) for i in ids]
        with self._atomic(), connections[self.alias].cursor() as cursor:
            if self.vendor == "postgresql":
                # One statement: the jobs' rows are locked and re-checked by the DELETE, and
                # only the errors of jobs it deleted go. One array parameter is much cheaper
                # to send and plan than thousands of IN items.
                cursor.execute(
                    f"WITH gone AS (DELETE FROM {jobs} WHERE {jobs}.id = ANY(%s) AND {where}"
                    f" RETURNING id), _ AS (DELETE FROM {errors} WHERE job_id IN"
                    " (SELECT id FROM gone)) SELECT count(*) FROM gone",
                    [id_list, *where_params],
                )
                return int(cursor.fetchone()[0])
            # SQLite: the first write takes the database's write lock, so no other connection
            # can change a job between these two statements.
            marks = ", ".join(["%s"] * len(id_list))
            covered_ids = f"SELECT id FROM {jobs} WHERE {jobs}.id IN ({marks}) AND {where}"
            params = [*id_list, *where_params]
            cursor.execute(f"DELETE FROM {errors} WHERE job_id IN ({covered_ids})", params)
            cursor.execute(f"DELETE FROM {jobs} WHERE {jobs}.id IN ({marks}) AND {where}", params)
            return int(cursor.rowcount)

    # -- periodic work -------------------------------------------------------------------
    def enqueue_cron_job(self, name: str, tick_at: datetime, job: EnqueuableJob) -> JobId | None:
        """The tick's row and its job in one transaction: the row's unique (name, tick_at)
        lets one scheduler win; on PostgreSQL a concurrent insert of the same key waits for
        the winner to commit, then fails."""
        ticks = CronTickRecord.objects.using(self.alias)
        with self._atomic():
            try:
                # A savepoint, so losing the race leaves the outer transaction usable.
                with self._atomic():
                    record = ticks.create(name=name, tick_at=tick_at)
            except IntegrityError:
                return None
            job_id = self.enqueue(job)
            ticks.filter(pk=record.pk).update(job_id=int(job_id))
        return job_id

    def prune_cron_ticks(self, before: datetime) -> int:
        deleted, _ = CronTickRecord.objects.using(self.alias).filter(tick_at__lt=before).delete()
        return int(deleted)

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """A session advisory lock on PostgreSQL (released by the server if the connection
        dies). SQLite has no such lock and runs one writer at a time: every caller holds it,
        and the work it guards must be safe to run twice (the pruner's deletes are fenced)."""
        if self.vendor != "postgresql":
            yield True
            return
        key = advisory_lock_key(name)
        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            row = cursor.fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held:
                try:
                    with connections[self.alias].cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
                except DatabaseError:
                    # The connection is gone, and the session lock went with it.
                    logger.debug("Could not release the advisory lock %r", name, exc_info=True)

    # -- workers -------------------------------------------------------------------------
    def current_time(self) -> datetime:
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            # Parameters (none) given, so the SQL's escaped % signs are unescaped on SQLite.
            cursor.execute(f"SELECT {now_sql(connection)}", [])
            value = cursor.fetchone()[0]
        if isinstance(value, datetime):  # PostgreSQL
            return value
        # SQLite answers with text, converted as Django converts its datetime columns.
        convert = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]
        return convert(value, None, connection)

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
        # The first row too is stamped by the database's clock: a row written with a host's
        # clock that runs behind would look dead to rescue at once.
        workers.create(
            worker_id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            executors=sorted(executors),
            concurrency=concurrency,
            started_at=Now(),
            heartbeat_at=Now(),
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
        """Rescue in batches of ``rescue_batch_size``, each one short transaction of a few
        set-based statements, so a big rescue never holds many locks or much memory at once."""
        workers = WorkerRecord.objects.using(self.alias)
        rescued: list[int] = []
        while True:
            read, batch = self._rescue_batch(after)
            rescued += batch
            if read < self.rescue_batch_size:
                break
        workers.filter(heartbeat_at__lt=Now() - after).delete()
        return rescued

    def _rescue_batch(self, after: timedelta) -> tuple[int, list[int]]:
        """Rescue up to ``rescue_batch_size`` orphans: how many were read, and the ids of
        those rescued."""
        workers = WorkerRecord.objects.using(self.alias)
        # Compare in the database's clock, so skewed worker clocks cannot rescue live jobs.
        alive = workers.filter(heartbeat_at__gte=Now() - after).values("worker_id")
        orphans = self.jobs.filter(status=JobStatus.EXECUTING).filter(
            Q(claimed_by__isnull=True) | ~Q(claimed_by__in=alive)
        )
        with self._atomic():
            # Locked rows cannot change until this transaction ends; rows another rescuer
            # holds are skipped (it rescues them). No ORDER BY, so the partial index of
            # running jobs serves the scan however big the table is.
            rows = list(
                orphans.select_for_update(skip_locked=True)
                .order_by()
                .values_list(
                    "pk",
                    "attempt",
                    "max_attempts",
                    "claimed_by",
                    "cancel_requested_at",
                    "cancel_reason",
                )[: self.rescue_batch_size]
            )
            if not rows:
                return 0, []
            # The database's clock, as for every time a backend writes.
            now = self.current_time()
            outcomes: dict[JobStatus, list[int]] = {}
            claims: dict[tuple[str | None, int], list[int]] = {}
            errors: list[JobErrorRecord] = []
            for job_id, attempt, max_attempts, worker_id, cancel_requested_at, reason in rows:
                status = rescue_outcome(attempt, max_attempts, cancel_requested_at is not None)
                outcomes.setdefault(status, []).append(job_id)
                claims.setdefault((worker_id, attempt), []).append(job_id)
                error = (
                    running_cancel_error(reason)
                    if status == JobStatus.CANCELLED
                    else orphaned_error(worker_id, attempt)
                )
                errors.append(_error_record(job_id, attempt, error, now))
            # Fenced by (id, attempt, claimed_by) like any result write: one IN list per
            # dead worker and attempt, so the statement stays small.
            fence = Q()
            for (worker_id, attempt), ids in claims.items():
                fence |= Q(pk__in=ids, attempt=attempt, claimed_by=worker_id)
            running = self.jobs.filter(fence, status=JobStatus.EXECUTING)
            written = sum(
                running.filter(pk__in=ids).update(status=status, **{_RESCUE_SETS[status]: now})
                for status, ids in outcomes.items()
            )
            done = [job_id for job_id, *_ in rows]
            if written != len(rows):
                # Only possible without row locks (SQLite): a job changed after it was read,
                # and the fence left it alone. Find the ones written.
                done = [
                    pk
                    for status, ids in outcomes.items()
                    for pk in self.jobs.filter(
                        pk__in=ids, status=status, **{_RESCUE_SETS[status]: now}
                    ).values_list("pk", flat=True)
                ]
                written_ids = set(done)
                errors = [e for e in errors if e.job_id in written_ids]
            JobErrorRecord.objects.using(self.alias).bulk_create(errors)
        return len(rows), done

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        if not job_ids:
            return set()
        return set(
            self.jobs.filter(pk__in=list(job_ids), cancel_requested_at__isnull=False).values_list(
                "pk", flat=True
            )
        )


def _error_record(job_id: int, attempt: int, error: ErrorDetails, at: Any) -> JobErrorRecord:
    """The row of one entry of a job's error history (``at``: a time or ``Now()``)."""
    return JobErrorRecord(
        job_id=job_id,
        attempt=attempt,
        error_type=error.error_type,
        message=error.message,
        traceback=error.traceback,
        recorded_at=at,
    )
