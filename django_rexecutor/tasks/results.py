"""What a task's job stores, and how a job reads back as a Django ``TaskResult``.

* payload (the job's ``data``): ``{"task": path, "backend": alias, "args": [...],
  "kwargs": {...}, "run_after": ISO time or null}``; the queue is in the executor's name.
* priority: Django's −100…100 (higher first) becomes ours 0…200 (lower first) as
  ``100 − priority``, so the order is kept.
* status: scheduled/retryable/waiting → READY, executing → RUNNING, complete → SUCCESSFUL,
  cancelled/discarded → FAILED.
* errors: one per failed attempt; the exception class path is the start of our error message
  (``"builtins.ValueError: boom"``); our own kinds map to the classes in ``exceptions``.
* ``worker_ids``: we record the worker of the latest attempt only, so it is repeated once per
  attempt (``TaskResult.attempts`` and ``TaskContext.attempt`` come out right).
* ``started_at`` and ``last_attempted_at``: when the latest attempt started."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
from django.utils.json import normalize_json

from ..encoding import to_json_native
from ..exceptions import EncodeDecodeError
from ..job import Job, JobError
from ..status import ErrorType, JobStatus
from .exceptions import AttemptTimedOut, TaskCancelled, TaskJSONError, WorkerLost

STATUSES: dict[JobStatus, TaskResultStatus] = {
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.RETRYABLE: TaskResultStatus.READY,
    JobStatus.EXECUTING: TaskResultStatus.RUNNING,
    JobStatus.COMPLETE: TaskResultStatus.SUCCESSFUL,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
    JobStatus.DISCARDED: TaskResultStatus.FAILED,
    # A workflow step waiting for its dependencies is enqueued, not yet runnable.
    JobStatus.WAITING: TaskResultStatus.READY,
}

_CLASS_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?::\s|$)")
_KIND_CLASSES: dict[str, type[BaseException]] = {
    ErrorType.TIMEOUT: AttemptTimedOut,
    ErrorType.ORPHANED: WorkerLost,
    ErrorType.CANCELLED: TaskCancelled,
}


def class_path(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def to_our_priority(priority: int) -> int:
    return TASK_MAX_PRIORITY - priority


def to_django_priority(priority: int) -> int:
    return max(TASK_MIN_PRIORITY, min(TASK_MAX_PRIORITY, TASK_MAX_PRIORITY - priority))


def to_json_value(value: object, *, what: str) -> Any:
    """``value`` as Django normalises it (tuples → lists, bytes → str) and as JSON stores it
    (keys → strings), or ``TaskJSONError`` saying what is wrong."""
    try:
        text = json.dumps(normalize_json(value), allow_nan=False)
        return to_json_native(json.loads(text), what=what)
    except (TypeError, ValueError) as exc:
        detail = str(exc) if isinstance(exc, EncodeDecodeError) else f"{exc}."
        raise TaskJSONError(
            f"Task {what} must be JSON: {detail} Pass JSON-native values (dict, list, str, "
            "int, finite float, bool, None) and convert the rest yourself, e.g. a model "
            "instance to its primary key or a datetime to an ISO string."
        ) from None


@dataclass(frozen=True)
class Payload:
    """The data of a task's job."""

    task_path: str
    backend: str
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "task": self.task_path,
            "backend": self.backend,
            "args": self.args,
            "kwargs": self.kwargs,
            "run_after": self.run_after.isoformat() if self.run_after else None,
        }

    @classmethod
    def from_data(cls, data: object) -> Payload:
        """Raise ``ValueError`` if ``data`` is not a task payload."""
        if not isinstance(data, dict):
            raise ValueError(f"job data {data!r} is not a task payload.")
        path, backend = data.get("task"), data.get("backend")
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if not (isinstance(path, str) and isinstance(backend, str)):
            raise ValueError(f"job data {data!r} lacks the task path or backend alias.")
        if not (isinstance(args, list) and isinstance(kwargs, dict)):
            raise ValueError(f"job data {data!r} has malformed args or kwargs.")
        run_after = data.get("run_after")
        return cls(
            task_path=path,
            backend=backend,
            args=args,
            kwargs=kwargs,
            run_after=datetime.fromisoformat(run_after) if isinstance(run_after, str) else None,
        )


def task_error(error: JobError) -> TaskError:
    match = _CLASS_PATH.match(error.message or "")
    if error.error_type in _KIND_CLASSES and not match:
        path = class_path(_KIND_CLASSES[error.error_type])
    elif match:
        path = match.group(1)
    else:
        path = "builtins.Exception"
    return TaskError(exception_class_path=path, traceback=error.traceback or error.message)


def to_task_result(job: Job, task: Task, payload: Payload) -> TaskResult:
    """The ``TaskResult`` of a task's job; ``task`` is the resolved task of ``payload``."""
    changes: dict[str, Any] = {
        "priority": to_django_priority(job.priority),
        "queue_name": job.executor.partition(".")[2] or task.queue_name,
        "run_after": payload.run_after,
    }
    changes = {k: v for k, v in changes.items() if v is not None and v != getattr(task, k)}
    if changes:  # Task.using() re-validates the task: skip it when nothing changes.
        task = task.using(**changes)
    result: TaskResult[..., Any] = TaskResult(
        task=task,
        id=str(job.id),
        status=STATUSES[job.status],
        enqueued_at=job.inserted_at,
        started_at=job.attempted_at,
        last_attempted_at=job.attempted_at,
        finished_at=job.finished_at,
        args=payload.args,
        kwargs=payload.kwargs,
        backend=payload.backend,
        errors=[task_error(e) for e in job.errors],
        worker_ids=[job.claimed_by or "unknown"] * job.attempt,
    )
    if job.status == JobStatus.COMPLETE:
        object.__setattr__(result, "_return_value", getattr(job, "result", None))
    return result
