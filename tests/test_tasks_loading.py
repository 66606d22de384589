"""Which task a job may name: a payload is data, so it can only point at a task the process
already registered (installed apps' ``tasks.py``, imported at start-up) or at a module listed
in ``allowed_modules``; any other module is never imported — not even one of an installed app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("RexecutorTaskBackend needs Django 6 (django.tasks)", allow_module_level=True)

from django.test import modify_settings, override_settings

from django_rexecutor import JobStatus
from django_rexecutor.backends import get_backend
from django_rexecutor.tasks import executor_for_queue
from django_rexecutor.tasks.loading import resolve_task
from django_rexecutor.testing import drain_jobs

APP = "tests.tasks_testapp"
UNREGISTERED = f"{APP}.side_effect.launch"  # a real @task, in a module nothing imported
REGISTERED = f"{APP}.tasks.greet"  # found in the app's tasks.py at start-up
MARKER = "REXECUTOR_TEST_IMPORT_MARKER"


def enqueue_payload(task_path: str, *args: object) -> int:
    """A job as ``@task(...).enqueue()`` stores it (or as anyone with database access could)."""
    data = {"task": task_path, "backend": "default", "args": list(args), "kwargs": {}}
    return int(executor_for_queue("default").enqueue(data={**data, "run_after": None}))


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file ``tests.tasks_testapp.side_effect`` creates when it is imported."""
    path = tmp_path / "side_effect_imported"
    monkeypatch.setenv(MARKER, str(path))
    return path


@pytest.fixture
def tasks_testapp():
    """``tests.tasks_testapp`` installed; start-up (``ready()``) imports its ``tasks.py``."""
    assert f"{APP}.side_effect" not in sys.modules
    with modify_settings(INSTALLED_APPS={"append": APP}):
        yield
    sys.modules.pop(f"{APP}.side_effect", None)  # so a failure here cannot hide another


def assert_refused_unimported(job_id: int, marker: Path) -> None:
    job = get_backend().get_job(job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.errors[-1].message.startswith(
        "django_rexecutor.tasks.exceptions.TaskNotAllowed: "
        f"'{UNREGISTERED}' is not a registered task and '{APP}.side_effect' is not in "
        "TASKS['default']['OPTIONS']['allowed_modules'], so it was not imported."
    ), job.errors[-1].message
    assert not marker.exists(), marker.read_text()


@pytest.mark.django_db
def test_a_job_naming_an_unregistered_module_of_an_installed_app_never_imports_it(
    tasks_testapp, marker
) -> None:
    refused = enqueue_payload(UNREGISTERED)
    greeted = enqueue_payload(REGISTERED, "ada")

    assert drain_jobs("django_tasks.default") == {"cancelled": 1, "complete": 1}

    assert_refused_unimported(refused, marker)
    assert f"{APP}.side_effect" not in sys.modules
    assert get_backend().get_job(greeted).result == "hello ada"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_runs_installed_apps_tasks_and_imports_nothing_a_job_names(
    manage_py, subprocess_env, marker
) -> None:
    refused = enqueue_payload(UNREGISTERED)
    greeted = enqueue_payload(REGISTERED, "grace")
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE="tests.settings_tasks")
    options = ["--burst", "--no-cron", "--no-pruner", "--executor", "django_tasks.default"]
    worker = subprocess.run(
        [*manage_py, "rexecutor_worker", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    assert_refused_unimported(refused, marker)
    assert get_backend().get_job(greeted).result == "hello grace"


def test_allowed_modules_are_imported_on_demand(marker) -> None:
    """``allowed_modules`` is the way to run tasks outside installed apps' ``tasks.py``."""
    backend_settings = {
        "default": {
            "BACKEND": "django_rexecutor.tasks.RexecutorTaskBackend",
            "OPTIONS": {"allowed_modules": [f"{APP}.side_effect"]},
        }
    }
    try:
        with override_settings(TASKS=backend_settings):
            assert resolve_task(UNREGISTERED, "default").call() == "launched"
        assert marker.exists()
    finally:
        sys.modules.pop(f"{APP}.side_effect", None)
