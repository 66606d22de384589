"""What one drain costs, measured the same way for ours, the peers and the plain-SQL ceiling.

Use::

    meter = DrainMeter(url, worker_pid)
    meter.begin()        # once the workers are idle: the database's transaction count
    ...                  # enqueue or fill the jobs
    meter.start()        # the drain starts: CPU counters and the clock
    ...                  # poll until done, counting the polls
    meter.stop()
    figures = meter.figures(jobs, own_transactions=polls + enqueue transactions)

``figures`` has the worker's CPU (the process tree of ``worker_pid``: ``procstat``), the
machine's busy share, the CPU of PostgreSQL's backends for that database, the worker CPU per
job, and the **database transactions per job**: the change of ``xact_commit +
xact_rollback`` of the database in ``pg_stat_database`` between ``begin`` and ``figures``,
minus the transactions the caller says were its own, over the jobs. Backends send their
counts to the statistics at most once a second and at exit, so both readings wait
``STATS_DELAY`` first; the statistics are read from the ``postgres`` database, so that
reading them is not counted."""

from __future__ import annotations

import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.benchmarks.procstat import Sample

#: PostgreSQL 15 flushes a backend's pending statistics at most every second (when idle).
STATS_DELAY = 1.1


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def transactions(url: str) -> int:
    """Committed + rolled-back transactions of the database of ``url`` so far."""
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    time.sleep(STATS_DELAY)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [parts.path.lstrip("/")],
        ).fetchone()
    return int(row[0]) if row else 0


class DrainMeter:
    def __init__(self, url: str, worker_pid: int) -> None:
        self.url = url
        self.database = database_name(url)
        self.worker_pid = worker_pid
        self._xacts = 0
        self._started = self._stopped = 0.0
        self._before: Sample | None = None
        self._after: Sample | None = None

    def begin(self) -> None:
        self._xacts = transactions(self.url)

    def start(self) -> None:
        self._before = Sample.take(self.worker_pid, self.database)
        self._started = time.perf_counter()

    def stop(self) -> None:
        self._stopped = time.perf_counter()
        self._after = Sample.take(self.worker_pid, self.database)

    @property
    def seconds(self) -> float:
        return self._stopped - self._started

    def figures(self, jobs: int, own_transactions: int = 0) -> dict[str, Any]:
        assert self._before is not None and self._after is not None, "start() and stop() first"
        cpu = self._after.since(self._before, self.seconds)
        xacts = transactions(self.url) - self._xacts - own_transactions
        return {
            "wall_s": round(self.seconds, 3),
            "wall_jobs_per_s": round(jobs / self.seconds),
            **cpu,
            "worker_cpu_us_per_job": round(1e6 * cpu["worker_cpu_s"] / jobs, 1),
            "db_transactions_per_job": round(xacts / jobs, 3),
        }


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """``rounds`` and, beside them, the figures of the round whose ``jobs_per_s`` is the median
    (``median``: that rate), so that the CPU figures shown belong to the rate shown."""
    median = statistics.median(r["jobs_per_s"] for r in rounds)
    middle = min(rounds, key=lambda r: abs(r["jobs_per_s"] - median))
    return {**middle, "median": round(median), "rounds": rounds}
