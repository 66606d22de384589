"""Django's tasks framework (``django.tasks``, Django 6+) on django-rexecutor.

``TASKS = {"default": {"BACKEND": "django_rexecutor.tasks.RexecutorTaskBackend"}}`` makes
every ``@task`` a job of the executor ``django_tasks.<queue>``, run by ``rexecutor_worker``
with retries, priorities and stored results. See ``docs/tasks.md``."""

from __future__ import annotations

import django
from django.core.exceptions import ImproperlyConfigured

if django.VERSION < (6, 0):
    raise ImproperlyConfigured(
        "django_rexecutor.tasks needs Django 6.0 or newer (django.tasks); this is Django "
        f"{django.get_version()}."
    )

from .backend import RexecutorTaskBackend
from .exceptions import (
    AttemptTimedOut,
    TaskCancelled,
    TaskJSONError,
    TaskNotAllowed,
    WorkerLost,
)
from .executors import EXECUTOR_PREFIX, TaskExecutor, executor_for_queue
from .options import RetryPolicy, task_options

__all__ = [
    "EXECUTOR_PREFIX",
    "AttemptTimedOut",
    "RetryPolicy",
    "RexecutorTaskBackend",
    "TaskCancelled",
    "TaskExecutor",
    "TaskJSONError",
    "TaskNotAllowed",
    "WorkerLost",
    "executor_for_queue",
    "task_options",
]
