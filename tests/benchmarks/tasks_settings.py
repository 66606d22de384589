"""Settings of the ``@task`` benchmark (``tasks_bench.py``): the benchmark's settings plus
django-tasks-db, so the same ``@task`` workload runs through both backends in one run."""

from __future__ import annotations

from tests.benchmarks.settings import *  # noqa: F403
from tests.benchmarks.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]

TASKS = {
    "default": {
        "BACKEND": "django_rexecutor.tasks.RexecutorTaskBackend",
        "QUEUES": ["default"],
        # The worker imports a task's module only from this list (not an installed app's).
        "OPTIONS": {"allowed_modules": ["tests.benchmarks.bench_tasks"]},
    },
    "tasks_db": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]},
}
