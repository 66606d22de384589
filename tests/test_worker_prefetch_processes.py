"""Jobs claimed ahead by a real worker process, then SIGTERM or SIGKILL: never started, they
never spend their attempt (see docs/worker.md, "Claiming ahead")."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from demo.jobs import SlowSync
from demo.models import SideEffect
from django_rexecutor import JobStatus
from django_rexecutor.backends import get_backend
from django_rexecutor.models import JobRecord, WorkerRecord
from tests.worker_support import WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OVERRIDES = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 2}


def started_ids() -> set[int]:
    return set(SideEffect.objects.filter(label="started").values_list("job_id", flat=True))


def buffered(ids: list[int]) -> set[int]:
    """The jobs the worker lists as claimed ahead that are executing and never started."""
    listed = {i for row in WorkerRecord.objects.values_list("ahead", flat=True) for i in row}
    executing = set(
        JobRecord.objects.filter(pk__in=ids, status=JobStatus.EXECUTING).values_list(
            "pk", flat=True
        )
    )
    return (listed & executing) - started_ids()


def start_with_a_buffer(manage_py, subprocess_env) -> tuple[WorkerProcess, list[int], set[int]]:
    # One slot, long jobs with one attempt each: one runs, the next wait claimed ahead.
    ids = [SlowSync.enqueue({"seconds": 60}, max_attempts=1) for _ in range(4)]
    worker = WorkerProcess(
        manage_py, subprocess_env, "--concurrency", "1", "--prefetch", "2", overrides=OVERRIDES
    )
    wait_until(lambda: started_ids() and buffered(ids), 30, worker)
    return worker, ids, buffered(ids)


def test_a_killed_workers_buffered_jobs_are_rescued_with_their_attempt_unused(
    manage_py, subprocess_env
) -> None:
    worker, _, ahead = start_with_a_buffer(manage_py, subprocess_env)
    [running] = started_ids()
    worker.process.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(2.5)  # its heartbeat goes stale
    rescued = get_backend().rescue_orphaned_jobs(timedelta(seconds=2))
    assert set(rescued) >= ahead | {running}
    for job_id in ahead:
        job = get_backend().get_job(job_id)
        assert (job.status, job.attempt) == (JobStatus.SCHEDULED, 0), job
        assert "claimed ahead by worker" in job.errors[-1].message
    # The started job spent its only attempt.
    assert get_backend().get_job(running).status == JobStatus.DISCARDED


def test_sigterm_gives_the_buffer_back_at_once_not_after_the_running_job(
    manage_py, subprocess_env
) -> None:
    worker, _, ahead = start_with_a_buffer(manage_py, subprocess_env)
    worker.signal(signal.SIGTERM)
    # The running job has 60 s to go and 30 s of shutdown timeout: the buffer is back first.
    wait_until(
        lambda: all(
            JobRecord.objects.filter(pk=i).values_list("status", flat=True)[0]
            == JobStatus.SCHEDULED
            for i in ahead
        ),
        10,
    )
    assert set(JobRecord.objects.filter(pk__in=ahead).values_list("attempt", flat=True)) == {0}
    worker.signal(signal.SIGTERM)  # a second signal: stop now
    assert worker.wait() == 1
