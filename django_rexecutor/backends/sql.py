"""Raw SQL of the Django backend's hot paths, and turning rows into ``Job`` values.

The statements that run once per job or per claim (insert, ``COPY``, claim, batched
completion) bypass model instances, whose construction costs more CPU than the round trip;
everything else in ``orm.py`` goes through the ORM."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db.models.functions import Coalesce, Now
from django.db.models.sql import Query

from ..job import Job, JobError
from ..models import JobErrorRecord, JobRecord
from ..status import READY_STATUSES, JobStatus

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
#: What a claim returns: the fields of a claimed ``Job``, and whether the job has an error
#: history, so that the history is fetched only for jobs that have one (usually none).
CLAIM_RETURNING = (
    "id, executor, data, metadata, attempt, max_attempts, priority, tags, inserted_at,"
    f" scheduled_at, result, EXISTS (SELECT 1 FROM {JobErrorRecord._meta.db_table} e"
    f" WHERE e.job_id = {JOB_TABLE}.id)"
)
#: ``complete_jobs``; ``IN (VALUES …)`` because SQLite takes row values only from a subquery.
COMPLETE_SQL = (
    f"UPDATE {JOB_TABLE} SET status = '{JobStatus.COMPLETE.value}', completed_at = {{now}}"
    f" WHERE status = '{JobStatus.EXECUTING.value}' AND cancel_requested_at IS NULL"
    " AND (id, attempt, claimed_by) IN (VALUES {fence}) RETURNING id"
)
#: Claims per completion statement (3 parameters each: under SQLite's variable limit).
FENCE_CHUNK = 250
FINISHED_AT = Coalesce("completed_at", "cancelled_at", "discarded_at")


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


def to_datetime(value: Any, connection: Any) -> Any:
    """A datetime read by a raw cursor: PostgreSQL gives aware values, SQLite text."""
    if value is None or isinstance(value, datetime):
        return value
    return connection.ops.convert_datetimefield_value(value, None, connection)


def from_json(value: Any) -> Any:
    """A JSON column read by a raw cursor (text on both databases, as Django reads it)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def claimed_job(
    row: Sequence[Any],
    worker_id: str,
    attempted_at: datetime,
    errors: Mapping[int, list[JobErrorRecord]],
    connection: Any,
) -> Job:
    """The ``Job`` value of a row returned by the claim (``CLAIM_RETURNING``)."""
    job_id, executor, data, metadata, attempt, max_attempts, priority, tags, inserted_at = row[:9]
    return Job(
        id=job_id,
        status=JobStatus.EXECUTING,
        executor=executor,
        data=from_json(data),
        metadata=from_json(metadata),
        attempt=attempt,
        max_attempts=max_attempts,
        priority=priority,
        tags=list(from_json(tags) or []),
        errors=[to_job_error(e) for e in errors.get(job_id, ())],
        inserted_at=to_datetime(inserted_at, connection),
        scheduled_at=to_datetime(row[9], connection),
        attempted_at=attempted_at,
        claimed_by=worker_id,
        result=from_json(row[10]),
    )


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


def due_sql(connection: Any) -> str:
    """The claim's cut-off: a job is due once its ``scheduled_at`` is not after the database's
    current time. SQLite's clock counts whole milliseconds, so its time is rounded up to the
    next one, or a job stored during the current millisecond would not be due yet."""
    if connection.vendor == "sqlite":
        return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', '+0.001 seconds')"
    return now_sql(connection)
