"""``RexecutorTaskBackend``: Django's tasks framework (``django.tasks``) on our engine.

Configured the Django way::

    TASKS = {
        "default": {
            "BACKEND": "django_rexecutor.tasks.RexecutorTaskBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"max_attempts": 3, "backoff": BackoffStrategy.exponential(10)},
        }
    }

A task becomes a job of the queue's executor (``django_tasks.<queue>``), inserted through the
configured rexecutor backend in the caller's transaction; a worker runs it, retries it with
backoff and stores its JSON return value; ``get_result`` reads the job back as a
``TaskResult``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.apps import apps
from django.core import checks
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from ..backends import get_backend
from ..exceptions import JobNotFound
from ..job import Job
from .configured import register_backend_class
from .exceptions import TaskNotAllowed
from .executors import EXECUTOR_PREFIX, executor_for_queue, executor_name
from .loading import register_task, resolve_task
from .options import (
    DEFAULT_POLICY,
    OPTION_NAMES,
    RetryPolicy,
    allowed_modules_from_options,
    policy_from_options,
    task_policy,
)
from .results import Payload, to_json_value, to_our_priority, to_task_result
from .signals import send_task_signal


@register_backend_class
class RexecutorTaskBackend(BaseTaskBackend):
    """A ``TASKS`` backend with results, retries, priorities and real workers."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Bad options are reported by check() and raised on enqueue, never here: Django
        # builds backends while running its checks.
        self.options = dict(self.options or {})

    @property
    def retry_policy(self) -> RetryPolicy:
        return policy_from_options(self.options)

    @property
    def allowed_modules(self) -> tuple[str, ...]:
        return allowed_modules_from_options(self.options)

    # -- enqueue -------------------------------------------------------------------------
    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if len(executor_name(task.queue_name)) > 255:
            raise InvalidTask(f"Queue name {task.queue_name!r} is too long (at most 242 chars).")
        # @task validates each task it creates: that makes it one a worker may resolve.
        register_task(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        payload = Payload(
            task_path=task.module_path,
            backend=self.alias,
            args=to_json_value(list(args), what="args"),
            kwargs=to_json_value(dict(kwargs), what="kwargs"),
            run_after=self._aware(task.run_after),
        )
        policy = task_policy(task).over(self.retry_policy).over(DEFAULT_POLICY)
        builder = (
            executor_for_queue(task.queue_name)
            .builder()
            .with_data(payload.to_data())
            .with_priority(to_our_priority(task.priority))
            .with_max_attempts(policy.max_attempts or DEFAULT_POLICY.max_attempts or 1)
        )
        if payload.run_after is not None:
            builder = builder.schedule_at(payload.run_after)
        job_id = builder.enqueue()
        result: TaskResult[..., Any] = TaskResult(
            task=task,
            id=str(int(job_id)),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=payload.args,
            kwargs=payload.kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        send_task_signal(task_enqueued, result)
        return result

    @staticmethod
    def _aware(run_after: datetime | None) -> datetime | None:
        if run_after is not None and timezone.is_naive(run_after):
            # Only reachable with USE_TZ = False, where Django allows naive times.
            return timezone.make_aware(run_after)
        return run_after

    # -- results -------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        job = self._job(result_id)
        payload = Payload.from_data(job.data)
        try:
            task = resolve_task(payload.task_path, payload.backend)
        except (TaskNotAllowed, ImportError) as exc:
            raise InvalidTask(f"Task result {result_id} names no loadable task: {exc}") from exc
        return to_task_result(job, task, payload)

    def _job(self, result_id: Any) -> Job:
        try:
            job_id = int(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        try:
            job = get_backend().get_job(job_id)
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        data = job.data if isinstance(job.data, dict) else {}
        if not job.executor.startswith(EXECUTOR_PREFIX) or data.get("backend") != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return job

    # -- checks --------------------------------------------------------------------------
    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = []
        where = f"TASKS[{self.alias!r}]"

        def error(msg: str, id_: str, hint: str | None = None) -> None:
            messages.append(checks.Error(msg, hint=hint, id=f"django_rexecutor.{id_}"))

        if not apps.is_installed("django_rexecutor"):
            error(
                f"{where} uses RexecutorTaskBackend but django_rexecutor is not installed.",
                "E301",
                hint='Add "pgtrigger" and "django_rexecutor" to INSTALLED_APPS and migrate.',
            )
        if not self.queues:
            error(
                f"{where}['QUEUES'] is empty.",
                "E302",
                hint="List every queue name: each becomes an executor named django_tasks.<queue>.",
            )
        for queue_name in sorted(self.queues):
            if not isinstance(queue_name, str) or not 0 < len(executor_name(queue_name)) <= 255:
                error(f"{where}['QUEUES'] has the invalid queue name {queue_name!r}.", "E303")
        unknown = sorted(set(self.options) - OPTION_NAMES)
        if unknown:
            error(
                f"{where}['OPTIONS'] has unknown key(s) {unknown}.",
                "E304",
                hint=f"Known keys: {', '.join(sorted(OPTION_NAMES))}.",
            )
        try:
            self.retry_policy  # noqa: B018 - validates max_attempts and backoff
        except (TypeError, ValueError) as exc:
            error(f"{where}['OPTIONS']: {exc}", "E305")
        try:
            self.allowed_modules  # noqa: B018
        except TypeError as exc:
            error(str(exc), "E306")
        return messages
