"""Chaos: racing enqueuers and rows written behind the library's back (docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from demo.jobs import ChaosEffect, ChaosNeedsData, ChaosUnique
from tests.chaos.conftest import sized, wait_for
from tests.chaos.support import errors_of, job_row

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RACE_SCRIPT = Path(__file__).with_name("enqueue_race.py")


def test_unique_race(subprocess_env, db, figures) -> None:
    """256 enqueuers (threads in 8 processes) of one unique job, at once: one live job."""
    processes, threads, rounds, gap = 8, 32, sized(5, 20), 1.5
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE="testproject.settings")
    project = str(Path(__file__).resolve().parents[2] / "testproject")
    env["PYTHONPATH"] = f"{project}:{env['PYTHONPATH']}"
    # Start well after every process has booted Django and connected.
    start_at = time.time() + 8
    procs = [
        subprocess.Popen(
            [sys.executable, str(RACE_SCRIPT), str(threads), str(start_at), str(rounds), str(gap)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.extend(json.loads(out.splitlines()[-1]))
    late = time.time() - (start_at + (rounds - 1) * gap)
    errors = [r for r in results if "error" in r]
    live = dict(
        db.rows(
            "SELECT (data->>'round')::int, count(*) FROM rexecutor_job WHERE executor = %s"
            " AND status IN ('scheduled', 'retryable', 'executing') GROUP BY 1",
            [ChaosUnique.name],
        )
    )
    inserted = Counter(r["round"] for r in results if r.get("inserted"))
    figures("enqueuers", processes * threads)
    figures("rounds", rounds)
    figures("enqueue errors", len(errors))
    figures("live jobs per round (must all be 1)", sorted(set(live.values())))
    figures("seconds past the last round's start when the last process ended", late, "s")
    assert errors == [], errors[:5]
    assert live == dict.fromkeys(range(rounds), 1), live
    assert inserted == Counter(dict.fromkeys(range(rounds), 1)), inserted
    assert len(results) == processes * threads * rounds


BAD_ROWS = {
    "unknown executor": ("chaos.no_such_executor", "'{}'", "scheduled", 0, 5, "'[]'"),
    "data a string": (ChaosNeedsData.name, "'\"not an object\"'", "scheduled", 0, 1, "'[]'"),
    "data a list": (ChaosNeedsData.name, "'[1, 2]'", "scheduled", 0, 1, "'[]'"),
    "attempt above max_attempts": (ChaosNeedsData.name, "'{}'", "retryable", 7, 3, "'[]'"),
    "NULL data": (ChaosNeedsData.name, "NULL", "scheduled", 0, 1, "'[]'"),
    "JSON null tags": (ChaosEffect.name, "NULL", "scheduled", 0, 5, "'null'"),
}


def test_bad_rows(fleet_factory, db, figures) -> None:
    """Rows written straight into the table with SQL: no worker crashes, each such job ends in
    a status an operator sees, with a readable error, and the other jobs complete."""
    others = sized(300, 2000)
    ChaosEffect.enqueue_many([{} for _ in range(others // 2)])
    connection.close()
    bad: dict[str, int] = {}
    for what, (executor, data, status, attempt, max_attempts, tags) in BAD_ROWS.items():
        bad[what] = db.value(
            "INSERT INTO rexecutor_job (executor, status, data, attempt, max_attempts, priority,"
            " tags, inserted_at, scheduled_at, cancel_reason)"
            f" VALUES (%s, %s, {data}, %s, %s, 0, {tags}, now(), now(), '') RETURNING id",
            [executor, status, attempt, max_attempts],
        )
    ChaosEffect.enqueue_many([{} for _ in range(others - others // 2)])
    connection.close()
    fleet = fleet_factory()
    for _ in range(2):
        fleet.start("--concurrency", "4")
    known = {k: v for k, v in bad.items() if k != "unknown executor"}

    def settled() -> bool:
        assert not fleet.dead(), fleet.output()
        statuses = {job_row(db, i)[0] for i in known.values()}
        return db.counts(ChaosEffect.name).get("complete", 0) >= others - 1 and not (
            statuses & {"scheduled", "retryable", "executing"}
        )

    wait_for(settled, sized(120, 300), "bad rows settled, others complete", fleet)
    time.sleep(1)
    assert not fleet.dead(), fleet.output()
    codes = fleet.stop_all()
    for what, job_id in bad.items():
        status, attempt, _ = job_row(db, job_id)
        history = errors_of(db, job_id)
        figures(f"{what}: status", status)
        figures(f"{what}: error", (history[-1][1] + ": " + history[-1][2])[:120] if history else "")
    # A job of an executor no worker runs waits, untouched, for one that does.
    assert job_row(db, bad["unknown executor"])[:2] == ("scheduled", 0)
    for what, job_id in known.items():
        status, _, _ = job_row(db, job_id)
        history = errors_of(db, job_id)
        assert status in ("complete", "discarded", "cancelled"), (what, status)
        if status != "complete":
            assert history and history[-1][2], (what, history)
    assert db.counts(ChaosEffect.name).get("complete", 0) >= others
    assert set(codes.values()) == {0}, codes
