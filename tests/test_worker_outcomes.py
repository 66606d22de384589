"""The worker in the test process (``Worker`` in a thread, on the database backend): snoozes,
time-outs, claim order and per-executor limits. End-to-end runs of ``rexecutor_worker`` itself
are in test_worker.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from demo.jobs import Limited, Outcomes, RecordEffect, SlowAsync, SlowSync
from demo.models import SideEffect
from django_rexecutor import JobStatus
from django_rexecutor.models import JobRecord
from tests.worker_support import InProcessWorker, run_burst_in_process, status_of, wait_until

# The worker's threads have their own connections: they need committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def errors_of(job_id: int) -> list[tuple[int, str]]:
    record = JobRecord.objects.get(pk=job_id)
    return [(e.attempt, e.error_type) for e in record.error_records.order_by("id")]


def test_snooze_gives_the_attempt_back() -> None:
    job_id = Outcomes.enqueue({"outcome": "snooze"})
    with InProcessWorker(Outcomes.name) as worker:
        wait_until(lambda: status_of(job_id) == JobStatus.COMPLETE, 15, worker)
        assert worker.stop() == 0
    record = JobRecord.objects.get(pk=job_id)
    # Snoozed once (recorded by the job), then completed on the same attempt number.
    assert SideEffect.objects.filter(job_id=job_id, label="snoozed").count() == 1
    assert record.attempt == 1 and errors_of(job_id) == []
    assert f"job {job_id} test.outcomes attempt 1/2 snoozed in " in worker.output


@pytest.mark.slow
def test_timeouts_sync_and_async() -> None:
    looping = SlowSync.enqueue({"seconds": 20, "timeout": 0.5})
    blocking = SlowSync.enqueue({"seconds": 3, "timeout": 0.5, "blocking": True})
    awaiting = SlowAsync.enqueue({"seconds": 20, "timeout": 0.5})
    after = RecordEffect.enqueue({"label": "after"}, priority=5)
    run_burst_in_process(
        SlowSync.name, SlowAsync.name, RecordEffect.name, concurrency=3, timeout=30
    )
    for job_id in (looping, blocking, awaiting):
        record = JobRecord.objects.get(pk=job_id)
        assert record.status == JobStatus.RETRYABLE, record
        error = record.error_records.get()
        assert (error.attempt, error.error_type) == (1, "timeout")
        assert "0.5s" in error.message
        # Recorded at the deadline, even for the job blocked in time.sleep(3).
        assert error.recorded_at - record.attempted_at < timedelta(seconds=1.5)
    # The interruptible sync job stopped; the worker stayed healthy and ran the next job.
    assert not SideEffect.objects.filter(job_id=looping, label="finished").exists()
    assert status_of(after) == JobStatus.COMPLETE


def test_priority_then_schedule_then_id() -> None:
    now = timezone.now()
    order = [
        RecordEffect.enqueue({"label": "p3"}, priority=3),
        RecordEffect.enqueue({"label": "p0-later"}, priority=0, schedule_at=now),
        RecordEffect.enqueue({"label": "p0-earlier"}, priority=0, schedule_at=now - timedelta(1)),
        RecordEffect.enqueue({"label": "p1-a"}, priority=1, schedule_at=now),
        RecordEffect.enqueue({"label": "p1-b"}, priority=1, schedule_at=now),
    ]
    run_burst_in_process(concurrency=1)
    labels = list(SideEffect.objects.order_by("id").values_list("label", flat=True))
    assert labels == ["p0-earlier", "p0-later", "p1-a", "p1-b", "p3"]
    assert JobRecord.objects.filter(pk__in=order, status=JobStatus.COMPLETE).count() == 5


def test_max_concurrency_per_executor() -> None:
    ids = Limited.enqueue_many([{} for _ in range(6)])
    run_burst_in_process(Limited.name, concurrency=8)
    spans = []
    for job_id in ids:
        start = SideEffect.objects.get(job_id=job_id, label="start").created_at
        end = SideEffect.objects.get(job_id=job_id, label="end").created_at
        spans.append((start, end))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2
