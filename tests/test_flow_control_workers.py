"""Flow control across real worker processes: global concurrency, rate limits, partitions,
pause and resume, and a killed worker's slot. Each job appends its own start and end times
to a file (``testproject/demo/jobs.py::FlowRecord``); the assertions read those records."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from demo.jobs import FlowGlobal, FlowPartition, FlowPaused, FlowRate
from django_rexecutor import JobStatus
from django_rexecutor.models import JobRecord
from tests.worker_support import WorkerProcess, status_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def runs(path: Path) -> dict[int, dict[str, float]]:
    """Job id → {"start": t, "end": t, …} from the jobs' own records."""
    seen: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        what, job_id, at, *_ = line.split()
        seen.setdefault(int(job_id), {})[what] = float(at)
    return seen


def accounts(path: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        found[int(parts[1])] = parts[3] if len(parts) > 3 else ""
    return found


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same moment
        running += step
        peak = max(peak, running)
    return peak


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@contextmanager
def workers(
    manage_py: list[str], env: dict[str, str], count: int, *args: str, **options: object
) -> Iterator[list[WorkerProcess]]:
    started = [WorkerProcess(manage_py, env, *args, **options) for _ in range(count)]  # type: ignore[arg-type]
    try:
        for worker in started:
            worker.wait_for_output("started")
        yield started
    finally:
        for worker in started:
            worker.stop()


def all_complete(ids: list[int]) -> bool:
    return JobRecord.objects.filter(pk__in=ids, status=JobStatus.COMPLETE).count() == len(ids)


def test_global_concurrency_holds_across_three_workers(manage_py, subprocess_env, tmp_path):
    path = tmp_path / "runs"
    args = ("--executor", FlowGlobal.name, "--concurrency", "5")
    with workers(manage_py, subprocess_env, 3, *args) as procs:
        ids = [FlowGlobal.enqueue({"path": str(path), "seconds": 1.5}) for _ in range(8)]
        wait_until(lambda: all_complete(ids), 40, *procs)
    seen = runs(path)
    assert sorted(seen) == sorted(ids)
    assert most_at_once([(r["start"], r["end"]) for r in seen.values()]) == 2
    assert all(r["end"] - r["start"] >= 1.5 for r in seen.values())
    assert {j.attempt for j in JobRecord.objects.filter(pk__in=ids)} == {1}


def test_a_rate_limit_spaces_the_starts_across_workers(manage_py, subprocess_env, tmp_path):
    path = tmp_path / "runs"
    with workers(manage_py, subprocess_env, 2, "--executor", FlowRate.name) as procs:
        ids = [FlowRate.enqueue({"path": str(path), "seconds": 0.05}) for _ in range(9)]
        wait_until(lambda: all_complete(ids), 40, *procs)
    period = 2.0
    # In the database's clock, exactly: no window of the period holds more than 3 starts.
    attempted = sorted(JobRecord.objects.filter(pk__in=ids).values_list("attempted_at", flat=True))
    for i, first in enumerate(attempted):
        within = [a for a in attempted[i:] if a - first < timedelta(seconds=period)]
        assert len(within) <= 3, attempted
    # In the jobs' own records too (a job starts a little after its claim: tens of
    # milliseconds, more on a loaded machine, hence the tolerance).
    starts = sorted(r["start"] for r in runs(path).values())
    assert len(starts) == 9
    for i, first in enumerate(starts):
        assert len([s for s in starts[i:] if s - first < period - 0.3]) <= 3, starts
    # Three windows' worth: the last three start no sooner than two periods after the first.
    assert starts[-1] - starts[0] >= 2 * period - 0.3
    assert {j.attempt for j in JobRecord.objects.filter(pk__in=ids)} == {1}


def test_partitions_run_side_by_side_but_never_within_one(manage_py, subprocess_env, tmp_path):
    path = tmp_path / "runs"
    args = ("--executor", FlowPartition.name, "--concurrency", "5")
    with workers(manage_py, subprocess_env, 2, *args) as procs:
        ids = [
            FlowPartition.enqueue({"path": str(path), "seconds": 1.0, "account": account})
            for account in ("a", "a", "a", "b", "b", "b")
        ]
        wait_until(lambda: all_complete(ids), 40, *procs)
    seen = runs(path)
    owner = accounts(path)
    by_account = {name: [seen[i] for i in sorted(seen) if owner[i] == name] for name in ("a", "b")}
    for name, jobs in by_account.items():
        assert len(jobs) == 3
        assert most_at_once([(r["start"], r["end"]) for r in jobs]) == 1, name
    assert any(overlap(a, b) for a in by_account["a"] for b in by_account["b"])


def test_pause_reaches_running_workers_survives_a_restart_and_resume_runs_at_once(
    manage_py, subprocess_env, tmp_path
):
    path = tmp_path / "runs"
    args = ("--executor", FlowPaused.name)
    worker = WorkerProcess(manage_py, subprocess_env, *args)
    try:
        worker.wait_for_output("started")
        paused = subprocess.run(
            [*manage_py, "rexecutor_pause", FlowPaused.name],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert paused.returncode == 0, paused.stderr
        assert f"{FlowPaused.name}: paused" in paused.stdout
        assert FlowPaused.is_paused()
        ids = [FlowPaused.enqueue({"path": str(path)}) for _ in range(2)]
        time.sleep(1.5)
        assert not path.exists()
        worker.stop()
        worker = WorkerProcess(manage_py, subprocess_env, *args)
        worker.wait_for_output("started")
        time.sleep(1.5)
        assert not path.exists(), "a paused executor's job ran"
        assert {status_of(i) for i in ids} == {JobStatus.SCHEDULED}
        resumed_at = time.time()
        FlowPaused.resume()
        wait_until(lambda: all_complete(ids), 10, worker)
        # Seen at the worker's next poll (POLL_INTERVAL: 1 s on PostgreSQL, 0.2 s on SQLite).
        first = min(r["start"] for r in runs(path).values())
        assert first - resumed_at < 2.0
    finally:
        worker.stop()


def test_the_slot_of_a_killed_worker_comes_back_when_its_job_is_rescued(
    manage_py, subprocess_env, tmp_path
):
    path = tmp_path / "runs"
    # One slot (set through REXECUTOR["LIMITS"], over the class's 2), a quick rescue.
    overrides = {
        "HEARTBEAT_INTERVAL": 0.3,
        "RESCUE_AFTER": 1.5,
        "LIMITS": {FlowGlobal.name: {"global_concurrency": 1}},
    }
    args = ("--executor", FlowGlobal.name)
    doomed = WorkerProcess(manage_py, subprocess_env, *args, overrides=overrides)
    survivor: WorkerProcess | None = None
    try:
        doomed.wait_for_output("started")
        holder = FlowGlobal.enqueue({"path": str(path), "seconds": 60})
        wait_until(lambda: holder in runs(path), 15, doomed)
        survivor = WorkerProcess(manage_py, subprocess_env, *args, overrides=overrides)
        survivor.wait_for_output("started")
        waiting = FlowGlobal.enqueue({"path": str(path), "seconds": 0})
        time.sleep(1.0)
        assert waiting not in runs(path), "a second job took the only slot"
        doomed.kill()
        killed_at = time.time()
        wait_until(lambda: status_of(waiting) == JobStatus.COMPLETE, 20, survivor)
        # It started only once the dead worker's job was rescued (RESCUE_AFTER later).
        assert runs(path)[waiting]["start"] > killed_at + 1.0
        # The dead worker's job was rescued (it may already run again on the survivor).
        rescued = JobRecord.objects.get(pk=holder)
        assert [e.error_type for e in rescued.error_records.all()] == ["orphaned"]
    finally:
        doomed.kill()
        if survivor is not None:
            survivor.kill()
