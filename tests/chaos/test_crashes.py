"""Chaos: worker processes killed, frozen, poisoned and stopped (see docs/reliability.md)."""

from __future__ import annotations

import random
import signal
import time

import pytest
from django.db import connection

from demo.jobs import ChaosEffect, ChaosPoison, SlowSync
from tests.chaos.conftest import sized, wait_for
from tests.chaos.support import duplicate_effects, errors_of, job_row

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_RESCUE = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 3}


def test_sigkill_churn(fleet_factory, db, figures) -> None:
    """Every job ends complete exactly once although a random worker is SIGKILLed every 2–4 s."""
    total = sized(3000, 20000)
    ChaosEffect.enqueue_many([{"data": {"sleep": 0.01}} for _ in range(total)])
    connection.close()
    fleet = fleet_factory(**FAST_RESCUE)
    args = ("--executor", ChaosEffect.name, "--concurrency", "8")
    for _ in range(3):
        fleet.start(*args)
    kills: list[tuple[float, list[int]]] = []
    started = time.monotonic()
    deadline = started + sized(300, 1800)
    next_kill = started + random.uniform(2, 4)
    while db.counts(ChaosEffect.name).get("complete", 0) < total:
        assert time.monotonic() < deadline, f"not drained in time: {db.counts()}\n{fleet.output()}"
        if time.monotonic() >= next_kill:
            victim = fleet.random_name()
            fleet.kill(victim)
            killed_at = db.value("SELECT extract(epoch FROM clock_timestamp())::float")
            held = db.rows(
                "SELECT id FROM rexecutor_job WHERE status = 'executing'"
                " AND regexp_replace(claimed_by, '@[^@]*$', '') = %s",
                [victim],
            )
            kills.append((killed_at, [row[0] for row in held]))
            fleet.start(*args)
            next_kill = time.monotonic() + random.uniform(2, 4)
        time.sleep(0.2)
    drained = time.monotonic() - started
    codes = fleet.stop_all()

    assert db.counts() == {"complete": total}
    assert db.value("SELECT count(DISTINCT id) FROM rexecutor_job") == total
    recoveries = [
        db.value(
            "SELECT extract(epoch FROM max(completed_at))::float - %s FROM rexecutor_job"
            " WHERE id = ANY(%s)",
            [killed_at, held],
        )
        for killed_at, held in kills
        if held
    ]
    jobs_with_dupes, extra = duplicate_effects(db, total)
    figures("jobs", total)
    figures("kills", len(kills))
    figures("jobs held by killed workers", sum(len(h) for _, h in kills))
    figures("drain", drained, "s")
    figures("jobs whose side effect ran more than once", jobs_with_dupes)
    figures("duplicate side effects", extra)
    figures("longest recovery (kill to last held job complete)", max(recoveries, default=0.0), "s")
    assert kills, "no worker was killed: the run was too short to test anything"
    assert set(codes.values()) == {0}, codes


def test_zombie_writers(fleet_factory, db, figures) -> None:
    """A worker frozen past RESCUE_AFTER comes back; its late writes change nothing."""
    rounds = sized(4, 50)
    fleet = fleet_factory(HEARTBEAT_INTERVAL=0.5, RESCUE_AFTER=2)
    for _ in range(2):
        fleet.start("--executor", SlowSync.name, "--concurrency", "2")
    fenced = late_results = 0
    for _ in range(rounds):
        job_id = SlowSync.enqueue({"seconds": 3}, max_attempts=3)
        connection.close()
        wait_for(
            lambda job_id=job_id: job_row(db, job_id)[0] == "executing", 30, "first claim", fleet
        )
        zombie = fleet.workers[fleet.owner(job_row(db, job_id)[2])]
        zombie.signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda job_id=job_id: job_row(db, job_id)[:2] == ("executing", 2),
                30,
                "rescue and reclaim",
                fleet,
            )
            before = (job_row(db, job_id), errors_of(db, job_id))
        finally:
            zombie.signal(signal.SIGCONT)
        # Once resumed the zombie's attempt is past its end: it writes its side effect and
        # result at once (unless it gave the attempt up). Give it a moment to try.
        late = db.value(
            "SELECT count(*) FROM demo_sideeffect WHERE job_id = %s AND label = 'finished'"
            " AND attempt = 1",
            [job_id],
        )
        deadline = time.monotonic() + 2
        while not late and time.monotonic() < deadline:
            time.sleep(0.1)
            late = db.value(
                "SELECT count(*) FROM demo_sideeffect WHERE job_id = %s AND label = 'finished'"
                " AND attempt = 1",
                [job_id],
            )
        time.sleep(0.5)
        late_results += bool(late)
        after = (job_row(db, job_id), errors_of(db, job_id))
        wait_for(
            lambda job_id=job_id: job_row(db, job_id)[0] != "executing",
            30,
            "second attempt ends",
            fleet,
        )
        status, attempt, _ = job_row(db, job_id)
        history = errors_of(db, job_id)
        ok = after == before and (status, attempt) == ("complete", 2) and history == before[1]
        assert [e[:2] for e in history] == [(1, "orphaned")], history
        fenced += ok
    codes = fleet.stop_all()
    figures("rounds", rounds)
    figures("zombie attempts that wrote late", late_results)
    figures("fenced/total", f"{fenced}/{rounds}")
    assert fenced == rounds
    assert set(codes.values()) == {0}, codes


def test_poison_pill(fleet_factory, db, figures) -> None:
    """A job that kills its worker on every attempt ends discarded after max_attempts, with
    one error per attempt, while other jobs keep completing."""
    others = sized(400, 3000)
    poison = ChaosPoison.enqueue()
    ChaosEffect.enqueue_many([{"data": {"sleep": 0.02}} for _ in range(others)])
    connection.close()
    fleet = fleet_factory(**FAST_RESCUE)
    args = ("--executor", ChaosPoison.name, "--executor", ChaosEffect.name, "--concurrency", "4")
    for _ in range(2):
        fleet.start(*args)
    deaths = 0
    started = time.monotonic()

    def settled() -> bool:
        nonlocal deaths
        for name in fleet.dead():
            fleet.kill(name)
            fleet.start(*args)
            deaths += 1
        done = db.counts(ChaosEffect.name).get("complete", 0) == others
        return done and job_row(db, poison)[0] not in ("scheduled", "retryable", "executing")

    wait_for(settled, sized(180, 600), "poison settled and others complete", fleet, interval=0.3)
    elapsed = time.monotonic() - started
    codes = fleet.stop_all()
    status, attempt, _ = job_row(db, poison)
    history = errors_of(db, poison)
    figures("other jobs", others)
    figures("worker processes killed by the poison", deaths)
    figures("poison status", status)
    figures("poison errors", len(history))
    figures("elapsed", elapsed, "s")
    assert (status, attempt) == ("discarded", ChaosPoison.max_attempts)
    assert [e[0] for e in history] == [1, 2, 3], history
    assert all(e[2] for e in history), history
    assert deaths == ChaosPoison.max_attempts
    assert db.counts(ChaosEffect.name) == {"complete": others}
    assert set(codes.values()) == {0}, codes


def test_grace_period(fleet_factory, db, figures) -> None:
    """SIGTERM while a job outlives SHUTDOWN_TIMEOUT: the job is released without spending an
    attempt, the worker exits 0, and the next worker finishes it."""
    rounds = sized(3, 10)
    fleet = fleet_factory(SHUTDOWN_TIMEOUT=1)
    exits: list[float] = []
    # The worker that finishes a round's job is the one stopped in the next round.
    name = fleet.start("--executor", SlowSync.name)
    for _ in range(rounds):
        job_id = SlowSync.enqueue({"seconds": 4})
        connection.close()
        wait_for(
            lambda job_id=job_id: db.value(
                "SELECT count(*) FROM demo_sideeffect WHERE job_id = %s AND label = 'started'",
                [job_id],
            ),
            30, "job started", fleet,
        )  # fmt: skip
        worker = fleet.workers.pop(name)
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(30)
        exits.append(time.monotonic() - sent)
        fleet.retired.append(worker)
        assert code == 0, (worker.output, fleet.output())
        status, attempt, _ = job_row(db, job_id)
        assert (status, attempt) == ("scheduled", 0), (status, attempt)
        assert errors_of(db, job_id) == []
        name = fleet.start("--executor", SlowSync.name)
        wait_for(
            lambda job_id=job_id: job_row(db, job_id)[0] == "complete",
            30,
            "finished by the next",
            fleet,
        )
        assert job_row(db, job_id)[1] == 1
        assert errors_of(db, job_id) == []
    codes = fleet.stop_all()
    figures("rounds", rounds)
    figures("longest exit after SIGTERM (SHUTDOWN_TIMEOUT 1 s)", max(exits), "s")
    assert set(codes.values()) == {0}, codes
