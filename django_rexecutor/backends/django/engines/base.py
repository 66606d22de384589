"""The ``Engine`` interface: what the Django backend leaves to each database vendor.

The backend's parts (``enqueue``, ``claims``, ``changes``, ``reading``, ``upkeep``) are written
once, against Django's ORM and this interface. An engine holds the few things that differ
between databases: the statements of the hot paths (claim, batched completion, insert), how
enqueues with a uniqueness rule are serialised, the delete of pruning, the clock, locks for
periodic work and wake-ups. Where standard SQL or the ORM serves every database, the
implementation here is the one engines inherit; an engine overrides it to go faster.

An engine is bound to a database alias, never to a connection object: Django's connections
belong to threads, so each operation looks its connection up."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.db.models.sql import Query
from django.utils import timezone

from ....encoding import to_json
from ....models import JobErrorRecord, JobRecord, PausedExecutorRecord, WorkerRecord
from ....notifiers.base import Notifier
from ....notifiers.local import LocalNotifier
from ....status import READY_STATUSES, JobStatus
from ....validation import check_payload_size, check_payloads
from ...values import Claim, EnqueuableJob, WorkflowStep
from ..rows import JOB_COLUMNS

JOB_TABLE = JobRecord._meta.db_table
WORKER_TABLE = WorkerRecord._meta.db_table
READY = sorted(s.value for s in READY_STATUSES)
SCHEDULED = JobStatus.SCHEDULED.value
#: Columns a new job's row sets explicitly (the others keep their NULL defaults), in the order
#: of ``encoded_row``.
INSERT_COLUMNS = (
    "executor, status, data, metadata, attempt, max_attempts, priority, tags, unique_key,"
    " inserted_at, scheduled_at, partition_key"
)
#: What a claim returns: a job's columns, and whether the job has an error history, so that
#: the history is fetched only for jobs that have one (usually none).
CLAIM_RETURNING = (
    f"{JOB_COLUMNS}, EXISTS (SELECT 1 FROM {JobErrorRecord._meta.db_table} e"
    f" WHERE e.job_id = {JOB_TABLE}.id)"
)
#: What a claim writes to each job it takes (``%s`` is the worker's identity); engines without
#: ``UPDATE … RETURNING`` append their own ``WHERE``.
CLAIM_UPDATE_SQL = (
    f"UPDATE {JOB_TABLE} SET status = '{JobStatus.EXECUTING.value}', attempt = attempt + 1,"
    " attempted_at = {attempted_at}, claimed_by = %s, cancel_requested_at = NULL"
)
#: ``complete``; ``IN (VALUES …)`` because SQLite takes row values only from a subquery.
COMPLETE_SQL = (
    f"UPDATE {JOB_TABLE} SET status = '{JobStatus.COMPLETE.value}', completed_at = {{now}}"
    f" WHERE status = '{JobStatus.EXECUTING.value}' AND cancel_requested_at IS NULL"
    # A workflow step's completion releases its dependents in the same transaction: the
    # backend writes those one by one (``Claiming.complete_jobs``).
    " AND workflow_id IS NULL"
    " AND (id, attempt, claimed_by) IN (VALUES {fence}) RETURNING id"
)
#: Columns a workflow step's row sets besides ``INSERT_COLUMNS``, in the order of
#: ``encoded_step_row``.
STEP_COLUMNS = "workflow_id, step, run_if, pending"
#: The claim skips paused executors' jobs (a tiny table: one anti-join probe per claim).
NOT_PAUSED_SQL = (
    f" AND executor NOT IN (SELECT executor FROM {PausedExecutorRecord._meta.db_table})"
)
#: Claims per completion statement (3 parameters each: under SQLite's variable limit).
FENCE_CHUNK = 250
_NOW_SQL: dict[str, str] = {}


class Engine(ABC):
    """One database vendor's way of doing the Django backend's vendor-specific work."""

    #: The ``connection.vendor`` this engine serves.
    vendor: ClassVar[str]
    #: ``wait_for_jobs`` is woken by enqueues from other processes.
    supports_notifications: ClassVar[bool] = False
    #: Two connections of one process may write at once without waiting for each other's
    #: transaction (``Backend.supports_parallel_writes``).
    supports_parallel_writes: ClassVar[bool] = True
    #: SQL of the database's clock as the claim compares it with ``scheduled_at`` (the "due"
    #: cut-off) and as it writes ``attempted_at``: a worker whose clock is wrong neither claims
    #: jobs early nor misses due ones.
    due_sql: ClassVar[str]
    attempted_at_sql: ClassVar[str]
    #: Appended to each of the claim's sub-selects: the row locks that keep two concurrent
    #: claims from taking the same job (nothing where the database runs one writer at a time).
    claim_lock_sql: ClassVar[str] = ""
    #: A JSON parameter in a hand-written statement (a cast where the column needs one).
    json_param_sql: ClassVar[str] = "%s"
    #: Seconds between a worker's polls when ``REXECUTOR["POLL_INTERVAL"]`` is unset: the
    #: pickup latency where no notification wakes the worker, against the idle cost.
    default_poll_interval: ClassVar[float] = 1.0
    #: Follows the job table's name in the claim's sub-selects: an index hint where the
    #: database has no partial index and its planner would otherwise walk finished jobs.
    claim_index_hint: ClassVar[str] = ""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._local_notifier: LocalNotifier | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alias={self.alias!r})"

    @property
    def connection(self) -> BaseDatabaseWrapper:
        """The calling thread's connection to the alias."""
        return connections[self.alias]

    def atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.alias)

    def hot_cursor(self) -> Any:
        """The cursor of the statements that run per job or per claim (claim, completion,
        insert); an engine returns a cheaper one where its driver has it."""
        return self.connection.cursor()

    # -- enqueue -------------------------------------------------------------------------
    def insert(self, job: EnqueuableJob, limit: int | None) -> int:
        """Insert one job in the caller's transaction and return its id."""
        record = new_record(job, limit)
        record.save(using=self.alias, force_insert=True)
        return int(record.pk)

    def insert_many(self, jobs: Sequence[EnqueuableJob], limit: int | None) -> list[int]:
        """Insert ``jobs`` (none with a uniqueness rule) at once; their ids, in order."""
        records = JobRecord.objects.using(self.alias).bulk_create(
            [new_record(j, limit) for j in jobs], batch_size=5000
        )
        return [int(r.pk) for r in records]

    def insert_steps(
        self, workflow_id: str, steps: Sequence[WorkflowStep], limit: int | None
    ) -> list[int]:
        """Insert the jobs of a workflow's ``steps`` (none with a uniqueness rule) in the
        caller's transaction; their ids, in order. A step with dependencies is ``waiting``
        with ``pending`` = their number; the others are ``scheduled``."""
        records = []
        for step in steps:
            record = new_record(step.job, limit)
            pending = len(set(step.after))
            record.status = JobStatus.WAITING if pending else JobStatus.SCHEDULED
            record.workflow_id, record.step, record.run_if = workflow_id, step.name, step.run_if
            record.pending = pending
            records.append(record)
        created = JobRecord.objects.using(self.alias).bulk_create(records, batch_size=5000)
        return [int(r.pk) for r in created]

    def unique_transaction(self) -> AbstractContextManager[None]:
        """The transaction (a savepoint inside the caller's) of enqueues with a uniqueness
        rule: each one's ``lock_slot``, duplicate check and insert run in it."""
        return self.atomic()

    @abstractmethod
    def lock_slot(self, slot: int) -> None:
        """Serialise, until the current transaction ends, enqueues whose uniqueness rules
        share ``slot`` (``UniquenessCriteria.lock_slot``): the next one waits, and then sees
        the job this one inserted."""

    # -- claims --------------------------------------------------------------------------
    def claim(self, worker_id: str, wanted: Mapping[str, int], limit: int) -> list[Any]:
        """Claim up to ``limit`` ready jobs, at most ``wanted[name]`` of each executor, for
        ``worker_id``; their rows as ``CLAIM_RETURNING`` lists them."""
        sql, params = claim_sql(self, worker_id, wanted, limit)
        # One statement, so autocommit makes it atomic without a BEGIN/COMMIT round trip.
        with self.hot_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def claim_ids(self, worker_id: str, ids: Sequence[int]) -> list[Any]:
        """Claim the jobs ``ids`` (chosen by a limited executor's claim, in its transaction)
        that are still ready, for ``worker_id``; their rows as ``CLAIM_RETURNING`` lists
        them. Runs in the caller's transaction."""
        if not ids:
            return []
        ready = ", ".join(f"'{s}'" for s in READY)
        update = CLAIM_UPDATE_SQL.format(attempted_at=self.attempted_at_sql)
        marks = ", ".join(["%s"] * len(ids))
        sql = f"{update} WHERE id IN ({marks}) AND status IN ({ready}) RETURNING {CLAIM_RETURNING}"
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [worker_id, *ids])
            return cursor.fetchall()

    def record_ahead(self, worker_id: str, job_ids: Collection[int]) -> None:
        """Write the worker row's ``ahead`` list (once per claim that buffers jobs: one
        statement, without the ORM's compiling)."""
        sql = f"UPDATE {WORKER_TABLE} SET ahead = {self.json_param_sql} WHERE worker_id = %s"
        with self.hot_cursor() as cursor:
            cursor.execute(sql, [to_json(sorted(job_ids)), worker_id])

    def complete(self, claims: Sequence[Claim]) -> set[int]:
        """Mark the jobs of ``claims`` complete where each is still executing under its claim
        and no cancel was requested; the ids written."""
        completed_sql = COMPLETE_SQL.replace("{now}", self.now_sql)
        completed: set[int] = set()
        # One autocommitted statement per chunk (atomic on its own, one round trip).
        with self.hot_cursor() as cursor:
            for start in range(0, len(claims), FENCE_CHUNK):
                chunk = claims[start : start + FENCE_CHUNK]
                fence = ", ".join(["(%s, %s, %s)"] * len(chunk))
                params: list[Any] = []
                for c in chunk:
                    params += (c.job_id, c.attempt, c.worker_id)
                cursor.execute(completed_sql.replace("{fence}", fence), params)
                completed.update(row[0] for row in cursor.fetchall())
        return completed

    # -- pruning -------------------------------------------------------------------------
    @abstractmethod
    def delete_jobs(self, ids: Sequence[int], where: str, params: Sequence[Any]) -> int:
        """Delete, with their errors and in one short transaction, the jobs among ``ids`` that
        the SQL condition ``where`` (on the job table, with ``params``) still matches when they
        are deleted; how many jobs went."""

    # -- periodic work ------------------------------------------------------------------
    @abstractmethod
    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        """``Backend.try_lock``: whether the caller now holds the lock ``name``; never
        waits, released at the block's end or when the holder's connection dies."""

    # -- clock and wake-ups --------------------------------------------------------------
    @property
    def now_sql(self) -> str:
        """The database's current time as SQL (what Django's ``Now()`` compiles to), for the
        raw statements: every timestamp the backend writes or compares comes from the
        database's clock, never from the clock of the host that sends the statement."""
        sql = _NOW_SQL.get(self.vendor)
        if sql is None:
            connection = self.connection
            compiler = connection.ops.compiler("SQLCompiler")(Query(None), connection, None)
            sql = _NOW_SQL[self.vendor] = str(compiler.compile(Now())[0])
        return sql

    def current_time(self) -> datetime:
        with self.connection.cursor() as cursor:
            # Parameters (none) given, so the SQL's escaped % signs are unescaped on SQLite.
            cursor.execute(f"SELECT {self.now_sql}", [])
            return self.clock_value(cursor.fetchone()[0])

    def clock_value(self, value: Any) -> datetime:
        """``value``, the database's answer to ``SELECT now_sql``, as an aware datetime."""
        return value

    def notifier(self) -> Notifier:
        """The notifier announcing the database's newly ready jobs and cancel requests; one
        for this process only where the database has no notifications of its own."""
        notifier = self._local_notifier
        if notifier is None or notifier.stopped:  # a worker stops it when it shuts down
            notifier = self._local_notifier = LocalNotifier()
        return notifier

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        """Block up to ``timeout`` seconds, or until a job of ``executors`` may be ready;
        without notifications, just sleep (the caller's polling is the guarantee)."""
        time.sleep(max(0.0, timeout))

    def estimated_job_rows(self) -> int | None:
        """The planner's estimate of the job table's rows, or ``None`` where the database has
        none (then ``job_counts`` counts exactly)."""
        return None

    def sampled_job_counts(self, percent: float) -> list[tuple[str, str, int]] | None:
        """(executor, status, count) in a random sample of about ``percent`` % of the job
        table's pages, or ``None`` where the database cannot sample cheaply."""
        return None


def new_record(job: EnqueuableJob, limit: int | None) -> JobRecord:
    """The unsaved model instance of a new job (its payloads checked against ``limit``)."""
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
        partition_key=job.partition_key,
    )


def encoded_row(job: EnqueuableJob, now: datetime, limit: int | None) -> tuple[Any, ...]:
    """The values of ``INSERT_COLUMNS`` for a new job, JSON already encoded (and checked
    against ``limit`` as it is), for engines that insert with raw SQL."""
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
        job.partition_key,
    )


def encoded_step_row(
    workflow_id: str, step: WorkflowStep, now: datetime, limit: int | None
) -> tuple[Any, ...]:
    """``encoded_row`` of a workflow step's job followed by the values of ``STEP_COLUMNS``."""
    pending = len(set(step.after))
    row = encoded_row(step.job, now, limit)
    status = JobStatus.WAITING.value if pending else SCHEDULED
    return (*row[:1], status, *row[2:], workflow_id, step.name, step.run_if, pending)


def claim_sql(
    engine: Engine, worker_id: str, wanted: Mapping[str, int], limit: int
) -> tuple[str, list[Any]]:
    """The claim statement of engines with ``UPDATE … RETURNING``: the jobs that
    ``claim_candidates_sql`` selects become ``executing`` under ``worker_id``."""
    candidates, params = claim_candidates_sql(engine, wanted, limit)
    update = CLAIM_UPDATE_SQL.format(attempted_at=engine.attempted_at_sql)
    sql = f"{update} WHERE id IN ({candidates}) RETURNING {CLAIM_RETURNING}"
    return sql, [worker_id, *params]


def claim_candidates_sql(
    engine: Engine,
    wanted: Mapping[str, int],
    limit: int,
    *,
    skip_partitions: Collection[str] = (),
    columns: str = "id",
) -> tuple[str, list[Any]]:
    """The ``SELECT id …`` of the jobs a claim takes: up to ``limit`` ready jobs, at most
    ``wanted[name]`` of each executor, most urgent first across all executors (priority,
    ``scheduled_at``, id). Every engine's claim selects with it.

    Executors that may take the whole ``limit`` share one sub-select (the common case: a
    single indexed select). Each executor with a smaller capacity gets its own sub-select
    limited to it; the union holds every job the claim may take, and the outer ``ORDER BY``
    picks the most urgent of them. Each sub-select ends with the engine's
    ``claim_lock_sql`` (and names the table with its ``claim_index_hint``). Paused
    executors' jobs are never selected.

    A limited executor's claim (``claim_limited``) selects its jobs alone (one executor),
    without the partitions in ``skip_partitions`` (those at their limit), and may select
    more ``columns`` than the id."""
    cutoff = engine.due_sql
    lock = engine.claim_lock_sql
    ready = ", ".join(f"'{s}'" for s in READY)
    shared = [name for name, n in wanted.items() if n >= limit]
    capped = {name: n for name, n in wanted.items() if n < limit}
    due = (
        f"FROM {JOB_TABLE}{engine.claim_index_hint} WHERE status IN ({ready})"
        f" AND scheduled_at <= {cutoff}"
    )
    due += NOT_PAUSED_SQL
    due_params: list[Any] = []
    if skip_partitions:
        due += f" AND partition_key NOT IN ({', '.join(['%s'] * len(skip_partitions))})"
        due_params += sorted(skip_partitions)
    params: list[Any] = []
    order = "ORDER BY priority, scheduled_at, id"
    if not capped:
        marks = ", ".join(["%s"] * len(shared))
        candidates = f"SELECT {columns} {due} AND executor IN ({marks}) {order} LIMIT %s{lock}"
        params += [*due_params, *shared, limit]
    else:
        selects: list[str] = []
        groups = [(shared, limit)] if shared else []
        groups += [([name], n) for name, n in capped.items()]
        for names, n in groups:
            marks = ", ".join(["%s"] * len(names))
            selects.append(
                f"SELECT * FROM (SELECT id, priority, scheduled_at {due}"
                f" AND executor IN ({marks}) {order} LIMIT %s{lock}) AS c{len(selects)}"
            )
            params += [*due_params, *names, n]
        union = " UNION ALL ".join(selects)
        candidates = f"SELECT id FROM ({union}) AS candidates {order} LIMIT %s"
        params.append(limit)
    return candidates, params
