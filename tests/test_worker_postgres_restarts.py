"""PostgreSQL restarted again and again under two draining workers: every job runs exactly once
and none is taken for orphaned. Restarts the local cluster, so it is kept short and always
leaves the cluster running."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import InterfaceError, OperationalError, connection

from demo.jobs import AppendLine
from django_rexecutor import JobStatus
from django_rexecutor.models import JobErrorRecord, JobRecord
from tests.worker_support import WorkerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
]

TOTAL = 5000
#: Fast shutdowns (all connections killed, the server back at once) and full outages.
OUTAGES = ["restart", "stop", "restart", "stop", "restart", "stop"]


def _cluster() -> list[str]:
    """``pg_ctlcluster`` arguments naming the test database's local cluster."""
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs pg_ctlcluster to restart the local PostgreSQL cluster")
    version = sorted(Path("/etc/postgresql").iterdir(), key=lambda p: int(p.name))[-1].name
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _ready() -> bool:
    host, port = connection.settings_dict["HOST"], str(connection.settings_dict["PORT"])
    return subprocess.run(["pg_isready", "-q", "-h", host, "-p", port]).returncode == 0


def _wait_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _ready():
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def _pg(cluster: list[str], action: str) -> None:
    done = subprocess.run([*cluster, action], capture_output=True, text=True, timeout=60)
    # ``start`` of a cluster that is already running (someone else started it) is fine.
    if done.returncode != 0 and not (action == "start" and _ready()):
        raise AssertionError(f"pg_ctlcluster {action} failed: {done.stderr or done.stdout}")


def _outage(cluster: list[str], how: str) -> None:
    if how == "restart":
        _pg(cluster, "restart")
    else:
        _pg(cluster, "stop")
        time.sleep(3)
        _pg(cluster, "start")
    _wait_ready()


def _query[T](read: Callable[[], T]) -> T:
    """``read()`` through this test's own connection, which each restart breaks."""
    for _ in range(100):
        try:
            return read()
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(0.2)
    raise AssertionError("the database stayed unreachable")


def test_restarts_during_a_drain_run_every_job_exactly_once(
    manage_py, subprocess_env, tmp_path: Path
) -> None:
    cluster = _cluster()
    runs = tmp_path / "runs.txt"
    runs.touch()
    ids = AppendLine.enqueue_many(
        [{"data": {"path": str(runs), "sleep": 0.02}} for _ in range(TOTAL)]
    )
    workers = [
        WorkerProcess(manage_py, subprocess_env, "--concurrency", "5", "-v", "1") for _ in range(2)
    ]

    def ran() -> int:
        return len(runs.read_text().splitlines())

    def wait_for_progress(count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while ran() < count:
            assert time.monotonic() < deadline, "\n".join(w.output for w in workers)
            for worker in workers:
                assert worker.process.poll() is None, worker.output
            time.sleep(0.05)

    def complete() -> int:
        return JobRecord.objects.filter(status=JobStatus.COMPLETE).count()

    try:
        for how in OUTAGES:
            # Draining again since the last outage (claims being made at any moment, which is
            # when a lost reply strands jobs), and jobs still left to run.
            wait_for_progress(min(ran() + 50, TOTAL))
            assert ran() < TOTAL - 200, "the drain ended before the outages did"
            _outage(cluster, how)
        deadline = time.monotonic() + 60
        while _query(complete) < TOTAL:
            assert time.monotonic() < deadline, "\n".join(w.output for w in workers)
            time.sleep(0.2)
    finally:
        if not _ready():
            _pg(cluster, "start")
            _wait_ready()
        connection.close()
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    per_job = Counter(int(line.split()[0]) for line in runs.read_text().splitlines())
    assert set(per_job) == set(ids)
    assert [job for job, n in per_job.items() if n > 1] == [], "jobs run more than once"
    errors = list(JobErrorRecord.objects.values_list("job_id", "attempt", "error_type"))
    assert errors == [], "no job is taken for orphaned (nor fails otherwise)"
    assert set(JobRecord.objects.values_list("attempt", flat=True)) == {1}
