"""Chaos: the database restarts, kills connections, goes away (see docs/reliability.md).

Everything destructive here targets the suite's own cluster (``tests/chaos/cluster.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.db import connection

from demo.jobs import ChaosEffect, ChaosExclusive
from tests.chaos.conftest import sized, wait_for
from tests.chaos.support import duplicate_effects, errors_of

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def pickup_latency(db) -> float:
    """Seconds from the commit of a new job to its claim, read from the database's clock."""
    job_id = ChaosEffect.enqueue()
    connection.close()
    status = "SELECT status FROM rexecutor_job WHERE id = %s"
    wait_for(lambda: db.value(status, [job_id]) == "complete", 30, "pickup", interval=0.05)
    return db.value(
        "SELECT extract(epoch FROM attempted_at - inserted_at)::float FROM rexecutor_job"
        " WHERE id = %s",
        [job_id],
    )


def test_postgres_restart_mid_drain(cluster, fleet_factory, db, figures) -> None:
    """PostgreSQL restarts while jobs drain: all complete, the workers survive, and LISTEN is
    back (new jobs start much faster than the 10 s poll interval)."""
    total = sized(1500, 10000)
    poll = 10
    ChaosEffect.enqueue_many([{"data": {"sleep": 0.01}} for _ in range(total)])
    connection.close()
    fleet = fleet_factory(HEARTBEAT_INTERVAL=1, RESCUE_AFTER=5, POLL_INTERVAL=poll)
    for _ in range(2):
        fleet.start("--executor", ChaosEffect.name, "--concurrency", "8")
    wait_for(lambda: db.counts().get("complete", 0) >= total // 5, 120, "drain under way", fleet)
    restart_started = time.monotonic()
    cluster.restart()
    restarted = time.monotonic()
    done_before = db.counts().get("complete", 0)
    wait_for(lambda: db.counts().get("complete", 0) > done_before, 120, "progress again", fleet)
    recovery = time.monotonic() - restart_started
    wait_for(lambda: db.counts() == {"complete": total}, sized(300, 900), "drained", fleet)
    assert not fleet.dead(), fleet.output()
    # Idle now: a new job is started by a notification, or by the 10 s poll if LISTEN is gone.
    time.sleep(2)
    latencies = []
    for _ in range(3):
        latencies.append(pickup_latency(db))
        time.sleep(0.5)
    codes = fleet.stop_all()
    jobs_with_dupes, extra = duplicate_effects(db, total + len(latencies))
    figures("jobs", total)
    figures("restart took", restarted - restart_started, "s")
    figures("recovery (restart begun to first new completion)", recovery, "s")
    figures("pickup after recovery, worst of 3 (poll interval 10 s)", max(latencies), "s")
    figures("jobs whose side effect ran more than once", jobs_with_dupes)
    figures("duplicate side effects", extra)
    assert max(latencies) < 2, latencies
    assert set(codes.values()) == {0}, codes


def test_backend_termination_storm(fleet_factory, db, figures) -> None:
    """Every worker connection is terminated every second while jobs drain: nothing is lost
    and every worker stays alive."""
    total = sized(1500, 4000)
    storm = sized(10, 20)
    ChaosEffect.enqueue_many([{"data": {"sleep": 0.05}} for _ in range(total)])
    connection.close()
    fleet = fleet_factory(HEARTBEAT_INTERVAL=0.5, RESCUE_AFTER=3)
    for _ in range(2):
        fleet.start("--executor", ChaosEffect.name, "--concurrency", "8")
    wait_for(lambda: db.counts().get("complete", 0) > 0, 60, "drain under way", fleet)
    terminated = 0
    started = time.monotonic()
    while time.monotonic() - started < storm:
        terminated += db.terminate_others()
        assert not fleet.dead(), fleet.output()
        time.sleep(1)
    done_at_end = db.counts().get("complete", 0)
    wait_for(lambda: db.counts() == {"complete": total}, sized(300, 900), "drained", fleet)
    drained = time.monotonic() - started
    assert not fleet.dead(), fleet.output()
    codes = fleet.stop_all()
    jobs_with_dupes, extra = duplicate_effects(db, total)
    orphaned = db.value("SELECT count(*) FROM rexecutor_job_error WHERE error_type = 'orphaned'")
    figures("jobs", total)
    figures("storm", storm, "s")
    figures("connections terminated", terminated)
    figures("completed during the storm", done_at_end)
    figures("drain from storm start", drained, "s")
    figures("orphaned (rescued) attempts", orphaned)
    figures("jobs whose side effect ran more than once", jobs_with_dupes)
    figures("duplicate side effects", extra)
    assert set(codes.values()) == {0}, codes


def test_database_unreachable_past_rescue_after(
    cluster, fleet_factory, db, figures, tmp_path: Path
) -> None:
    """PostgreSQL is stopped for longer than RESCUE_AFTER while jobs run: afterwards no job has
    run twice at once and none is lost."""
    rescue_after = sized(5, 30)
    outage = sized(12, 40)
    jobs = sized(40, 100)
    # Jobs of several lengths: some end during the outage, some outlive it.
    lengths = [1 + (i % 5) * outage / 3 for i in range(jobs)]
    ids = ChaosExclusive.enqueue_many(
        [{"data": {"seconds": seconds, "dir": str(tmp_path)}} for seconds in lengths]
    )
    connection.close()
    fleet = fleet_factory(HEARTBEAT_INTERVAL=sized(1, 5), RESCUE_AFTER=rescue_after)
    for _ in range(2):
        fleet.start("--executor", ChaosExclusive.name, "--concurrency", "10")
    wait_for(lambda: db.counts().get("executing", 0) >= 15, 60, "jobs running", fleet)
    running = db.value("SELECT count(*) FROM rexecutor_job WHERE status = 'executing'")
    cluster.stop()
    time.sleep(outage)
    cluster.start()
    back = time.monotonic()
    wait_for(lambda: db.counts() == {"complete": jobs}, sized(300, 900), "all complete", fleet)
    drained = time.monotonic() - back
    assert not fleet.dead(), fleet.output()
    codes = fleet.stop_all()
    overlaps_file = tmp_path / "overlaps"
    overlaps = overlaps_file.read_text().splitlines() if overlaps_file.exists() else []
    runs: dict[int, int] = {}
    for line in (tmp_path / "runs").read_text().splitlines():
        job_id = int(line.split()[0])
        runs[job_id] = runs.get(job_id, 0) + 1
    errors = db.rows("SELECT error_type, count(*) FROM rexecutor_job_error GROUP BY error_type")
    figures("jobs", jobs)
    figures("RESCUE_AFTER", rescue_after, "s")
    figures("outage", outage, "s")
    figures("running when the database went away", running)
    figures("drain after the database came back", drained, "s")
    figures(
        "jobs run to their end more than once (one after the other)",
        sum(1 for n in runs.values() if n > 1),
    )
    figures("errors recorded by type", dict(errors))
    figures("attempts that overlapped another attempt of the same job", len(overlaps))
    assert overlaps == [], overlaps
    assert set(runs) == set(ids)
    assert all(errors_of(db, i) is not None for i in ids)
    assert set(codes.values()) == {0}, codes
