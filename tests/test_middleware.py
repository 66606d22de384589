"""Middleware around every attempt (``REXECUTOR["MIDDLEWARE"]``): the order of the chain, sync
and async jobs, what a raising middleware does to the job (recorded as an error, retried; the
worker lives on), the enqueue seam, and the system check for a path that cannot be loaded.

Run by a real ``Worker`` in the test process against the database (``InProcessWorker``)."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from demo.jobs import RecordEffect
from django_rexecutor import InMemoryBackend, JobStatus
from django_rexecutor.testing import drain_jobs
from tests.observe_support import SEEN, MiddlewareAsync, MiddlewareSync
from tests.worker_support import InProcessWorker, status_of, wait_until

HERE = "tests.observe_support"


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


def test_the_chain_runs_outermost_first_around_execute_and_sees_the_outcome() -> None:
    backend = InMemoryBackend()
    with override_settings(REXECUTOR={"MIDDLEWARE": [f"{HERE}.outer", f"{HERE}.inner"]}):
        job_id = MiddlewareSync.enqueue(7, backend=backend)
        drain_jobs(backend=backend)
    assert [
        ("outer:before", job_id),
        ("inner:before", job_id),
        ("execute", job_id),
        ("outer:after", "Done"),
    ] == SEEN
    assert backend.get_job(job_id).result == {"n": 7}


def test_async_jobs_get_the_async_capable_middleware_only() -> None:
    backend = InMemoryBackend()
    with override_settings(REXECUTOR={"MIDDLEWARE": [f"{HERE}.outer", f"{HERE}.Both"]}):
        async_id = MiddlewareAsync.enqueue(backend=backend)
        sync_id = MiddlewareSync.enqueue(1, backend=backend)
        drain_jobs(backend=backend)
    assert ("both:async", async_id) in SEEN and ("aexecute", async_id) in SEEN
    assert ("outer:before", async_id) not in SEEN  # sync-only: not in the async chain
    assert ("both:sync", sync_id) in SEEN and ("outer:before", sync_id) in SEEN
    assert backend.get_job(async_id).status == JobStatus.COMPLETE


@pytest.mark.parametrize("which", ["RaiseBefore", "RaiseAfter"])
@pytest.mark.django_db(transaction=True)
def test_a_raising_middleware_fails_the_attempt_and_the_worker_lives_on(which) -> None:
    with override_settings(REXECUTOR={"MIDDLEWARE": [f"{HERE}.{which}"]}):
        worker = InProcessWorker(MiddlewareSync.name, RecordEffect.name)
        try:
            worker.wait_for_output("started")
            job_id = MiddlewareSync.enqueue(1)
            wait_until(lambda: status_of(job_id) == JobStatus.RETRYABLE, 15, worker)
            [error] = MiddlewareSync.get_job(job_id).errors
            assert error.error_type == "panic"
            assert "RuntimeError: middleware broke" in error.message
            # The worker goes on running jobs, through the same middleware.
            probe = RecordEffect.enqueue({"label": "alive"})
            wait_until(lambda: status_of(probe) == JobStatus.COMPLETE, 15, worker)
            assert worker.stop() == 0, worker.output
        finally:
            worker.kill()
    ran = [e for e in SEEN if e[0] == "execute"]
    assert ran == ([] if which == "RaiseBefore" else [("execute", job_id)])


@pytest.mark.django_db
def test_enqueue_goes_through_around_enqueue_for_every_path() -> None:
    with override_settings(REXECUTOR={"MIDDLEWARE": [f"{HERE}.Tagging"]}):
        one = MiddlewareSync.enqueue(1)
        built = MiddlewareSync.builder().with_data(2).enqueue()
        many = MiddlewareSync.enqueue_many([{"data": 3}, MiddlewareSync.builder().with_data(4)])
    assert SEEN == [("enqueue", 1), ("enqueue", 1), ("enqueue", 2)]
    for job_id in (one, built, *many):
        assert MiddlewareSync.get_job(job_id).metadata == {"tagged": True}
    # Without middleware nothing is wrapped.
    plain = MiddlewareSync.enqueue(5)
    assert MiddlewareSync.get_job(plain).metadata is None


def test_an_unimportable_middleware_is_a_system_check_error() -> None:
    from django_rexecutor.checks import check_observability

    with override_settings(REXECUTOR={"MIDDLEWARE": ["no.such.Middleware", f"{HERE}.outer"]}):
        [error] = check_observability()
    assert error.id == "django_rexecutor.E040"
    assert error.level == checks.ERROR
    assert "'no.such.Middleware' cannot be imported" in error.msg
    with override_settings(REXECUTOR={"MIDDLEWARE": f"{HERE}.outer"}):
        [error] = check_observability()
    assert "must be a list of dotted paths" in error.msg
    with override_settings(REXECUTOR={"MIDDLEWARE": [f"{HERE}.SEEN"]}):
        [error] = check_observability()
    assert "is not callable" in error.msg


def test_a_worker_refuses_to_start_with_a_middleware_it_cannot_load() -> None:
    from django_rexecutor.exceptions import ConfigurationError
    from django_rexecutor.worker import Worker

    with (
        override_settings(REXECUTOR={"MIDDLEWARE": ["no.such.Middleware"]}),
        pytest.raises(ConfigurationError, match=r"'no\.such\.Middleware' cannot be imported"),
    ):
        Worker([MiddlewareSync.name], backend=InMemoryBackend())
