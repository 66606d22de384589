"""``drain_jobs``: ready jobs run inline with the worker's outcome mapping, on the in-memory and
the database backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from demo.jobs import ChargeCard, FetchExchangeRates, FlakyImport, Outcomes, SlowAsync, SlowSync
from django_rexecutor import DjangoBackend, InMemoryBackend, JobStatus, Where
from django_rexecutor.backends import use_backend
from django_rexecutor.signals import job_finished, job_started
from django_rexecutor.testing.drain import drain_jobs


@pytest.fixture(params=["memory", "django"])
def backend(request, db):
    # The database is needed either way: some demo executors record side effects in it.
    chosen = DjangoBackend() if request.param == "django" else InMemoryBackend()
    with use_backend(chosen):
        yield chosen


def test_outcomes_are_counted(backend) -> None:
    for outcome in ("done", "cancel", "typed", "panic"):
        Outcomes.enqueue({"outcome": outcome})
    Outcomes.enqueue({"outcome": "typed"}, max_attempts=1)
    FetchExchangeRates.enqueue({"base": "EUR"})
    counts = drain_jobs()
    assert counts == {"complete": 2, "cancelled": 1, "retryable": 2, "discarded": 1}
    jobs = {
        j.data.get("outcome", "async") + str(j.max_attempts): j for j in backend.query(Where.all())
    }
    assert jobs["typed1"].status == JobStatus.DISCARDED
    assert jobs["typed2"].status == JobStatus.RETRYABLE
    assert jobs["panic2"].errors[0].error_type == "panic"
    assert jobs["cancel2"].errors[0].error_type == "cancelled"


def test_a_snooze_that_falls_due_during_the_drain_runs_again(backend) -> None:
    snoozing = Outcomes.enqueue({"outcome": "snooze"})  # snoozes 100 ms, once
    SlowSync.enqueue({"seconds": 0.3}, priority=1)  # keeps the drain busy meanwhile
    assert drain_jobs() == {"snoozed": 1, "complete": 2}
    job = backend.get_job(snoozing)
    assert (job.status, job.attempt, job.errors) == (JobStatus.COMPLETE, 1, [])


def test_future_retries_are_left_for_later(backend) -> None:
    # FlakyImport fails once and is retried after 200 ms; the retry is not due during the
    # drain, so it stays retryable; a second drain after the delay completes it.
    job_id = FlakyImport.enqueue({"feed": "x"})
    assert drain_jobs(FlakyImport) == {"retryable": 1}
    job = backend.get_job(job_id)
    backend.update_job(_due_now(job))
    assert drain_jobs(FlakyImport.name) == {"complete": 1}
    assert backend.get_job(job_id).attempt == 2


def test_only_the_named_executor_runs(backend) -> None:
    card = ChargeCard.enqueue({"last4": "0000"})
    other = Outcomes.enqueue({"outcome": "done"})
    assert drain_jobs(ChargeCard) == {"retryable": 1}
    assert backend.get_job(card).errors[0].error_type == "payment_declined"
    assert backend.get_job(other).status == JobStatus.SCHEDULED


def test_timeouts_inline(backend) -> None:
    SlowAsync.enqueue({"seconds": 5, "timeout": 0.1})
    SlowSync.enqueue({"seconds": 0.3, "timeout": 0.1})
    assert drain_jobs(SlowAsync) == {"retryable": 1}
    (job,) = SlowAsync.query_jobs()
    assert job.errors[0].error_type == "timeout"
    # A sync job cannot be interrupted inline, but one that overran is still a time-out.
    assert drain_jobs(SlowSync) == {"retryable": 1}
    (job,) = SlowSync.query_jobs()
    assert job.errors[0].error_type == "timeout"


def test_signals_are_sent(backend) -> None:
    seen: list[tuple[str, object]] = []

    def started(sender, job, **kwargs):
        seen.append(("started", job.id))

    def finished(sender, job, outcome, duration, **kwargs):
        seen.append((outcome, sender))

    job_started.connect(started)
    job_finished.connect(finished)
    try:
        job_id = Outcomes.enqueue({"outcome": "done"})
        drain_jobs(Outcomes)
    finally:
        job_started.disconnect(started)
        job_finished.disconnect(finished)
    assert seen == [("started", job_id), ("complete", Outcomes)]


def _due_now(job):
    from django.utils import timezone

    job.scheduled_at = timezone.now() - timedelta(seconds=1)
    return job
