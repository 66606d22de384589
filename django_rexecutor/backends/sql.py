"""Raw SQL of the Django backend's hot paths, and turning rows into ``Job`` values.

The statements that run once per job or per claim (insert, ``COPY``, claim, batched
completion) bypass model instances, whose construction costs more CPU than the round trip;
everything else in ``orm.py`` goes through the ORM."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db.models.functions import Coalesce, Now
from django.db.models.sql import Query

from ..decoding import Unreadable, read_datetime, read_json, read_tags
from ..job import Job, JobError
from ..models import TIMESTAMP_FIELDS, JobErrorRecord, JobRecord
from ..status import READY_STATUSES, JobStatus
from ..transitions import FINISHED_AT_FIELDS

READY = sorted(s.value for s in READY_STATUSES)

#: Columns a new job's row sets explicitly (the others keep their NULL defaults).
INSERT_COLUMNS = (
    "executor, status, data, metadata, attempt, max_attempts, priority, tags, unique_key,"
    " inserted_at, scheduled_at"
)
JOB_TABLE = JobRecord._meta.db_table
SCHEDULED = JobStatus.SCHEDULED.value
INSERT_SQL = (
    f"INSERT INTO {JOB_TABLE} ({INSERT_COLUMNS})"
    " VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s) RETURNING id"
)
RESERVE_IDS_SQL = (
    f"SELECT nextval(pg_get_serial_sequence('{JOB_TABLE}', 'id')) FROM generate_series(1, %s)"
)
COPY_SQL = f"COPY {JOB_TABLE} (id, {INSERT_COLUMNS}) FROM STDIN"
#: The columns of a ``Job``, in the order ``job_from_row`` reads them. Timestamps come as text
#: (see ``decoding``): a value Python cannot represent, such as PostgreSQL's ``-infinity``,
#: would otherwise make the driver fail while fetching the whole result, not just its row.
#: JSON columns come as text anyway (Django reads ``jsonb`` as text) and are decoded per row.
TIMESTAMPS = TIMESTAMP_FIELDS
JOB_FIELDS = (
    "id",
    "status",
    "executor",
    "data",
    "metadata",
    "attempt",
    "max_attempts",
    "priority",
    "tags",
    *TIMESTAMPS,
    "claimed_by",
    "result",
)
JOB_COLUMNS = ", ".join(f"CAST({f} AS text)" if f in TIMESTAMPS else f for f in JOB_FIELDS)
#: The earliest and latest times Python can represent; stored times beyond them are clamped
#: where the library only compares them (``next_scheduled_at``).
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
#: What a claim returns: a job's columns, and whether the job has an error history, so that
#: the history is fetched only for jobs that have one (usually none).
CLAIM_RETURNING = (
    f"{JOB_COLUMNS}, EXISTS (SELECT 1 FROM {JobErrorRecord._meta.db_table} e"
    f" WHERE e.job_id = {JOB_TABLE}.id)"
)
#: The database's clock, as each database stores timestamps: the claim's "due" cut-off and
#: ``attempted_at`` use it, so a worker whose clock is wrong neither claims jobs early nor
#: misses due ones. SQLite stores UTC text with microseconds (Django's format) but its clock
#: has milliseconds, so its cut-off is the end of the current millisecond (``…12.345999``) —
#: a job enqueued a moment ago is due, and text comparison orders both formats correctly —
#: and a job claimed within the millisecond it is due at gets that time as ``attempted_at``,
#: so no attempt seems to start before its job was due.
_SQLITE_NOW = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
DB_DUE = {"postgresql": "statement_timestamp()", "sqlite": f"{_SQLITE_NOW} || '999'"}
DB_ATTEMPTED_AT = {
    "postgresql": "statement_timestamp()",
    "sqlite": f"MAX(scheduled_at, {_SQLITE_NOW})",
}


def claim_sql(
    vendor: str, worker_id: str, wanted: Mapping[str, int], limit: int
) -> tuple[str, list[Any]]:
    """The claim statement: up to ``limit`` ready jobs, at most ``wanted[name]`` of each
    executor, most urgent first across all executors (priority, ``scheduled_at``, id).

    Executors that may take the whole ``limit`` share one sub-select (the common case: a
    single indexed select). Each executor with a smaller capacity gets its own sub-select
    limited to it; the union holds every job the claim may take, and the outer ``ORDER BY``
    picks the most urgent of them. On PostgreSQL each sub-select locks its rows with ``SKIP
    LOCKED``, so concurrent claimers never wait for, nor take, the same row; rows locked but
    not taken stay ready and are unlocked when the statement commits."""
    cutoff = DB_DUE[vendor]
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    ready = ", ".join(f"'{s}'" for s in READY)
    shared = [name for name, n in wanted.items() if n >= limit]
    capped = {name: n for name, n in wanted.items() if n < limit}
    due = f"FROM {JOB_TABLE} WHERE status IN ({ready}) AND scheduled_at <= {cutoff}"
    order = "ORDER BY priority, scheduled_at, id"
    params: list[Any] = []
    if not capped:
        marks = ", ".join(["%s"] * len(shared))
        candidates = f"SELECT id {due} AND executor IN ({marks}) {order} LIMIT %s{lock}"
        params += [*shared, limit]
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
            params += [*names, n]
        union = " UNION ALL ".join(selects)
        candidates = f"SELECT id FROM ({union}) AS candidates {order} LIMIT %s"
        params.append(limit)
    sql = (
        f"UPDATE {JOB_TABLE} SET status = '{JobStatus.EXECUTING.value}', attempt = attempt + 1,"
        f" attempted_at = {DB_ATTEMPTED_AT[vendor]}, claimed_by = %s, cancel_requested_at = NULL"
        f" WHERE id IN ({candidates}) RETURNING {CLAIM_RETURNING}"
    )
    return sql, [worker_id, *params]


#: ``complete_jobs``; ``IN (VALUES …)`` because SQLite takes row values only from a subquery.
COMPLETE_SQL = (
    f"UPDATE {JOB_TABLE} SET status = '{JobStatus.COMPLETE.value}', completed_at = {{now}}"
    f" WHERE status = '{JobStatus.EXECUTING.value}' AND cancel_requested_at IS NULL"
    " AND (id, attempt, claimed_by) IN (VALUES {fence}) RETURNING id"
)
#: Claims per completion statement (3 parameters each: under SQLite's variable limit).
FENCE_CHUNK = 250
FINISHED_AT = Coalesce(*FINISHED_AT_FIELDS)


def server_bound_cursor(connection: Any) -> Any:
    """A cursor of a PostgreSQL ``connection`` that sends parameters separately from the SQL.

    Django's default cursor quotes every parameter into the SQL text in Python, which costs
    more CPU than a one-row insert itself. This one is opened and wrapped exactly as
    ``connection.cursor()`` does (error translation, query logging, execute wrappers), and
    prepares nothing, so it stays safe behind transaction-mode poolers."""
    from django.db.backends.postgresql import base

    factory = getattr(base, "ServerBindingCursor", None)
    if factory is None:  # psycopg2: no server-side binding
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(factory(connection.connection))


def hot_cursor(connection: Any) -> Any:
    """The cursor of the worker's hot statements (claim, completion): server-side binding on
    PostgreSQL, where quoting the parameters into the SQL in Python costs as much CPU as the
    statement's round trip; Django's own cursor elsewhere."""
    if connection.vendor == "postgresql":
        return server_bound_cursor(connection)
    return connection.cursor()


def unreadable_message(job: Job) -> str:
    """The error recorded for a claimed job whose row cannot be read (``Job.unreadable``)."""
    problems = "; ".join(job.unreadable.values())
    return (
        f"Job {job.id} has stored values the worker cannot read: {problems}."
        " Fix the row, then rerun the job."
    )


def job_from_row(row: Sequence[Any], errors: Mapping[int, list[JobError]], connection: Any) -> Job:
    """The ``Job`` of a row of ``JOB_COLUMNS``. A value that cannot be read is reported in
    ``Job.unreadable`` instead of failing the read (and every other row read with it)."""
    tz = connection.timezone
    try:
        return _job_of_sound_row(row, errors, tz)
    except (ValueError, TypeError, RecursionError):  # read each value alone to name the bad
        return _job_of_any_row(row, errors, tz)


def _job_of_sound_row(row: Sequence[Any], errors: Mapping[int, list[JobError]], tz: Any) -> Job:
    """The fast path (the claim's hot path): raises on the first value it cannot read."""
    (job_id, status, executor, data, metadata, attempt, max_attempts, priority, tags) = row[:9]
    tag_list = [] if tags is None or tags == "[]" else _loads(tags)  # no tags: the usual case
    if type(tag_list) is not list or any(type(t) is not str for t in tag_list):
        raise ValueError("tags")
    times = [None if v is None else _aware(_parse_time(v), tz) for v in row[9:16]]
    return Job(
        id=job_id,
        status=JobStatus(status),
        executor=executor,
        data=None if data is None else _loads(data),
        metadata=None if metadata is None else _loads(metadata),
        attempt=attempt,
        max_attempts=max_attempts,
        priority=priority,
        tags=tag_list,
        errors=list(errors.get(job_id, ())),
        inserted_at=times[0],  # type: ignore[arg-type]
        scheduled_at=times[1],  # type: ignore[arg-type]
        attempted_at=times[2],
        completed_at=times[3],
        cancelled_at=times[4],
        discarded_at=times[5],
        cancel_requested_at=times[6],
        claimed_by=row[16],
        result=None if row[17] is None else _loads(row[17]),
    )


def _aware(value: datetime, tz: Any) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


_loads = json.loads
_parse_time = datetime.fromisoformat


def _job_of_any_row(row: Sequence[Any], errors: Mapping[int, list[JobError]], tz: Any) -> Job:
    """Every value read on its own; the unreadable ones named in ``Job.unreadable``."""
    (job_id, status, executor, data, metadata, attempt, max_attempts, priority, tags) = row[:9]
    times = [read_datetime(value, tz) for value in row[9:16]]
    values: dict[str, Any] = {
        "status": _read_status(status),
        "data": read_json(data),
        "metadata": read_json(metadata),
        "tags": read_tags(tags),
        **dict(zip(TIMESTAMPS, times, strict=True)),
        "result": read_json(row[17]),
    }
    unreadable = {}
    for name, value in values.items():
        if isinstance(value, Unreadable):
            unreadable[name] = value.describe(name)
            values[name] = [] if name == "tags" else None
    return Job(
        id=job_id,
        executor=executor,
        attempt=attempt,
        max_attempts=max_attempts,
        priority=priority,
        errors=list(errors.get(job_id, ())),
        claimed_by=row[16],
        unreadable=unreadable,
        **values,
    )


def _read_status(raw: Any) -> JobStatus | Unreadable:
    try:
        return JobStatus(raw)
    except ValueError:
        return Unreadable(str(raw), "not a job status")


def to_job_error(record: JobErrorRecord) -> JobError:
    return JobError(
        record.attempt, record.error_type, record.message, record.traceback, record.recorded_at
    )


def to_job(record: JobRecord, errors: Iterable[JobErrorRecord] = ()) -> Job:
    return Job(
        id=record.pk,
        status=JobStatus(record.status),
        executor=record.executor,
        data=record.data,
        metadata=record.metadata,
        attempt=record.attempt,
        max_attempts=record.max_attempts,
        priority=record.priority,
        tags=list(record.tags or []),
        errors=[to_job_error(e) for e in errors],
        inserted_at=record.inserted_at,
        scheduled_at=record.scheduled_at,
        attempted_at=record.attempted_at,
        completed_at=record.completed_at,
        cancelled_at=record.cancelled_at,
        discarded_at=record.discarded_at,
        claimed_by=record.claimed_by,
        cancel_requested_at=record.cancel_requested_at,
        result=record.result,
    )


_NOW_SQL: dict[str, str] = {}


def now_sql(connection: Any) -> str:
    """The database's current time as SQL (what Django's ``Now()`` compiles to), for the raw
    statements: every timestamp the backend writes or compares comes from the database's
    clock, never from the clock of the host that sends the statement."""
    sql = _NOW_SQL.get(connection.vendor)
    if sql is None:
        compiler = connection.ops.compiler("SQLCompiler")(Query(None), connection, None)
        sql, _ = compiler.compile(Now())
        _NOW_SQL[connection.vendor] = sql
    return sql
