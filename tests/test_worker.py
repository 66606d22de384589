"""``rexecutor_worker`` end to end, in real subprocesses: every outcome with its log lines and
summary, future jobs picked up when due, executor selection and the banner, bad arguments, the
demo. The worker's logic is tested in the test process (test_worker_outcomes.py and others)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from demo.jobs import Outcomes, RecordEffect
from demo.models import SideEffect
from django_rexecutor import JobStatus
from django_rexecutor.models import JobRecord, WorkerRecord
from tests.worker_support import WorkerProcess, run_burst, status_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def errors_of(job_id: int) -> list[tuple[int, str]]:
    record = JobRecord.objects.get(pk=job_id)
    return [(e.attempt, e.error_type) for e in record.error_records.order_by("id")]


def test_every_outcome_is_recorded(manage_py, subprocess_env) -> None:
    ids = {
        outcome: Outcomes.enqueue({"outcome": outcome})
        for outcome in ("done", "cancel", "typed", "panic", "bad_return")
    }
    last = Outcomes.enqueue({"outcome": "typed"}, max_attempts=1)
    output = run_burst(manage_py, subprocess_env, "--executor", Outcomes.name)

    done = JobRecord.objects.get(pk=ids["done"])
    assert (done.status, done.attempt, done.claimed_by) == ("complete", 1, done.claimed_by)
    assert done.completed_at is not None and done.claimed_by
    assert errors_of(ids["done"]) == []

    cancelled = JobRecord.objects.get(pk=ids["cancel"])
    assert cancelled.status == JobStatus.CANCELLED and cancelled.cancelled_at is not None
    assert errors_of(ids["cancel"]) == [(1, "cancelled")]
    assert cancelled.error_records.get().message == "not needed"

    # Failures before the last attempt are retried after the executor's backoff (60 s).
    for outcome, error_type in (("typed", "payment_declined"), ("panic", "panic")):
        record = JobRecord.objects.get(pk=ids[outcome])
        assert record.status == JobStatus.RETRYABLE
        assert record.scheduled_at > timezone.now() + timedelta(seconds=50)
        assert errors_of(record.pk) == [(1, error_type)]
    panic = JobRecord.objects.get(pk=ids["panic"]).error_records.get()
    assert panic.message == "ValueError: boom"
    assert "Traceback" in panic.traceback and "raise ValueError" in panic.traceback
    bad = JobRecord.objects.get(pk=ids["bad_return"]).error_records.get()
    assert (bad.error_type, "returned 42" in bad.message) == ("panic", True)

    discarded = JobRecord.objects.get(pk=last)
    assert discarded.status == JobStatus.DISCARDED and discarded.discarded_at is not None
    assert errors_of(last) == [(1, "payment_declined")]

    # One line per outcome, with id, executor, attempt, outcome and duration.
    assert f"job {ids['done']} test.outcomes attempt 1/2 complete in " in output
    assert f"job {last} test.outcomes attempt 1/1 discarded in " in output
    assert "6 attempt(s)" in output
    assert not JobRecord.objects.filter(status=JobStatus.EXECUTING).exists()
    assert not WorkerRecord.objects.exists()


def test_future_jobs_wait_for_their_time(manage_py, subprocess_env) -> None:
    far = RecordEffect.enqueue({"label": "far"}, schedule_in=timedelta(hours=1))
    # A burst run leaves future jobs alone.
    run_burst(manage_py, subprocess_env)
    assert status_of(far) == JobStatus.SCHEDULED

    worker = WorkerProcess(manage_py, subprocess_env)
    try:
        worker.wait_for_output("started")
        due_at = timezone.now() + timedelta(seconds=1.5)
        future = RecordEffect.enqueue({"label": "future"}, schedule_at=due_at)
        wait_until(lambda: status_of(future) == JobStatus.COMPLETE, 10, worker)
    finally:
        assert worker.stop() == 0
    effect = SideEffect.objects.get(job_id=future)
    assert effect.created_at >= due_at
    # The worker woke when the job was due rather than a whole poll interval later.
    assert effect.created_at - due_at < timedelta(seconds=0.9)
    assert status_of(far) == JobStatus.SCHEDULED


def test_executor_selection(manage_py, subprocess_env) -> None:
    chosen = RecordEffect.enqueue({"label": "mine"})
    other = Outcomes.enqueue({"outcome": "done"})
    output = run_burst(manage_py, subprocess_env, "--executor", RecordEffect.name)
    assert status_of(chosen) == JobStatus.COMPLETE
    assert status_of(other) == JobStatus.SCHEDULED
    assert "executors:   test.record\n" in output
    run_burst(
        manage_py, subprocess_env, "--exclude", RecordEffect.name, "--exclude", "test.limited"
    )
    assert status_of(other) == JobStatus.COMPLETE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": ["no.such"]}, "Unknown executor name(s): 'no.such'"),
        ({"exclude": ["missing"]}, "Unknown executor name(s): 'missing'"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
    ],
)
def test_bad_arguments_are_command_errors(options, message) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("rexecutor_worker", burst=True, **options)


def test_demo_command_runs_every_example() -> None:
    out = StringIO()
    call_command("rexecutor_demo", stdout=out, stderr=StringIO(), verbosity=0)
    text = out.getvalue()
    rows = {
        line.split()[1]: line.split()[2:4]
        for line in text.splitlines()
        if len(line.split()) > 3 and line.split()[1].startswith("demo.")
    }
    assert rows == {
        "demo.send_welcome_email": ["complete", "1/5"],
        "demo.flaky_import": ["complete", "2/3"],
        "demo.charge_card": ["discarded", "2/2"],
        "demo.wait_for_stock": ["complete", "1/5"],
        "demo.cleanup_account": ["cancelled", "1/5"],
        "demo.fetch_exchange_rates": ["complete", "1/5"],
    }
    assert "7 jobs: 1 cancelled, 5 complete, 1 discarded" in text
    assert not JobRecord.objects.filter(status=JobStatus.EXECUTING).exists()
