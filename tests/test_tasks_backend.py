"""The django.tasks backend without a worker: Django's backend contract (validation,
enqueue, results, checks), argument handling, and one attempt run in-process."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("RexecutorTaskBackend needs Django 6 (django.tasks)", allow_module_level=True)

import test_tasks_defs as defs
from asgiref.sync import async_to_sync
from django.core import checks
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings
from django.utils import timezone

from django_rexecutor import Executor, JobStatus
from django_rexecutor.backends import get_backend
from django_rexecutor.job import ErrorDetails
from django_rexecutor.outcomes import Cancel, Done
from django_rexecutor.registry import all_executors
from django_rexecutor.status import ErrorType
from django_rexecutor.tasks import (
    RexecutorTaskBackend,
    TaskCancelled,
    TaskJSONError,
    TaskNotAllowed,
    executor_for_queue,
)
from django_rexecutor.tasks.executors import TaskFailed

BACKEND = "django_rexecutor.tasks.RexecutorTaskBackend"
db = pytest.mark.django_db


def claim_one(queue: str = "default"):
    jobs = get_backend().claim_jobs("test-worker", {f"django_tasks.{queue}": 1}, 1)
    assert len(jobs) == 1
    return jobs[0]


def run_one(queue: str = "default"):
    """Claim the next job of ``queue`` and run one attempt in-process, as a worker would."""
    job = claim_one(queue)
    return job, executor_for_queue(queue)().execute(job)


# -- configuration --------------------------------------------------------------------------


def test_backend_declares_what_it_supports() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, RexecutorTaskBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority
    assert backend.check() == []


def test_every_configured_queue_has_a_registered_executor() -> None:
    names = set(all_executors())
    assert {"django_tasks.default", "django_tasks.emails"} <= names


def _check(**params) -> list[str]:
    backend = RexecutorTaskBackend("custom", {"BACKEND": BACKEND, **params})
    return [m.id for m in backend.check() if isinstance(m, checks.CheckMessage)]


def test_check_reports_misconfiguration() -> None:
    assert _check(QUEUES=["default"]) == []
    assert _check(QUEUES=[]) == ["django_rexecutor.E302"]
    assert _check(OPTIONS={"max_attempt": 3}) == ["django_rexecutor.E304"]
    assert _check(OPTIONS={"max_attempts": 0}) == ["django_rexecutor.E305"]
    assert _check(OPTIONS={"backoff": "soon"}) == ["django_rexecutor.E305"]
    assert _check(OPTIONS={"allowed_modules": "myproject"}) == ["django_rexecutor.E306"]


def test_check_reports_the_app_not_installed() -> None:
    installed = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
    ]
    with override_settings(INSTALLED_APPS=installed):
        assert _check() == ["django_rexecutor.E301"]


@pytest.mark.django_db  # Django 6.1's system checks query every database
def test_django_system_checks_run_the_backend_check() -> None:
    tasks = {"default": {"BACKEND": BACKEND, "QUEUES": [], "OPTIONS": {"colour": "blue"}}}
    with override_settings(TASKS=tasks):
        ids = {m.id for m in checks.run_checks()}
    assert {"django_rexecutor.E302", "django_rexecutor.E304"} <= ids


# -- validation (Django's contract) ---------------------------------------------------------


@pytest.mark.parametrize("priority", [101, -101])
def test_priority_out_of_range_is_rejected(priority: int) -> None:
    with pytest.raises(InvalidTask, match="priority"):
        defs.add.using(priority=priority)


def test_naive_run_after_is_rejected() -> None:
    with pytest.raises(InvalidTask, match="aware"):
        defs.add.using(run_after=datetime(2030, 1, 1))


def test_unknown_queue_is_rejected() -> None:
    with pytest.raises(InvalidTask, match="Queue 'nope'"):
        defs.add.using(queue_name="nope")


def test_function_not_at_module_level_is_rejected() -> None:
    from django.tasks import task

    def local() -> None: ...

    with pytest.raises(InvalidTask, match="module level"):
        task(local)


def test_takes_context_needs_a_context_argument() -> None:
    from django.tasks import task

    with pytest.raises(InvalidTask, match="context"):
        task(takes_context=True)(defs.not_a_task)


# -- enqueue --------------------------------------------------------------------------------


@db
def test_enqueue_stores_a_job_of_the_queue_executor() -> None:
    received = []

    def on_enqueued(sender, task_result, **kwargs):
        received.append(task_result)

    task_enqueued.connect(on_enqueued)
    try:
        result = defs.echo.enqueue(1, (2, 3), b"bytes", key={"nested": True})
    finally:
        task_enqueued.disconnect(on_enqueued)
    assert result.status == TaskResultStatus.READY
    assert result.backend == "default"
    assert not result.is_finished
    job = get_backend().get_job(int(result.id))
    assert job.executor == "django_tasks.emails"
    assert job.status == JobStatus.SCHEDULED
    # Django priority 50 (higher is more urgent) → ours 100 - 50 (lower is more urgent).
    assert job.priority == 50
    assert job.max_attempts == 5
    assert job.data == {
        "task": "test_tasks_defs.echo",
        "backend": "default",
        "args": [1, [2, 3], "bytes"],
        "kwargs": {"key": {"nested": True}},
        "run_after": None,
    }
    assert [r.id for r in received] == [result.id]


@db
def test_priorities_map_onto_ours_keeping_the_order() -> None:
    ids = [defs.add.using(priority=p).enqueue(1, 1).id for p in (-100, -1, 0, 1, 100)]
    priorities = [get_backend().get_job(int(i)).priority for i in ids]
    assert priorities == [200, 101, 100, 99, 0]
    assert priorities == sorted(priorities, reverse=True)
    for job_id, django_priority in zip(ids, (-100, -1, 0, 1, 100), strict=True):
        assert default_task_backend.get_result(job_id).task.priority == django_priority


@db
def test_run_after_becomes_scheduled_at() -> None:
    at = timezone.now() + timedelta(hours=2)
    result = defs.add.using(run_after=at).enqueue(1, 2)
    job = get_backend().get_job(int(result.id))
    assert job.scheduled_at == at
    assert default_task_backend.get_result(result.id).task.run_after == at
    # Not ready, so nothing is claimed.
    assert get_backend().claim_jobs("w", {"django_tasks.default": 5}, 5) == []


@db
@pytest.mark.parametrize(
    "args",
    [
        (datetime(2030, 1, 1),),
        ({1, 2},),
        (float("nan"),),
        ("nul\x00char",),
        (object(),),
    ],
)
def test_non_json_arguments_are_rejected_and_nothing_is_stored(args) -> None:
    with pytest.raises(TaskJSONError, match="args must be JSON") as info:
        defs.echo.enqueue(*args)
    # Django raises TypeError for arguments it cannot normalise; so do we.
    assert isinstance(info.value, TypeError)
    assert executor_for_queue("emails").query_jobs() == []


@db
def test_non_json_keyword_arguments_are_rejected() -> None:
    with pytest.raises(TaskJSONError, match="kwargs must be JSON"):
        defs.echo.enqueue(when=timezone.now())


@db
def test_enqueue_joins_the_callers_transaction() -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = defs.add.enqueue(1, 2)
        assert default_task_backend.get_result(result.id).status == TaskResultStatus.READY
        raise Rollback
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


@db
def test_aenqueue_and_aget_result() -> None:
    async def scenario():
        result = await defs.async_add.aenqueue(2, 3)
        fetched = await defs.async_add.aget_result(result.id)
        await result.arefresh()
        return result, fetched

    result, fetched = async_to_sync(scenario)()
    assert fetched.id == result.id
    assert fetched.status == TaskResultStatus.READY
    assert fetched.args == [2, 3]
    assert result.enqueued_at == fetched.enqueued_at


@db
def test_retry_options_come_from_the_task_then_the_backend() -> None:
    assert get_backend().get_job(int(defs.flaky.enqueue(2).id)).max_attempts == 3
    assert get_backend().get_job(int(defs.always_fails.enqueue().id)).max_attempts == 2
    tasks = {"default": {"BACKEND": BACKEND, "QUEUES": ["default"], "OPTIONS": {"max_attempts": 7}}}
    with override_settings(TASKS=tasks):
        job_id = int(defs.add.enqueue(1, 1).id)
        assert get_backend().get_job(job_id).max_attempts == 7
        assert get_backend().get_job(int(defs.flaky.enqueue(2).id)).max_attempts == 3


# -- results --------------------------------------------------------------------------------


@db
@pytest.mark.parametrize("result_id", ["999999999", "not-a-number", ""])
def test_get_result_of_a_missing_id(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)


@db
def test_get_result_ignores_jobs_that_are_not_tasks() -> None:
    other = next(cls for name, cls in all_executors().items() if name.startswith("demo."))
    plain = other.enqueue(data={"task": "test_tasks_defs.add", "backend": "default"})
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(plain))


@db
def test_failed_attempts_read_back_as_errors_with_class_paths() -> None:
    result = defs.flaky.enqueue(5)
    backend = get_backend()
    job = claim_one()
    backend.mark_job_retryable(
        job.id,
        timezone.now(),
        ErrorDetails(ErrorType.PANIC, "builtins.KeyError: 'x'", "Traceback ...\nKeyError: 'x'"),
    )
    job = claim_one()
    backend.mark_job_retryable(
        job.id, timezone.now(), ErrorDetails(ErrorType.TIMEOUT, "attempt exceeded 1s")
    )
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [e.exception_class_path for e in result.errors] == [
        "builtins.KeyError",
        "django_rexecutor.tasks.exceptions.AttemptTimedOut",
    ]
    assert result.errors[0].exception_class is KeyError
    assert issubclass(result.errors[1].exception_class, TimeoutError)
    assert "KeyError: 'x'" in result.errors[0].traceback
    assert result.attempts == 2
    assert result.worker_ids == ["test-worker", "test-worker"]


@db
def test_cancelled_task_reads_back_as_failed() -> None:
    result = defs.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    executor_for_queue("default").cancel_job(int(result.id), "not needed any more")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.is_finished
    assert result.finished_at is not None
    assert [e.exception_class for e in result.errors] == [TaskCancelled]
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


# -- one attempt, in-process ----------------------------------------------------------------


@db
def test_running_a_task_returns_its_json_value_and_sends_signals() -> None:
    seen: list[tuple[str, str, object]] = []

    def on_started(sender, task_result, **kwargs):
        seen.append(("started", task_result.status, task_result.attempts))

    def on_finished(sender, task_result, **kwargs):
        seen.append(("finished", task_result.status, task_result.return_value))

    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        result = defs.add.enqueue(2, 40)
        job, outcome = run_one()
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)
    assert job.id == int(result.id)
    assert outcome == Done(result=42)
    assert seen == [
        ("started", TaskResultStatus.RUNNING, 1),
        ("finished", TaskResultStatus.SUCCESSFUL, 42),
    ]


@db
def test_async_task_runs() -> None:
    defs.async_add.enqueue(5, 6)
    assert run_one()[1] == Done(result=11)


@db
def test_context_carries_the_attempt_and_result_id() -> None:
    result = defs.attempt_number.enqueue()
    assert run_one()[1] == Done(result={"attempt": 1, "id": result.id})


@db
def test_exception_fails_the_attempt_with_its_class_path() -> None:
    defs.flaky.enqueue(3)
    job = claim_one()
    with pytest.raises(TaskFailed, match=r"^builtins\.ValueError: failing attempt 1$") as info:
        executor_for_queue("default")().execute(job)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.error_type == ErrorType.PANIC


@db
def test_non_json_return_value_fails_the_attempt() -> None:
    defs.returns_a_set.enqueue()
    job = claim_one()
    with pytest.raises(TaskFailed, match="TaskJSONError: Task return value must be JSON"):
        executor_for_queue("default")().execute(job)


@db
def test_backoff_comes_from_the_task_options() -> None:
    defs.flaky.enqueue(3)
    job = claim_one()
    assert executor_for_queue("default")().backoff(job) == timedelta(seconds=0.05)


# -- security: payloads never name arbitrary code -------------------------------------------


def _enqueue_payload(task_path: str, backend: str = "default") -> int:
    data = {"task": task_path, "backend": backend, "args": [], "kwargs": {}, "run_after": None}
    return int(executor_for_queue("default").enqueue(data=data))


@db
@pytest.mark.parametrize(
    ("task_path", "backend", "reason"),
    [
        ("test_tasks_defs.not_a_task", "default", "not a task"),
        # Imported already, or not: neither makes a module's contents runnable.
        ("os.system", "default", "not a registered task"),
        ("antigravity.fly", "default", "not a registered task"),
        ("test_tasks_defs.add", "elsewhere", "no backend 'elsewhere'"),
        ("add", "default", "not the dotted path"),
    ],
)
def test_payload_naming_something_else_is_cancelled_unrun(task_path, backend, reason) -> None:
    job_id = _enqueue_payload(task_path, backend)
    job, outcome = run_one()
    assert job.id == job_id
    assert isinstance(outcome, Cancel)
    assert outcome.reason.startswith("django_rexecutor.tasks.exceptions.TaskNotAllowed: ")
    assert reason in outcome.reason
    assert "antigravity" not in sys.modules


@db
def test_malformed_payload_is_cancelled() -> None:
    executor_for_queue("default").enqueue(data=["not", "a", "payload"])
    assert isinstance(run_one()[1], Cancel)


def test_task_options_validates_its_arguments() -> None:
    from django_rexecutor.tasks import task_options

    with pytest.raises(ValueError, match="max_attempts"):
        task_options(max_attempts=0)
    with pytest.raises(TypeError, match="backoff"):
        task_options(backoff="often")


def test_loading_refuses_modules_outside_apps() -> None:
    from django_rexecutor.tasks.loading import resolve_task

    with pytest.raises(TaskNotAllowed, match="is not a registered task"):
        resolve_task("some_unlisted_module.task", "default")
    assert "some_unlisted_module" not in sys.modules


# -- the engine stores what a job returned --------------------------------------------------


@pytest.fixture(params=["memory", "django"])
def engine(request):
    from django_rexecutor import DjangoBackend, InMemoryBackend

    if request.param == "django":
        request.getfixturevalue("db")
        return DjangoBackend()
    return InMemoryBackend()


def test_complete_stores_the_result_and_rerun_clears_it(engine) -> None:
    from django_rexecutor.backends.values import Claim, EnqueuableJob

    now = timezone.now()
    job_id = engine.enqueue(EnqueuableJob("django_tasks.default", None, None, 3, now))
    job = engine.claim_jobs("w", {"django_tasks.default": 1}, 1)[0]
    value = {"total": 3, "items": [1, "two", None]}
    assert engine.mark_job_complete(job_id, claim=Claim.of(job), result=value)
    assert engine.get_job(job_id).result == value
    assert engine.rerun_job(job_id).result is None
    job = engine.claim_jobs("w", {"django_tasks.default": 1}, 1)[0]
    engine.cancel_job(job_id, "stop")
    # A cancel requested meanwhile wins over the late result, which is not stored.
    assert engine.mark_job_complete(job_id, claim=Claim.of(job), result="late")
    stored = engine.get_job(job_id)
    assert stored.status == JobStatus.CANCELLED
    assert stored.result is None


class ReturnsWhatItIsGiven(Executor):
    """Returns ``Done(result=...)`` of its data: a set when asked to, to test the check."""

    name = "test_tasks.returns_data"
    max_attempts = 1

    def execute(self, job):
        return Done(result={1, 2} if job.data == "a set" else job.data)


def test_worker_stores_a_json_result_and_fails_a_non_json_one() -> None:
    from django_rexecutor import InMemoryBackend
    from django_rexecutor.testing import drain_jobs

    engine = InMemoryBackend()
    good = ReturnsWhatItIsGiven.enqueue({"n": [1, 2]}, backend=engine)
    bad = ReturnsWhatItIsGiven.enqueue("a set", backend=engine)
    assert drain_jobs(ReturnsWhatItIsGiven, backend=engine) == {"complete": 1, "discarded": 1}
    assert engine.get_job(good).result == {"n": [1, 2]}
    failed = engine.get_job(bad)
    assert failed.result is None
    assert "Done(result=...)" in failed.errors[0].message
