"""The testing helpers users rely on: assert_enqueued / refute_enqueued, the pytest plugin's
fixtures, the factories, and the conformance suite's ability to catch a broken backend."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from django_rexecutor import Executor, InMemoryBackend, Job, JobStatus
from django_rexecutor.backends import get_backend, use_backend
from django_rexecutor.backends.base import Claim, ErrorDetails
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.query import IdIn
from django_rexecutor.testing import (
    BackendConformanceTests,
    assert_enqueued,
    refute_enqueued,
)
from tests.factories import EXECUTOR, JobErrorRecordFactory, JobRecordFactory

REPO_ROOT = Path(__file__).resolve().parent.parent


class SendEmail(Executor):
    name = "testing_helpers.send_email"

    def execute(self, job: Job) -> None:
        return None


class Resize(Executor):
    name = "testing_helpers.resize"

    def execute(self, job: Job) -> None:
        raise RuntimeError("always fails")


# -- assert_enqueued / refute_enqueued on the in-memory backend ------------------------------
def test_memory_backend_fixture_is_the_configured_backend(
    rexecutor_memory_backend: InMemoryBackend, rexecutor_backend: object
) -> None:
    assert get_backend() is rexecutor_memory_backend
    assert rexecutor_backend is rexecutor_memory_backend
    job_id = SendEmail.enqueue({"to": "a@example.com"})
    assert rexecutor_memory_backend.get_job(job_id).executor == SendEmail.name


def test_without_the_fixture_the_configured_backend_is_used(rexecutor_backend: object) -> None:
    assert isinstance(rexecutor_backend, DjangoBackend)
    assert get_backend() is rexecutor_backend


def test_the_plugin_is_registered_by_its_entry_point(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin("django_rexecutor")
    assert plugin is not None
    assert plugin.__name__ == "django_rexecutor.testing.pytest_plugin"


def test_the_plugin_imports_no_models_when_loaded() -> None:
    """pytest loads plugins before pytest-django configures Django."""
    code = (
        "import sys, django_rexecutor.testing.pytest_plugin\n"
        "loaded = [m for m in sys.modules if m.startswith(('django_rexecutor.models',"
        " 'django.contrib', 'django_rexecutor.testing.conformance'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_assert_enqueued_by_class_or_name(rexecutor_memory_backend: InMemoryBackend) -> None:
    job_id = SendEmail.enqueue({"to": "a@example.com"})
    [job] = assert_enqueued(SendEmail)
    assert job.id == job_id
    assert assert_enqueued(SendEmail.name) == [job]
    assert assert_enqueued() == [job]
    refute_enqueued(Resize)
    with pytest.raises(TypeError, match="Executor class or an executor name"):
        assert_enqueued(SendEmail())  # type: ignore[arg-type]


def test_data_and_metadata_match_exactly(rexecutor_memory_backend: InMemoryBackend) -> None:
    SendEmail.enqueue({"to": "a@example.com", "cc": ["b"]}, metadata={"trace": "t1"})
    SendEmail.enqueue(None)
    assert_enqueued(SendEmail, data={"cc": ["b"], "to": "a@example.com"})
    assert_enqueued(SendEmail, data=None, count=1)
    assert_enqueued(SendEmail, metadata={"trace": "t1"}, count=1)
    assert_enqueued(SendEmail, metadata=None, count=1)
    refute_enqueued(SendEmail, data={"to": "a@example.com"})  # no partial match
    with pytest.raises(AssertionError, match=r"data=\{'to': 'a@example.com'\}"):
        assert_enqueued(SendEmail, data={"to": "a@example.com"})


def test_tags_must_all_be_present(rexecutor_memory_backend: InMemoryBackend) -> None:
    SendEmail.enqueue(tags=["signup", "email"])
    assert_enqueued(SendEmail, tags=["email"])
    assert_enqueued(SendEmail, tags=["email", "signup"])
    refute_enqueued(SendEmail, tags=["email", "billing"])
    with pytest.raises(TypeError):
        assert_enqueued(SendEmail, tags="email")


def test_scheduled_filters_are_exact_and_strict(rexecutor_memory_backend: InMemoryBackend) -> None:
    at = timezone.now() + timedelta(hours=1)
    SendEmail.enqueue(schedule_at=at)
    tick = timedelta(microseconds=1)
    assert_enqueued(SendEmail, scheduled_at=at)
    refute_enqueued(SendEmail, scheduled_at=at + tick)
    assert_enqueued(SendEmail, scheduled_before=at + tick)
    refute_enqueued(SendEmail, scheduled_before=at)
    assert_enqueued(SendEmail, scheduled_after=at - tick)
    refute_enqueued(SendEmail, scheduled_after=at)
    assert_enqueued(SendEmail, scheduled_after=at - tick, scheduled_before=at + tick, count=1)


def test_count(rexecutor_memory_backend: InMemoryBackend) -> None:
    SendEmail.enqueue_many([{"data": 1}, {"data": 2}])
    assert len(assert_enqueued(SendEmail, count=2)) == 2
    assert_enqueued(Resize, count=0)
    with pytest.raises(AssertionError, match=r"exactly 1 enqueued job\(s\) matching"):
        assert_enqueued(SendEmail, count=1)
    with pytest.raises(AssertionError, match="exactly 0"):
        assert_enqueued(SendEmail, data=1, count=0)
    for bad in (-1, True, "2"):
        with pytest.raises(ValueError, match="count must be"):
            assert_enqueued(SendEmail, count=bad)  # type: ignore[arg-type]


def test_only_waiting_jobs_count_as_enqueued(rexecutor_memory_backend: InMemoryBackend) -> None:
    backend = rexecutor_memory_backend
    job_id = Resize.enqueue({"n": 1})
    [running] = backend.claim_jobs("w", {Resize.name: 1}, 1)
    refute_enqueued(Resize)
    backend.mark_job_retryable(
        job_id, timezone.now(), _error(), claim=Claim.of(running)
    )  # failed once: waiting again
    assert_enqueued(Resize, data={"n": 1})
    backend.cancel_job(job_id, "stop")
    refute_enqueued(Resize)


def _error() -> ErrorDetails:
    return ErrorDetails("panic", "boom")


def test_failure_message_lists_the_jobs_that_exist(
    rexecutor_memory_backend: InMemoryBackend,
) -> None:
    with pytest.raises(AssertionError, match="No job exists at all"):
        assert_enqueued(SendEmail)
    done = SendEmail.enqueue({"n": "done"})
    rexecutor_memory_backend.claim_jobs("w", {SendEmail.name: 1}, 1)
    SendEmail.enqueue({"n": "waiting"}, tags=["t"])
    with pytest.raises(AssertionError) as raised:
        assert_enqueued(SendEmail, data={"n": "other"})
    message = str(raised.value)
    assert "found 0" in message
    assert f"#{done} {SendEmail.name} [executing] data={{'n': 'done'}}" in message
    assert "data={'n': 'waiting'}" in message and "tags=['t']" in message
    with pytest.raises(AssertionError, match=r"No job of executor 'testing_helpers\.resize'"):
        assert_enqueued(Resize)


def test_failure_message_is_bounded(rexecutor_memory_backend: InMemoryBackend) -> None:
    SendEmail.enqueue_many([{"data": n} for n in range(30)])
    with pytest.raises(AssertionError) as raised:
        assert_enqueued(SendEmail, data="nope")
    lines = str(raised.value).splitlines()
    assert lines[-1] == "  ... and 10 more"
    assert sum(line.startswith("  #") for line in lines) == 20


def test_refute_enqueued_lists_what_matched(rexecutor_memory_backend: InMemoryBackend) -> None:
    job_id = SendEmail.enqueue({"n": 1})
    with pytest.raises(AssertionError) as raised:
        refute_enqueued(SendEmail, data={"n": 1})
    assert f"#{job_id} {SendEmail.name} [scheduled]" in str(raised.value)
    assert "Expected no enqueued job matching executor='testing_helpers.send_email'" in str(
        raised.value
    )


def test_an_explicit_backend_is_searched_instead(
    rexecutor_memory_backend: InMemoryBackend,
) -> None:
    other = InMemoryBackend()
    SendEmail.enqueue({"n": 1}, backend=other)
    refute_enqueued(SendEmail)
    assert_enqueued(SendEmail, data={"n": 1}, backend=other)
    with use_backend(other):
        assert_enqueued(SendEmail)


def test_drain_then_refute(rexecutor_memory_backend: InMemoryBackend) -> None:
    """The documented workflow: assert what was enqueued, run it inline, check the queue."""
    from django_rexecutor.testing import drain_jobs

    SendEmail.enqueue({"to": "a@example.com"})
    assert_enqueued(SendEmail, data={"to": "a@example.com"})
    assert drain_jobs(SendEmail)["complete"] == 1
    refute_enqueued(SendEmail)


# -- on the database, with the factories ------------------------------------------------------
@pytest.mark.django_db
def test_assert_enqueued_on_the_django_backend() -> None:
    at = timezone.now() + timedelta(minutes=5)
    waiting = JobRecordFactory.create(data={"user": 1}, tags=["a", "b"], scheduled_at=at)
    retrying = JobRecordFactory.create(retryable=True, data={"user": 2})
    JobRecordFactory.create(complete=True, data={"user": 3})
    JobRecordFactory.create(executing=True, data={"user": 4})
    jobs = assert_enqueued(EXECUTOR, count=2)
    assert [j.id for j in jobs] == [waiting.pk, retrying.pk]
    assert_enqueued(EXECUTOR, data={"user": 1}, tags=["b"], scheduled_at=at)
    refute_enqueued(EXECUTOR, data={"user": 3})
    refute_enqueued(EXECUTOR, data={"user": 4})
    with pytest.raises(AssertionError, match=r"\[complete\] data=\{'user': 3\}"):
        assert_enqueued(EXECUTOR, data={"user": 3})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("trait", "attempt", "errors", "finished"),
    [
        ("scheduled", 0, [], None),
        ("executing", 1, [], None),
        ("retryable", 1, ["panic"], None),
        ("complete", 1, [], "completed_at"),
        ("cancelled", 0, ["cancelled"], "cancelled_at"),
        ("discarded", 2, ["panic", "panic"], "discarded_at"),
    ],
)
def test_factory_traits_make_consistent_jobs(
    trait: str, attempt: int, errors: list[str], finished: str | None
) -> None:
    record = JobRecordFactory.create(**{trait: True}, max_attempts=2)
    job = DjangoBackend().get_job(record.pk)
    assert job.status == JobStatus(trait)
    assert job.attempt == attempt
    assert [e.error_type for e in job.errors] == errors
    assert [e.attempt for e in job.errors] == sorted(e.attempt for e in job.errors)
    for name in ("completed_at", "cancelled_at", "discarded_at"):
        assert (getattr(job, name) is not None) == (name == finished), name
    assert (job.attempted_at is not None) == (attempt > 0)
    assert (job.claimed_by is not None) == (trait not in ("scheduled", "cancelled"))


@pytest.mark.django_db
def test_factory_jobs_follow_the_backend_rules() -> None:
    backend = DjangoBackend()
    finished = JobRecordFactory.create(discarded=True, max_attempts=1)
    rerun = backend.rerun_job(finished.pk)
    assert (rerun.status, rerun.attempt, rerun.max_attempts) == (JobStatus.SCHEDULED, 1, 2)
    running = JobRecordFactory.create(executing=True)
    assert backend.mark_job_complete(running.pk, claim=Claim(running.pk, 1, "factory-worker"))
    error = JobErrorRecordFactory.create(message="custom")
    assert [e.message for e in backend.get_job(error.job_id).errors] == ["custom"]
    explicit = JobRecordFactory.create(retryable=True, errors=[{"error_type": "timeout"}])
    assert [e.error_type for e in backend.get_job(explicit.pk).errors] == ["timeout"]


# -- the conformance suite catches broken backends ---------------------------------------------
class _UnfencedBackend(InMemoryBackend):
    """Ignores the claim, so a stale worker's result overwrites the job."""

    def mark_job_complete(self, job_id: int, *, claim: Claim | None = None) -> bool:
        return super().mark_job_complete(job_id)


class _FirstIdOnlyBackend(InMemoryBackend):
    """Reproduces rexecutor's IdIn bug: only the first id is looked up."""

    def query(self, query, *, limit=None):
        if isinstance(query, IdIn) and query.ids:
            query = IdIn(query.ids[:1])
        return super().query(query, limit=limit)


class _EqualsLastAttemptBackend(InMemoryBackend):
    """Rescue decides "last attempt" with ==, as rexecutor did."""

    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        with self._lock:
            for job in self._jobs.values():
                if job.status == JobStatus.EXECUTING and job.attempt > job.max_attempts:
                    job.max_attempts = job.attempt + 1  # behaves as if "==" were used
        return super().rescue_orphaned_jobs(after)


@pytest.mark.parametrize(
    ("backend_class", "test_name", "args"),
    [
        (_UnfencedBackend, "test_stale_claim_changes_nothing", ("complete",)),
        (_FirstIdOnlyBackend, "test_id_in_with_several_ids", ()),
        (_EqualsLastAttemptBackend, "test_final_attempt_with_lowered_max_attempts", ()),
    ],
)
def test_the_suite_catches_a_broken_backend(backend_class, test_name, args) -> None:
    suite = BackendConformanceTests()
    getattr(suite, test_name)(InMemoryBackend(), *args)  # the correct backend passes
    with pytest.raises(AssertionError):
        getattr(suite, test_name)(backend_class(), *args)


def test_the_suite_asks_for_make_backend() -> None:
    with pytest.raises(NotImplementedError, match="make_backend"):
        BackendConformanceTests().make_backend()
