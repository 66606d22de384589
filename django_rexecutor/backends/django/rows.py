"""Rows of the job table as ``Job`` values: the column order the raw statements return, and
the decoding of each row on its own, so one unreadable value fails its row, not the read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ...decoding import Unreadable, read_datetime, read_json, read_tags
from ...job import Job, JobError
from ...models import TIMESTAMP_FIELDS, JobErrorRecord, JobRecord
from ...status import JobStatus

#: The columns of a ``Job``, in the order ``job_from_row`` reads them. Timestamps come as text
#: (see ``decoding``): a value Python cannot represent, such as PostgreSQL's ``-infinity``,
#: would otherwise make the driver fail while fetching the whole result, not just its row.
#: JSON columns come as text anyway (Django reads ``jsonb`` as text) and are decoded per row.
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
    *TIMESTAMP_FIELDS,
    "claimed_by",
    "result",
    "progress",
    "progress_note",
    "progress_at",
    "workflow_id",
    "step",
)
#: Timestamp columns after the ``TIMESTAMP_FIELDS`` block, read as text too.
LATER_TIMESTAMPS = ("progress_at",)
#: ``JOB_FIELDS`` as the select list of a raw statement.
JOB_COLUMNS = ", ".join(
    f"CAST({f} AS text)" if f in TIMESTAMP_FIELDS or f in LATER_TIMESTAMPS else f
    for f in JOB_FIELDS
)


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
        progress=row[18],
        progress_note=row[19] or "",
        progress_at=None if row[20] is None else _aware(_parse_time(row[20]), tz),
        workflow_id=row[21],
        step=row[22],
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
        **dict(zip(TIMESTAMP_FIELDS, times, strict=True)),
        "result": read_json(row[17]),
        "progress_at": read_datetime(row[20], tz),
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
        progress=row[18],
        progress_note=row[19] or "",
        unreadable=unreadable,
        workflow_id=row[21],
        step=row[22],
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
        progress=record.progress,
        progress_note=record.progress_note or "",
        progress_at=record.progress_at,
        workflow_id=record.workflow_id,
        step=record.step,
    )
