"""The plain-SQL drain ceiling that uses the machine: several connections claiming at once.

One connection claiming a batch, completing it, and claiming again measures the round trips
of that loop, not what PostgreSQL can do. Here ``connections`` threads (psycopg releases the
GIL while it waits on the server) each loop over ``claim batch … SKIP LOCKED`` → complete that
batch, on two tables:

* ``minimal``: a table with only what a queue needs (id, status, priority, run_at) and one
  partial index — what the database allows for a job queue at all;
* ``ours``: our ``rexecutor_job`` table with all its indexes and triggers, so that the cost
  of our schema is visible as the gap between the two rows.

Each drain is measured by ``meter.DrainMeter`` like every other drain of the benchmark (the
"worker" is this process: its threads do the claiming)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.benchmarks.meter import DrainMeter, median_round

MINIMAL_TABLE = "bench_minimal_job"
MINIMAL_DDL = f"""
DROP TABLE IF EXISTS {MINIMAL_TABLE};
CREATE TABLE {MINIMAL_TABLE} (
    id bigserial PRIMARY KEY,
    status text NOT NULL,
    priority int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {MINIMAL_TABLE}_ready ON {MINIMAL_TABLE} (priority, run_at, id)
    WHERE status = 'ready';
"""
MINIMAL_CLAIM = f"""
UPDATE {MINIMAL_TABLE} SET status = 'running'
 WHERE id IN (SELECT id FROM {MINIMAL_TABLE} WHERE status = 'ready' AND run_at <= now()
               ORDER BY priority, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id
"""
MINIMAL_COMPLETE = f"UPDATE {MINIMAL_TABLE} SET status = 'done' WHERE id = ANY(%s)"

OURS_CLAIM = """
UPDATE rexecutor_job SET status = 'executing', attempt = attempt + 1, attempted_at = now(),
       claimed_by = 'ceiling'
 WHERE id IN (SELECT id FROM rexecutor_job
               WHERE status IN ('retryable', 'scheduled') AND executor = 'bench_noop'
                 AND scheduled_at <= now()
               ORDER BY priority, scheduled_at, id
               LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id
"""
OURS_COMPLETE = """
UPDATE rexecutor_job SET status = 'complete', completed_at = now()
 WHERE id = ANY(%s) AND status = 'executing' AND claimed_by = 'ceiling'
   AND cancel_requested_at IS NULL
"""


def fill_minimal(url: str, count: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MINIMAL_DDL)
        now = datetime.now(UTC)
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY {MINIMAL_TABLE} (status, priority, run_at) FROM STDIN") as copy,
        ):
            for _ in range(count):
                copy.write_row(("ready", 0, now))
        conn.execute(f"ANALYZE {MINIMAL_TABLE}")


def drain_in_parallel(
    url: str, claim_sql: str, complete_sql: str, connections: int, batch: int
) -> dict[str, Any]:
    """Drain with ``connections`` threads; the ``DrainMeter`` figures and the jobs done."""
    import psycopg

    done = [0] * connections
    errors: list[BaseException] = []
    # Connected → start together; drained → wait while the meter reads the backends' CPU.
    start = threading.Barrier(connections + 1)
    drained = threading.Barrier(connections + 1)
    meter = DrainMeter(url, os.getpid())
    meter.begin()

    def run(slot: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                start.wait()
                while True:
                    ids = [row[0] for row in conn.execute(claim_sql, [batch]).fetchall()]
                    if not ids:
                        break
                    done[slot] += conn.execute(complete_sql, [ids]).rowcount
                drained.wait()
                drained.wait()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once every thread stopped
            errors.append(exc)
            start.abort()
            drained.abort()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
        meter.start()
        drained.wait()
        meter.stop()
        drained.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"parallel ceiling failed: {errors[0]!r}") from errors[0]
    jobs = sum(done)
    return {"jobs": jobs, **meter.figures(jobs)}


def measure(
    url: str,
    jobs: int,
    rounds: int,
    connections: int,
    batch: int,
    prefill_ours: Callable[[int], None],
    reset_ours: Callable[[], None],
) -> dict[str, Any]:
    """Both tables, ``rounds`` times each; each round, and the round of the median rate."""
    out: dict[str, Any] = {"connections": connections, "batch": batch}
    for name in ("minimal", "ours"):
        rounds_out = []
        for _ in range(rounds):
            if name == "minimal":
                fill_minimal(url, jobs)
                figures = drain_in_parallel(
                    url, MINIMAL_CLAIM, MINIMAL_COMPLETE, connections, batch
                )
            else:
                reset_ours()
                prefill_ours(jobs)
                figures = drain_in_parallel(url, OURS_CLAIM, OURS_COMPLETE, connections, batch)
            if figures["jobs"] != jobs:
                raise RuntimeError(f"ceiling ({name}) completed {figures['jobs']} of {jobs}")
            rounds_out.append({"jobs_per_s": figures["wall_jobs_per_s"], **figures})
        out[name] = median_round(rounds_out)
    return out
