"""Worker processes under stress and failure: many workers, kill -9, SIGTERM and SIGINT, killed
database connections and an unreachable database. (Stale results and cancelling running jobs
are tested in the test process: test_worker_attempts.py; LISTEN/NOTIFY pickup:
test_worker_notify.py.)"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from django.utils import timezone

from demo.jobs import RecordEffect, SlowAsync, SlowSync
from demo.models import SideEffect
from django_rexecutor import JobStatus
from django_rexecutor.models import JobRecord, WorkerRecord
from tests.worker_support import (
    WorkerProcess,
    kill_other_connections,
    status_of,
    unreachable_database_url,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_RESCUE = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 2}


def executing(job_id: int) -> bool:
    return status_of(job_id) == JobStatus.EXECUTING


def test_three_workers_run_each_job_exactly_once(manage_py, subprocess_env) -> None:
    total = 3000
    ids = RecordEffect.enqueue_many([{"data": {"label": "bulk"}} for _ in range(total)])
    workers = [
        WorkerProcess(
            manage_py, subprocess_env, "--concurrency", "8", "-v", "1", persistent_connections=True
        )
        for _ in range(3)
    ]
    try:
        wait_until(
            lambda: JobRecord.objects.filter(status=JobStatus.COMPLETE).count() == total,
            150,
            *workers,
            interval=0.5,
        )
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0, 0]
    per_job = Counter(SideEffect.objects.values_list("job_id", flat=True))
    assert len(per_job) == total and set(per_job) == set(ids)
    assert max(per_job.values()) == 1
    assert set(JobRecord.objects.values_list("attempt", flat=True)) == {1}
    # Every worker took part.
    assert len(set(SideEffect.objects.values_list("worker", flat=True))) == 3


def test_kill_9_mid_job_is_rescued(manage_py, subprocess_env) -> None:
    job_id = SlowSync.enqueue({"seconds": 30}, max_attempts=2)
    victim = WorkerProcess(manage_py, subprocess_env, overrides=FAST_RESCUE)
    try:
        wait_until(lambda: executing(job_id), 20, victim)
        wait_until(lambda: SideEffect.objects.filter(job_id=job_id).exists(), 10, victim)
    finally:
        victim.kill()
    killed_at = timezone.now()
    rescuer = WorkerProcess(
        manage_py, subprocess_env, "--executor", RecordEffect.name, overrides=FAST_RESCUE
    )
    try:
        took = wait_until(lambda: status_of(job_id) != JobStatus.EXECUTING, 20, rescuer)
    finally:
        assert rescuer.stop() == 0
    # Rescued within the threshold plus a few seconds (the rescuer needs ~3 s to start).
    assert took < FAST_RESCUE["RESCUE_AFTER"] + 6
    record = JobRecord.objects.get(pk=job_id)
    assert record.status == JobStatus.RETRYABLE and record.attempt == 1
    error = record.error_records.get()
    assert (error.attempt, error.error_type) == (1, "orphaned")
    assert error.recorded_at >= killed_at
    assert not WorkerRecord.objects.filter(pid=victim.pid).exists()


def test_sigterm_releases_unfinished_jobs(manage_py, subprocess_env) -> None:
    slow = [SlowSync.enqueue({"seconds": 30}), SlowAsync.enqueue({"seconds": 30})]
    quick = SlowSync.enqueue({"seconds": 0.3})
    worker = WorkerProcess(manage_py, subprocess_env, "--shutdown-timeout", "1.5")
    wait_until(lambda: all(executing(j) for j in [*slow, quick]), 20, worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    # The job that could finish within the grace period did; the others went back to the
    # queue with their attempt given back; nothing is left executing.
    assert status_of(quick) == JobStatus.COMPLETE
    for job_id in slow:
        record = JobRecord.objects.get(pk=job_id)
        assert (record.status, record.attempt) == (JobStatus.SCHEDULED, 0)
        assert record.scheduled_at <= timezone.now()
        assert not record.error_records.exists()
    assert not JobRecord.objects.filter(status=JobStatus.EXECUTING).exists()
    assert not WorkerRecord.objects.exists()
    assert "Released 2 unfinished job(s)" in worker.output


def test_second_signal_exits_at_once_and_still_releases(manage_py, subprocess_env) -> None:
    job_id = SlowSync.enqueue({"seconds": 30})
    worker = WorkerProcess(manage_py, subprocess_env, "--shutdown-timeout", "60")
    wait_until(lambda: executing(job_id), 20, worker)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("Received SIGTERM")
    started = time.monotonic()
    worker.signal(signal.SIGINT)
    assert worker.wait(15) != 0
    assert time.monotonic() - started < 5
    assert (status_of(job_id), JobRecord.objects.get(pk=job_id).attempt) == ("scheduled", 0)


@pytest.mark.server_db
def test_recovers_from_killed_connections(manage_py, subprocess_env) -> None:
    worker = WorkerProcess(manage_py, subprocess_env, overrides={"POLL_INTERVAL": 1})
    try:
        worker.wait_for_output("started")
        first = RecordEffect.enqueue({"label": "before"})
        wait_until(lambda: status_of(first) == JobStatus.COMPLETE, 10, worker)
        for round_ in range(2):
            assert kill_other_connections(), "the worker had no connection to kill"
            time.sleep(0.3)
            job_id = RecordEffect.enqueue({"label": f"after {round_}"})
            took = wait_until(lambda j=job_id: status_of(j) == JobStatus.COMPLETE, 20, worker)
            assert took < 8, worker.output
    finally:
        assert worker.stop() == 0
    assert SideEffect.objects.count() == 3
    assert "reconnecting" in worker.output.lower()


@pytest.mark.server_db
def test_waits_for_an_unreachable_database_and_stops_cleanly(manage_py, subprocess_env) -> None:
    env = dict(subprocess_env, DATABASE_URL=unreachable_database_url())
    worker = WorkerProcess(manage_py, env)
    worker.wait_for_output("Database unavailable")
    worker.wait_for_output("retrying in 0.4s")  # backing off, still alive
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert "Traceback" not in worker.output
