"""The built-in executors that run tasks: one per queue, named ``django_tasks.<queue>``.

So ``manage.py rexecutor_worker --executor django_tasks.emails`` dedicates workers to the
``emails`` queue. The executors of every queue listed in a ``RexecutorTaskBackend``'s
``QUEUES`` are registered when Django starts, so a worker runs them like any other executor."""

from __future__ import annotations

import logging
import threading
import traceback
from datetime import timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.module_loading import import_string

from ..executor import Executor
from ..job import Job
from ..outcomes import Cancel, Done, ExecutionError
from ..status import ErrorType
from .configured import is_backend_class, rexecutor_backend
from .exceptions import TaskNotAllowed
from .loading import discover_tasks, resolve_task
from .options import DEFAULT_POLICY, task_policy
from .results import Payload, class_path, to_json_value, to_task_result
from .signals import send_task_signal

logger = logging.getLogger("django_rexecutor.tasks")

EXECUTOR_PREFIX = "django_tasks."
_lock = threading.Lock()
_by_queue: dict[str, type[TaskExecutor]] = {}


class TaskFailed(ExecutionError):
    """A task raised: recorded as a ``panic`` whose message starts with the exception's class
    path, with the original traceback chained in."""

    error_type = ErrorType.PANIC


def executor_name(queue_name: str) -> str:
    return EXECUTOR_PREFIX + queue_name


class TaskExecutor(Executor, abstract=True):
    """Runs the tasks of one queue (subclassed per queue by ``executor_for_queue``)."""

    queue_name: ClassVar[str]

    def execute(self, job: Job) -> Done | Cancel:
        try:
            payload = Payload.from_data(job.data)
            task = resolve_task(payload.task_path, payload.backend)
        except (TaskNotAllowed, ValueError) as exc:
            # Never retried: no later attempt can make a forbidden or malformed job runnable.
            logger.error("job %s (%s) names no runnable task: %s", job.id, job.executor, exc)
            return Cancel(f"{class_path(TaskNotAllowed)}: {exc}")
        except Exception as exc:
            # ImportError and the like: maybe a worker running older code; retry later.
            raise TaskFailed(f"{class_path(type(exc))}: {exc}") from exc

        result = to_task_result(job, task, payload)
        send_task_signal(task_started, result)
        try:
            if task.takes_context:
                context: TaskContext[..., Any] = TaskContext(task_result=result)
                value = task.call(context, *result.args, **result.kwargs)
            else:
                value = task.call(*result.args, **result.kwargs)
            value = to_json_value(value, what="return value")
        except Exception as exc:
            message = f"{class_path(type(exc))}: {exc}" if str(exc) else class_path(type(exc))
            if job.is_last_attempt:
                # Django's own receivers log with sys.exc_info(), so send inside the handler.
                self._finish(result, TaskResultStatus.FAILED, error=exc)
            raise TaskFailed(message) from exc
        self._finish(result, TaskResultStatus.SUCCESSFUL, value=value)
        return Done(result=value)

    @staticmethod
    def _finish(
        result: TaskResult,
        status: TaskResultStatus,
        *,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        if not task_finished.receivers:
            return
        object.__setattr__(result, "status", status)
        object.__setattr__(result, "finished_at", timezone.now())
        if error is not None:
            result.errors.append(
                TaskError(
                    exception_class_path=class_path(type(error)),
                    traceback="".join(traceback.format_exception(error)),
                )
            )
        else:
            object.__setattr__(result, "_return_value", value)
        send_task_signal(task_finished, result)

    def backoff(self, job: Job) -> timedelta:
        """The task's own backoff, else its backend's, else the engine default."""
        payload = Payload.from_data(job.data)
        task = resolve_task(payload.task_path, payload.backend)
        backend = rexecutor_backend(payload.backend)
        policy = task_policy(task).over(backend.retry_policy).over(DEFAULT_POLICY)
        assert policy.backoff is not None
        return policy.backoff.backoff(job.attempt)


def executor_for_queue(queue_name: str) -> type[TaskExecutor]:
    """The executor of ``queue_name``, defined and registered on first use."""
    known = _by_queue.get(queue_name)
    if known is not None:
        return known
    with _lock:
        if queue_name not in _by_queue:
            # Defining the subclass registers it (Executor.__init_subclass__).
            _by_queue[queue_name] = type(
                f"TaskExecutor[{queue_name}]",
                (TaskExecutor,),
                {
                    "name": executor_name(queue_name),
                    "queue_name": queue_name,
                    "__module__": __name__,
                },
            )
        return _by_queue[queue_name]


def register_task_executors() -> None:
    """Register the executor of every queue of every ``RexecutorTaskBackend`` in ``TASKS``,
    then, if there is one, import installed apps' ``tasks`` modules so that their tasks are
    registered (called from the app's ``ready()``; no database access)."""
    ours = False
    for params in (getattr(settings, "TASKS", None) or {}).values():
        try:
            backend_cls = import_string(params.get("BACKEND", ""))
        except ImportError:
            continue  # Django's own check reports it.
        if is_backend_class(backend_cls):
            ours = True
            for queue_name in params.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME]):
                if isinstance(queue_name, str) and queue_name:
                    executor_for_queue(queue_name)
    if ours:
        discover_tasks()
