"""The bulk rerun/cancel operations behind the admin actions, on every backend: the base
class's default (built on the single-job operations, used by the in-memory backend) and the
Django backend's few-statement override must agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_rexecutor import DjangoBackend, InMemoryBackend, JobStatus
from django_rexecutor.backends.base import Backend
from django_rexecutor.backends.values import BulkResult, Claim, EnqueuableJob
from django_rexecutor.job import ErrorDetails
from django_rexecutor.transitions import SkipReason

MISSING = 987_654_321


def enqueuable(executor: str = "bulk.a") -> EnqueuableJob:
    return EnqueuableJob(
        executor=executor,
        data=None,
        metadata=None,
        max_attempts=3,
        scheduled_at=timezone.now() - timedelta(seconds=1),
    )


@pytest.fixture(params=["memory", "django"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return InMemoryBackend()
    request.getfixturevalue("db")
    return DjangoBackend()


def jobs_in_every_state(backend: Backend) -> dict[str, int]:
    """One job per state reached through the backend's own operations."""
    ids = backend.enqueue_many([enqueuable() for _ in range(6)])
    claimed = {job.id: job for job in backend.claim_jobs("w1", {"bulk.a": 4}, 4)}
    assert len(claimed) == 4
    complete, discarded, retryable, running = sorted(claimed)
    error = ErrorDetails("ValueError", "bad")
    assert backend.mark_job_complete(complete, claim=Claim.of(claimed[complete]))
    assert backend.mark_job_discarded(discarded, error, claim=Claim.of(claimed[discarded]))
    assert backend.mark_job_retryable(
        retryable, timezone.now() + timedelta(hours=1), error, claim=Claim.of(claimed[retryable])
    )
    waiting = [i for i in ids if i not in claimed]
    return {
        "complete": complete,
        "discarded": discarded,
        "retryable": retryable,
        "running": running,
        "waiting1": waiting[0],
        "waiting2": waiting[1],
    }


def test_rerun_jobs_reruns_the_eligible_and_says_why_others_were_skipped(
    backend: Backend,
) -> None:
    j = jobs_in_every_state(backend)
    order = [j["waiting1"], j["complete"], MISSING, j["running"], j["discarded"], j["retryable"]]
    result = backend.rerun_jobs([*order, j["complete"]])  # a repeated id counts once
    assert result == BulkResult(
        done=(j["complete"], j["discarded"], j["retryable"]),
        skipped={
            j["waiting1"]: SkipReason.WAITING,
            MISSING: SkipReason.NOT_FOUND,
            j["running"]: SkipReason.RUNNING,
        },
    )
    for name in ("complete", "discarded", "retryable"):
        job = backend.get_job(j[name])
        # Attempt 1 was used: rerun makes it scheduled again, with one more attempt allowed.
        assert (job.status, job.max_attempts) == (JobStatus.SCHEDULED, 4), name
        assert job.completed_at is None and job.discarded_at is None
        assert job.scheduled_at <= timezone.now()
    assert backend.get_job(j["running"]).status == JobStatus.EXECUTING
    assert backend.get_job(j["waiting2"]).max_attempts == 3


def test_cancel_jobs_cancels_waiting_requests_running_and_skips_finished(
    backend: Backend,
) -> None:
    j = jobs_in_every_state(backend)
    ids = [j["complete"], j["running"], j["waiting1"], j["retryable"], j["discarded"], MISSING]
    result = backend.cancel_jobs(ids, "operator said so")
    assert result.done == (j["running"], j["waiting1"], j["retryable"])
    assert result.requested == (j["running"],)
    assert dict(result.skipped) == {
        j["complete"]: SkipReason.FINISHED,
        j["discarded"]: SkipReason.FINISHED,
        MISSING: SkipReason.NOT_FOUND,
    }
    for name in ("waiting1", "retryable"):
        job = backend.get_job(j[name])
        assert job.status == JobStatus.CANCELLED and job.cancelled_at is not None
        assert (job.errors[-1].error_type, job.errors[-1].message) == (
            "cancelled",
            "operator said so",
        )
        assert job.errors[-1].attempt == job.attempt
    running = backend.get_job(j["running"])
    assert running.status == JobStatus.EXECUTING and running.cancel_requested
    assert backend.get_job(j["complete"]).status == JobStatus.COMPLETE
    assert backend.get_job(j["waiting2"]).status == JobStatus.SCHEDULED


def test_bulk_operations_respect_the_executor(backend: Backend) -> None:
    other = backend.enqueue(enqueuable("bulk.b"))
    assert backend.cancel_jobs([other], "x", executor="bulk.a").skipped == {
        other: SkipReason.NOT_FOUND
    }
    assert backend.get_job(other).status == JobStatus.SCHEDULED
    assert backend.cancel_jobs([other], "x", executor="bulk.b").done == (other,)


@pytest.mark.django_db
def test_django_backend_bulk_operations_use_a_constant_number_of_queries() -> None:
    backend = DjangoBackend()

    def queries(n: int) -> tuple[int, int]:
        ids = backend.enqueue_many([enqueuable() for _ in range(n)])
        with CaptureQueriesContext(connection) as cancel:
            assert len(backend.cancel_jobs(ids, "stop").done) == n
        with CaptureQueriesContext(connection) as rerun:
            assert len(backend.rerun_jobs(ids).done) == n
        return len(cancel), len(rerun)

    assert queries(3) == queries(60)
