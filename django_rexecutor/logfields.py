"""The structured fields every worker log line carries in ``extra=``.

Flat attributes with the ``rexecutor_`` prefix (``rexecutor_job_id``, ``rexecutor_executor``,
``rexecutor_attempt``, ``rexecutor_outcome``, ``rexecutor_duration``, ``rexecutor_worker``)
rather than one nested dict: JSON formatters write a record's extra attributes as top-level
keys, so each field is filterable as it is, and ``%(rexecutor_job_id)s`` works in a plain
format string. The prefix keeps them clear of ``LogRecord``'s own attributes and of other
libraries' extras. A line that is not about a job has ``None`` in the job fields: the filter
installed on the worker's logger gives every record all six attributes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .job import Job

PREFIX: Final = "rexecutor_"
FIELDS: Final = ("job_id", "executor", "attempt", "outcome", "duration", "worker")
#: The attribute names, as they appear on a ``LogRecord``.
ATTRIBUTES: Final = tuple(PREFIX + name for name in FIELDS)


def job_fields(
    job: Job,
    *,
    outcome: str | None = None,
    duration: float | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """``extra=`` for a line about one attempt of ``job``."""
    return {
        "rexecutor_job_id": job.id,
        "rexecutor_executor": job.executor,
        "rexecutor_attempt": job.attempt,
        "rexecutor_outcome": outcome,
        "rexecutor_duration": None if duration is None else round(duration, 6),
        "rexecutor_worker": worker if worker is not None else job.claimed_by,
    }


def worker_fields(worker: str | None) -> dict[str, Any]:
    """``extra=`` for a line about the worker itself."""
    return {"rexecutor_worker": worker}


#: The worker this process runs (the last one started), for lines that name none.
_process_worker: str | None = None


def set_process_worker(worker: str | None) -> None:
    global _process_worker
    _process_worker = worker


class FieldDefaults(logging.Filter):
    """Gives a record every ``rexecutor_*`` attribute it was logged without: ``None``, but
    the process's worker for ``rexecutor_worker``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ATTRIBUTES:
            if getattr(record, name, None) is None:
                setattr(record, name, _process_worker if name == "rexecutor_worker" else None)
        return True


def install(logger: logging.Logger) -> logging.Logger:
    """Add ``FieldDefaults`` to ``logger`` once; returns it."""
    if not any(isinstance(f, FieldDefaults) for f in logger.filters):
        logger.addFilter(FieldDefaults())
    return logger
