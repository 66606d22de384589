"""Cron in real worker processes: however many workers run the scheduler, every tick yields
exactly one job, and the jobs run."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from django_rexecutor.models import CronTickRecord, JobRecord

TICK = "cron_test.tick"  # tests/cron_testapp/jobs.py, scheduled every second by settings_cron

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_workers(manage_py: list[str], env: dict[str, str], count: int) -> list[subprocess.Popen]:
    env = dict(env, DJANGO_SETTINGS_MODULE="tests.settings_cron", REXECUTOR_TEST_CRON="1")
    return [
        subprocess.Popen(
            [*manage_py, "rexecutor_worker", "--no-pruner", "--concurrency", "2", "-v", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen]) -> list[str]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    outputs = []
    for worker in workers:
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
        outputs.append(out)
    return outputs


def wait_for(condition, timeout: float, workers: list[subprocess.Popen]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if any(w.poll() is not None for w in workers):
            raise AssertionError("a worker exited early:\n" + "\n".join(stop_workers(workers)))
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s:\n" + "\n".join(stop_workers(workers)))


def run_cron_workers(manage_py: list[str], env: dict[str, str], count: int) -> None:
    workers = start_workers(manage_py, env, count)
    try:
        # Let the workers start (Django setup takes a moment), then run several ticks together.
        wait_for(lambda: JobRecord.objects.filter(executor=TICK).exists(), 60, workers)
        first_seen = timezone.now()
        wait_for(lambda: timezone.now() - first_seen > timedelta(seconds=5), 30, workers)
        # Every job due a moment ago has run (the workers complete what they enqueue).
        cutoff = timezone.now() - timedelta(seconds=1)
        wait_for(
            lambda: (
                not JobRecord.objects.filter(executor=TICK, scheduled_at__lte=cutoff)
                .exclude(status="complete")
                .exists()
            ),
            30,
            workers,
        )
    finally:
        outputs = stop_workers(workers)
    jobs = list(JobRecord.objects.filter(executor=TICK).order_by("scheduled_at"))
    per_tick = Counter(j.scheduled_at for j in jobs)
    duplicated = {tick: n for tick, n in per_tick.items() if n > 1}
    assert not duplicated, f"ticks with more than one job: {duplicated}\n" + "\n".join(outputs)
    ticks = sorted(per_tick)
    assert len(ticks) >= 5, outputs
    # One job per second, with no gap, from the first tick to the last.
    assert all(t.microsecond == 0 for t in ticks)
    span = int((ticks[-1] - ticks[0]).total_seconds())
    assert len(ticks) == span + 1, ticks
    done = [j for j in jobs if j.scheduled_at <= cutoff]
    assert done and all(j.status == "complete" for j in done)
    # Every worker ran the scheduler: each either won ticks or found them already taken.
    for out in outputs:
        assert "cron every-second: enqueued job" in out or "already enqueued" in out, out
    # Each job is recorded against its tick.
    recorded = dict(
        CronTickRecord.objects.filter(name="every-second").values_list("job_id", "tick_at")
    )
    assert {j.pk: j.scheduled_at for j in jobs} == recorded


@pytest.mark.server_db
def test_three_workers_enqueue_exactly_one_job_per_tick(manage_py, subprocess_env) -> None:
    run_cron_workers(manage_py, subprocess_env, count=3)


def test_a_single_worker_runs_its_cron_entry(manage_py, subprocess_env) -> None:
    # On SQLite the multi-worker test above is skipped; one worker still schedules and runs.
    run_cron_workers(manage_py, subprocess_env, count=1)
