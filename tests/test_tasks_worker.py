"""The django.tasks backend end to end: tasks enqueued here, run by real ``rexecutor_worker``
processes on the test database (PostgreSQL or SQLite), results read back through Django's
API."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("RexecutorTaskBackend needs Django 6 (django.tasks)", allow_module_level=True)

import test_tasks_defs as defs
from django.tasks import TaskResult, TaskResultStatus
from django.urls import reverse
from django.utils import timezone
from worker_support import WorkerProcess, run_burst, wait_until

from django_rexecutor.tasks import TaskCancelled, TaskJSONError

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TESTS_DIR = str(Path(__file__).resolve().parent)


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """Worker environment that can import ``test_tasks_defs`` by the path stored in jobs."""
    path = subprocess_env.get("PYTHONPATH", "")
    return dict(subprocess_env, PYTHONPATH=os.pathsep.join(p for p in (TESTS_DIR, path) if p))


def wait_finished(results: list[TaskResult], worker: WorkerProcess, timeout: float = 30) -> None:
    def finished() -> bool:
        for result in results:
            result.refresh()
        return all(r.is_finished for r in results)

    wait_until(finished, timeout, worker, interval=0.1)


def test_tasks_succeed_retry_and_fail_through_a_worker(manage_py, env) -> None:
    added = defs.add.enqueue(2, 3)
    awaited = defs.async_add.enqueue(20, 22)
    with_context = defs.attempt_number.enqueue()
    flaky = defs.flaky.enqueue(3)
    failing = defs.always_fails.enqueue()
    not_json = defs.returns_a_set.enqueue()
    results = [added, awaited, with_context, flaky, failing, not_json]

    worker = WorkerProcess(manage_py, env, "--executor", "django_tasks.default")
    try:
        wait_finished(results, worker)
    finally:
        assert worker.stop() == 0, worker.output

    assert added.status == TaskResultStatus.SUCCESSFUL
    assert added.return_value == 5
    assert added.errors == []
    assert added.attempts == 1 and len(added.worker_ids[0]) > 0
    assert added.enqueued_at <= added.started_at <= added.finished_at
    assert added.last_attempted_at == added.started_at
    assert awaited.return_value == 42
    assert with_context.return_value == {"attempt": 1, "id": with_context.id}

    # Fails twice, then succeeds: three attempts, two errors.
    assert flaky.status == TaskResultStatus.SUCCESSFUL, worker.output
    assert flaky.return_value == "ok on attempt 3"
    assert flaky.attempts == 3
    assert [e.exception_class for e in flaky.errors] == [ValueError, ValueError]
    assert "failing attempt 1" in flaky.errors[0].traceback
    assert "failing attempt 2" in flaky.errors[1].traceback

    # Always fails: failed after its max_attempts (2).
    assert failing.status == TaskResultStatus.FAILED
    assert failing.attempts == 2
    assert [e.exception_class_path for e in failing.errors] == ["builtins.RuntimeError"] * 2
    assert "this task never works" in failing.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = failing.return_value

    # A return value that is not JSON fails the attempt (max_attempts=1: failed).
    assert not_json.status == TaskResultStatus.FAILED
    assert [e.exception_class for e in not_json.errors] == [TaskJSONError]


def test_deferred_task_does_not_run_early(manage_py, env) -> None:
    worker = WorkerProcess(manage_py, env, "--executor", "django_tasks.default")
    try:
        wait_finished([defs.add.enqueue(0, 0)], worker)  # the worker is up and running
        run_after = timezone.now() + timedelta(seconds=2)
        deferred = defs.add.using(run_after=run_after).enqueue(1, 1)
        now = defs.add.enqueue(2, 2)
        wait_finished([now], worker)
        deferred.refresh()
        assert timezone.now() < run_after, "the immediate task took too long to tell"
        assert deferred.status == TaskResultStatus.READY
        wait_finished([deferred], worker)
    finally:
        assert worker.stop() == 0, worker.output
    assert deferred.status == TaskResultStatus.SUCCESSFUL
    assert deferred.started_at >= run_after
    assert deferred.return_value == 2


def test_higher_priority_runs_first(manage_py, env) -> None:
    priorities = [0, -100, 100, 10, -5, 50]
    results = {p: defs.add.using(priority=p).enqueue(p, 0) for p in priorities}
    run_burst(manage_py, env, "--executor", "django_tasks.default", "--concurrency", "1")
    for result in results.values():
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
    by_start = sorted(results, key=lambda p: results[p].started_at)
    assert by_start == sorted(priorities, reverse=True)


def test_a_worker_dedicated_to_one_queue(manage_py, env) -> None:
    email = defs.echo.enqueue("hello", to="ada@example.com")
    other = defs.add.enqueue(1, 2)
    run_burst(manage_py, env, "--executor", "django_tasks.emails")
    email.refresh()
    other.refresh()
    assert email.status == TaskResultStatus.SUCCESSFUL
    assert email.return_value == {"args": ["hello"], "kwargs": {"to": "ada@example.com"}}
    assert other.status == TaskResultStatus.READY


def test_cancelling_from_the_admin_shows_the_task_failed(manage_py, env, admin_client) -> None:
    running = defs.sleepy.enqueue(30)
    waiting = defs.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    # A task cannot see job.cancel_requested: with no grace it is interrupted at once.
    worker = WorkerProcess(
        manage_py, env, "--executor", "django_tasks.default", overrides={"CANCEL_GRACE": 0}
    )
    try:

        def is_running() -> bool:
            running.refresh()
            return running.status == TaskResultStatus.RUNNING

        wait_until(is_running, 20, worker)
        # The admin's bulk "cancel" action on both tasks' jobs.
        response = admin_client.post(
            reverse("admin:django_rexecutor_jobrecord_changelist"),
            {"action": "cancel_selected", "_selected_action": [running.id, waiting.id]},
        )
        assert response.status_code == 302
        took = wait_until(lambda: running.refresh() or running.is_finished, 10, worker)
    finally:
        assert worker.stop() == 0, worker.output
    waiting.refresh()
    assert took < 5
    for result in (running, waiting):
        assert result.status == TaskResultStatus.FAILED
        assert result.errors[-1].exception_class is TaskCancelled
