"""``rexecutor_worker --processes N``: real supervisor and worker processes, real signals."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from demo.jobs import RecordEffect, SlowSync
from demo.models import SideEffect
from django_rexecutor import JobStatus
from django_rexecutor.models import JobRecord, WorkerRecord
from tests.worker_support import WorkerProcess, run_burst, status_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def live_workers() -> dict[str, int]:
    return dict(WorkerRecord.objects.values_list("worker_id", "pid"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_share_a_backlog_and_each_job_runs_once(manage_py, subprocess_env) -> None:
    total = 600
    ids = RecordEffect.enqueue_many([{"data": {"label": "bulk"}} for _ in range(total)])
    supervisor = WorkerProcess(
        manage_py, subprocess_env, "--processes", "2", "--concurrency", "4", "--name", "pair"
    )
    try:
        wait_until(
            lambda: JobRecord.objects.filter(status=JobStatus.COMPLETE).count() == total,
            120,
            supervisor,
            interval=0.3,
        )
        workers = live_workers()
        assert len(workers) == 2
        assert {w.split("@")[0] for w in workers} == {"pair-1", "pair-2"}
        assert supervisor.pid not in workers.values()
    finally:
        code = supervisor.stop()
    assert code == 0, supervisor.output
    per_job = Counter(SideEffect.objects.values_list("job_id", flat=True))
    assert set(per_job) == set(ids) and max(per_job.values()) == 1
    assert len(set(SideEffect.objects.values_list("worker", flat=True))) == 2
    # Both children shut down gracefully and forgot themselves.
    assert live_workers() == {}


def test_a_killed_child_is_started_again_and_its_job_is_rescued(manage_py, subprocess_env) -> None:
    supervisor = WorkerProcess(
        manage_py,
        subprocess_env,
        "--processes",
        "2",
        overrides={"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 2},
    )
    try:
        wait_until(lambda: len(live_workers()) == 2, 30, supervisor)
        job_id = SlowSync.enqueue({"seconds": 30}, max_attempts=2)
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 20, supervisor)
        victim = JobRecord.objects.get(pk=job_id).claimed_by
        victim_pid = live_workers()[victim]
        os.kill(victim_pid, signal.SIGKILL)
        # A new child takes the dead one's place, and its job is rescued for a new attempt.
        wait_until(
            lambda: len(live_workers()) >= 2 and victim_pid not in live_workers().values(),
            30,
            supervisor,
        )
        assert "died (killed by SIGKILL)" in supervisor.output
        wait_until(lambda: JobRecord.objects.get(pk=job_id).attempt == 2, 30, supervisor)
    finally:
        supervisor.signal(signal.SIGTERM)
        # Both children took the first signal (two signals sent at once may arrive as one).
        wait_until(lambda: supervisor.output.count("finishing running jobs") >= 2, 20, supervisor)
        supervisor.signal(signal.SIGTERM)  # the second signal stops the slow job at once
        code = supervisor.wait(30)
    assert code == 1, supervisor.output  # what a worker stopped by a second signal returns


def test_sigterm_reaches_every_child_and_nothing_outlives_the_supervisor(
    manage_py, subprocess_env
) -> None:
    supervisor = WorkerProcess(manage_py, subprocess_env, "--processes", "3")
    wait_until(lambda: len(live_workers()) == 3, 30, supervisor)
    pids = list(live_workers().values())
    assert supervisor.stop() == 0, supervisor.output
    assert not any(alive(pid) for pid in pids)
    assert live_workers() == {}


def test_children_stop_when_the_supervisor_is_killed(manage_py, subprocess_env) -> None:
    supervisor = WorkerProcess(manage_py, subprocess_env, "--processes", "2")
    wait_until(lambda: len(live_workers()) == 2, 30, supervisor)
    pids = list(live_workers().values())
    supervisor.kill()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
    wait_until(lambda: live_workers() == {}, 10)


def test_burst_with_processes_drains_and_exits(manage_py, subprocess_env) -> None:
    ids = RecordEffect.enqueue_many([{"data": {}} for _ in range(200)])
    output = run_burst(manage_py, subprocess_env, "--processes", "2", timeout=90)
    assert "2 worker processes" in output
    assert set(SideEffect.objects.values_list("job_id", flat=True)) == set(ids)
    assert JobRecord.objects.filter(status=JobStatus.COMPLETE).count() == 200


def test_processes_below_one_is_a_clear_error(manage_py, subprocess_env) -> None:
    worker = WorkerProcess(manage_py, subprocess_env, "--processes", "0")
    assert worker.wait(30) != 0
    assert "--processes must be at least 1, got 0" in worker.output
