"""The ``@task`` functions of the tasks benchmark: the same no-op on each backend (a task's
path names its function, so each backend gets its own)."""

from __future__ import annotations

from django.tasks import task


@task
def rexecutor_noop() -> None:
    return None


@task(backend="tasks_db")
def tasks_db_noop() -> None:
    return None
