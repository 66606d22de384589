"""The django-rexecutor benchmark: real PostgreSQL, real worker processes, one table.

Run it with ``make bench`` (or ``DATABASE_URL=postgres://... python tests/benchmarks/bench.py``).
It works in its own database (``rexecutor_bench`` on the server of ``DATABASE_URL``, created and
migrated here), never in the development one, and measures in one run:

* enqueue one by one through the public API (``Executor.enqueue``, autocommit) and in bulk
  (``Executor.enqueue_many``);
* the drain of N no-op jobs by one command, ``rexecutor_worker --processes N`` for N = 1, 2
  and 4: the worker is started idle, the jobs are inserted in one transaction, and the drain
  is timed from that commit until the last job is seen complete (polled every 10 ms), with
  the worker's CPU, the machine's busy share, PostgreSQL's CPU and the database transactions
  per job (``meter.DrainMeter``, the same for every drain below);
* pickup latency: from the moment an enqueue's commit returns to the moment the job's
  ``execute`` starts, on an idle worker (both clocks are this host's ``time.time()``);
* idle and busy worker RSS (``VmRSS`` from ``/proc``);
* the plain-SQL ceiling on the same database and table: psycopg alone, one-by-one ``INSERT``,
  ``COPY``, LISTEN/NOTIFY pickup, and the drain by batched ``SKIP LOCKED`` claim + batched
  completion, on one connection and on ``--concurrency`` connections at once, on our table
  and on a minimal one (``ceiling_parallel``);
* the peers, pgqueuer and Procrastinate, through their public APIs and worker commands
  (``peers``), in databases of their own on the same server.

With ``--mysql-url mysql://…`` (``make bench`` passes ``MYSQL_URL``), a MariaDB row follows:
enqueue one by one, the drain by one worker process and pickup latency, run by this script in
a child process whose Django uses that database (``rexecutor_bench`` on that server).

The table goes to stdout, everything (with the machine and load) to ``artifacts/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "testproject", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/rexecutor"
SETTINGS = "tests.benchmarks.settings"
PARTS = ("enqueue", "bulk", "drain", "drain2", "drain4", "pickup", "ceiling", "peers", "tasks")
#: The drain parts: ``rexecutor_worker --processes N``.
DRAIN_PROCESSES = {"drain": 1, "drain2": 2, "drain4": 4}
PEERS = ("pgqueuer", "procrastinate")
JOB_TABLES = "rexecutor_job_error, rexecutor_job, rexecutor_worker"
STAMP_FILE = REPO / "artifacts" / "bench-stamps.txt"

#: The targets of issue 6 (this machine class: 2 cores, PostgreSQL 15 on the same host).
TARGETS: dict[str, tuple[str, float]] = {
    "enqueue_one": (">=", 3_500),
    "enqueue_bulk": (">=", 100_000),
    "drain_1": (">=", 12_000),
    "pickup_p50_ms": ("<=", 2.5),
    "pickup_p95_ms": ("<=", 5.0),
    "rss_idle_mb": ("<=", 70),
}


@dataclass
class Options:
    url: str
    jobs: int
    enqueue_jobs: int
    concurrency: int
    pickup_jobs: int
    pickup_gap: float
    rounds: int
    parts: tuple[str, ...]
    json_path: Path
    keep_logs: bool
    synchronous_commit: str
    worker_args: list[str] = field(default_factory=list)
    mysql_url: str | None = None
    #: This process is the child that measures the MariaDB row (``--mysql-url``).
    mariadb_child: bool = False
    #: The command line that produced this run, as printed under the table.
    command: str = ""

    @property
    def mysql(self) -> bool:
        return self.url.startswith("mysql:")


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per drain/bulk round")
    parser.add_argument("--enqueue-jobs", type=int, default=5_000, help="jobs enqueued one by one")
    parser.add_argument("--concurrency", type=int, default=10, help="worker --concurrency")
    parser.add_argument("--pickup-jobs", type=int, default=200)
    parser.add_argument("--pickup-gap-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the throughput parts")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}"
    )
    parser.add_argument("--json", default=str(REPO / "artifacts" / "bench.json"))
    parser.add_argument("--database", default="rexecutor_bench", help="database to work in")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra argument for rexecutor_worker (repeatable)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs in artifacts/")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="synchronous_commit of the benchmark databases (default on, the stock setting)",
    )
    parser.add_argument(
        "--mysql-url",
        default=None,
        help="also measure a MariaDB/MySQL row on this server (mysql://user@host:port/any)",
    )
    parser.add_argument("--mariadb-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    base = urlsplit(args.mysql_url if args.mariadb_child else DEFAULT_URL)
    if not args.mariadb_child:
        base = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_URL)
        if base.scheme not in {"postgres", "postgresql"}:
            parser.error("the benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    if args.mysql_url and urlsplit(args.mysql_url).scheme != "mysql":
        parser.error("--mysql-url must start with mysql://")
    return Options(
        url=urlunsplit(base._replace(path="/" + args.database)),
        jobs=args.jobs,
        enqueue_jobs=args.enqueue_jobs,
        concurrency=args.concurrency,
        pickup_jobs=args.pickup_jobs,
        pickup_gap=args.pickup_gap_ms / 1000,
        rounds=max(1, args.rounds),
        parts=parts,
        json_path=Path(args.json),
        keep_logs=args.keep_logs,
        synchronous_commit=args.synchronous_commit,
        worker_args=list(args.worker_arg),
        mysql_url=args.mysql_url,
        mariadb_child=args.mariadb_child,
        command=shlex.join(
            [
                f"DATABASE_URL={os.environ.get('DATABASE_URL', '')}",
                Path(sys.executable).name,
                "tests/benchmarks/bench.py",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
    )


# -- set-up ---------------------------------------------------------------------------------


def create_database(url: str, synchronous_commit: str) -> None:
    """Create the benchmark database if it is missing and set its ``synchronous_commit`` (for
    new connections to it only: no other database or server setting is touched)."""
    if url.startswith("mysql:"):  # MariaDB: the server's durability settings stay as they are
        import MySQLdb  # type: ignore[import-untyped]

        parts = urlsplit(url)
        conn = MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
        )
        conn.cursor().execute(
            f"CREATE DATABASE IF NOT EXISTS `{parts.path.lstrip('/')}`"
            " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
        conn.close()
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                sql.Identifier(name), sql.Literal(synchronous_commit)
            )
        )


def setup_django(opts: Options) -> None:
    os.environ["DATABASE_URL"] = opts.url
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def sql_run(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def reset_tables() -> None:
    """Start every part from empty tables with fresh statistics, as autovacuum would keep them."""
    from django.db import connection

    if connection.vendor == "mysql":
        sql_run("SET FOREIGN_KEY_CHECKS = 0")
        for table in JOB_TABLES.split(", "):
            sql_run(f"TRUNCATE {table}")
        sql_run("SET FOREIGN_KEY_CHECKS = 1")
        sql_run("ANALYZE TABLE rexecutor_job")
        return
    sql_run(f"TRUNCATE {JOB_TABLES}")
    sql_run("VACUUM ANALYZE rexecutor_job")


def child_env(opts: Options) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = opts.url
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["REXECUTOR_BENCH_STAMPS"] = str(STAMP_FILE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def load_1min() -> float:
    return os.getloadavg()[0]


# -- worker processes -----------------------------------------------------------------------


class WorkerProcess:
    """One ``manage.py rexecutor_worker`` subprocess, its log file and its memory."""

    def __init__(self, opts: Options, label: str, *args: str) -> None:
        log_dir = REPO / "artifacts"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"bench-worker-{label}.log"
        self._log = self.log_path.open("wb")
        command = [
            sys.executable,
            str(REPO / "testproject" / "manage.py"),
            "rexecutor_worker",
            "--concurrency",
            str(opts.concurrency),
            "--no-cron",
            "--no-pruner",
            # Warnings only, as the peers' workers run by default: no log line per job (at -v 1,
            # the default, that line costs a quarter of the drain rate; see performance.md).
            "-v",
            "0",
            *args,
            *opts.worker_args,
        ]
        self.started = time.time()
        self.proc = subprocess.Popen(
            command, env=child_env(opts), stdout=self._log, stderr=subprocess.STDOUT
        )
        self.peak_rss_kb = 0
        self._sampling = False

    def rss_kb(self) -> int:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def sample_rss(self, interval: float = 0.02) -> threading.Thread:
        """Track the peak RSS in the background until the process exits."""

        def run() -> None:
            while self.proc.poll() is None:
                self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())
                time.sleep(interval)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def wait(self, timeout: float) -> float:
        """Wait for exit; returns the wall time since start. Raises if the worker failed."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"worker did not finish in {timeout:.0f} s; see {self.log_path}"
            ) from None
        elapsed = time.time() - self.started
        self._log.close()
        if code != 0:
            raise RuntimeError(f"worker exited with {code}; see {self.log_path}")
        return elapsed

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


# -- measurements through the library -------------------------------------------------------


def best_rate(rounds: int, run: Callable[[], tuple[int, float]]) -> dict[str, Any]:
    """Run a throughput round ``rounds`` times; report each rate and their median."""
    rates = []
    for _ in range(rounds):
        count, seconds = run()
        rates.append(count / seconds)
    return {"rates": [round(r) for r in rates], "median": round(statistics.median(rates))}


def bench_enqueue_one(opts: Options) -> dict[str, Any]:
    from tests.benchmarks.jobs import BenchNoop

    def run() -> tuple[int, float]:
        reset_tables()
        for i in range(200):  # warm caches and the connection
            BenchNoop.enqueue({"i": i})
        started = time.perf_counter()
        for i in range(opts.enqueue_jobs):
            BenchNoop.enqueue({"i": i})
        return opts.enqueue_jobs, time.perf_counter() - started

    return best_rate(opts.rounds, run)


def bench_enqueue_bulk(opts: Options) -> dict[str, Any]:
    from tests.benchmarks.jobs import BenchNoop

    def run() -> tuple[int, float]:
        reset_tables()
        items = [{"data": {"i": i}} for i in range(opts.jobs)]
        started = time.perf_counter()
        ids = BenchNoop.enqueue_many(items)
        elapsed = time.perf_counter() - started
        assert len(ids) == opts.jobs and ids == sorted(ids), "ids must come back in order"
        return opts.jobs, elapsed

    return best_rate(opts.rounds, run)


def prefill(count: int, executor: str = "bench_noop") -> None:
    """Insert ``count`` ready jobs with COPY (fast, and independent of the code under test)."""
    from django.db import connection

    if connection.vendor == "mysql":  # multi-row INSERTs: MariaDB has no COPY
        now = datetime.now(UTC).replace(tzinfo=None)
        row = f"('{executor}', 'scheduled', %s, NULL, 0, 5, 0, '[]', %s, %s)"
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            params = [v for i in range(start, start + n) for v in (f'{{"i": {i}}}', now, now)]
            sql_run(
                f"INSERT INTO rexecutor_job ({INSERT_COLUMNS}) VALUES {', '.join([row] * n)}",
                params,
            )
        sql_run("ANALYZE TABLE rexecutor_job")
        return
    from django.db import transaction

    # One transaction (ANALYZE may run in one): workers already waiting see the jobs, and the
    # statistics of a table that holds them, at the same commit.
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            copy_rows(cursor, count, executor)
        sql_run("ANALYZE rexecutor_job")


def bench_drain(opts: Options, processes: int, sample_rss: bool) -> dict[str, Any]:
    """``rexecutor_worker --processes N``, started idle, drains ``--jobs`` jobs inserted in one
    transaction; each round's ``DrainMeter`` figures (PostgreSQL only)."""
    from tests.benchmarks.meter import DrainMeter, median_round

    rounds: list[dict[str, Any]] = []
    peak_rss = 0
    for round_no in range(opts.rounds):
        reset_tables()
        worker = WorkerProcess(
            opts, f"drain{processes}-{round_no}", "--processes", str(processes),
            "--executor", "bench_noop",
        )  # fmt: skip
        meter = DrainMeter(opts.url, worker.proc.pid)
        polls = 0
        try:
            wait_until(
                lambda worker=worker: (  # type: ignore[misc]
                    worker.proc.poll() is not None
                    or sql_run("SELECT count(*) FROM rexecutor_worker")[0][0] >= processes
                ),
                60,
                f"{processes} workers' first heartbeat",
            )
            time.sleep(1.0)  # let every process reach its idle wait (LISTEN)
            sampler = worker.sample_rss() if sample_rss else None
            if not opts.mysql:
                meter.begin()
            prefill(opts.jobs)
            meter.start()
            deadline = time.monotonic() + max(120, opts.jobs / 200)
            while True:
                polls += 1
                if sql_run(DONE_SQL)[0][0] >= opts.jobs:
                    break
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"drain did not finish; see {worker.log_path}")
                time.sleep(0.01)
            meter.stop()
        finally:
            worker.stop()  # its backends exit, which sends their last counts to the statistics
        if sampler is not None:
            sampler.join()
            peak_rss = max(peak_rss, worker.peak_rss_kb)
        (first, last), *_ = sql_run(
            # MariaDB/MySQL: UNIX_TIMESTAMP reads the UTC session (system check E043).
            "SELECT UNIX_TIMESTAMP(MIN(attempted_at)), UNIX_TIMESTAMP(MAX(completed_at))"
            " FROM rexecutor_job"
            if opts.mysql
            else "SELECT extract(epoch FROM min(attempted_at)), extract(epoch FROM max(completed_at))"
            " FROM rexecutor_job"
        )
        span = float(last) - float(first)
        figures: dict[str, Any] = {
            "jobs_per_s": round(opts.jobs / meter.seconds),
            "first_claim_to_last_completion_jobs_per_s": round(opts.jobs / span),
        }
        if opts.mysql:
            figures["wall_s"] = round(meter.seconds, 3)
        else:  # the polls and the one prefill transaction are the benchmark's, not the worker's
            figures.update(meter.figures(opts.jobs, own_transactions=polls + 1))
        rounds.append(figures)
    out = median_round(rounds)
    if sample_rss:
        out["peak_rss_mb"] = round(peak_rss / 1024, 1)
    return out


DONE_SQL = "SELECT count(*) FROM rexecutor_job WHERE status = 'complete'"


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def bench_pickup(opts: Options) -> dict[str, Any]:
    """Latency on an idle worker, plus its idle RSS (read after it settled)."""
    from tests.benchmarks.jobs import BenchStamp

    reset_tables()
    STAMP_FILE.parent.mkdir(parents=True, exist_ok=True)
    STAMP_FILE.unlink(missing_ok=True)
    worker = WorkerProcess(opts, "pickup", "--executor", "bench_stamp")
    try:
        wait_until(
            lambda: (
                bool(sql_run("SELECT 1 FROM rexecutor_worker")) or worker.proc.poll() is not None
            ),
            60,
            "the worker's first heartbeat",
        )
        time.sleep(2.0)  # let it reach its idle wait (LISTEN) and settle its memory
        idle_rss = worker.rss_kb()
        for i in range(20):  # warm-up jobs, not measured
            BenchStamp.enqueue({"i": i})
            time.sleep(opts.pickup_gap)
        wait_until(lambda: len(stamps()) >= 20, 30, "warm-up jobs")
        committed: dict[int, float] = {}
        for i in range(opts.pickup_jobs):
            job_id = BenchStamp.enqueue({"i": i})
            committed[int(job_id)] = time.time()
            time.sleep(opts.pickup_gap)
        wait_until(lambda: len(stamps()) >= opts.pickup_jobs + 20, 60, "all pickup jobs to start")
        started = stamps()
        latencies = [started[job_id] - at for job_id, at in committed.items()]
        busy_idle_rss = worker.rss_kb()
    finally:
        worker.stop()
    return {
        **percentiles(latencies),
        "jobs": len(latencies),
        "idle_rss_mb": round(idle_rss / 1024, 1),
        "rss_after_pickup_mb": round(busy_idle_rss / 1024, 1),
    }


def stamps() -> dict[int, float]:
    """Job id → when its ``execute`` started, as appended by ``BenchStamp``."""
    if not STAMP_FILE.exists():
        return {}
    lines = STAMP_FILE.read_text().splitlines()
    return {int(job): float(at) for job, at in (line.split() for line in lines if line)}


# -- the plain-SQL ceiling ------------------------------------------------------------------

INSERT_COLUMNS = (
    "executor, status, data, metadata, attempt, max_attempts, priority, tags, inserted_at,"
    " scheduled_at"
)


def copy_rows(cursor: Any, count: int, executor: str) -> None:
    now = datetime.now(UTC)
    with cursor.copy(f"COPY rexecutor_job ({INSERT_COLUMNS}) FROM STDIN") as copy:
        for i in range(count):
            copy.write_row((executor, "scheduled", f'{{"i": {i}}}', None, 0, 5, 0, "[]", now, now))


@contextmanager
def raw_connection(url: str, autocommit: bool = True) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=autocommit) as conn:
        yield conn


def ceiling_insert_one(opts: Options) -> dict[str, Any]:
    statement = (
        f"INSERT INTO rexecutor_job ({INSERT_COLUMNS})"
        " VALUES ('bench_noop', 'scheduled', %s::jsonb, NULL, 0, 5, 0, '[]', now(), now())"
        " RETURNING id"
    )

    def run() -> tuple[int, float]:
        reset_tables()
        with raw_connection(opts.url) as conn:
            for i in range(200):
                conn.execute(statement, [f'{{"i": {i}}}']).fetchone()
            started = time.perf_counter()
            for i in range(opts.enqueue_jobs):
                conn.execute(statement, [f'{{"i": {i}}}']).fetchone()
            return opts.enqueue_jobs, time.perf_counter() - started

    return best_rate(opts.rounds, run)


def ceiling_copy(opts: Options) -> dict[str, Any]:
    def run() -> tuple[int, float]:
        reset_tables()
        with raw_connection(opts.url, autocommit=False) as conn:
            started = time.perf_counter()
            with conn.cursor() as cursor:
                copy_rows(cursor, opts.jobs, "bench_noop")
            conn.commit()
            return opts.jobs, time.perf_counter() - started

    return best_rate(opts.rounds, run)


CLAIM_SQL = """
UPDATE rexecutor_job SET status = 'executing', attempt = attempt + 1, attempted_at = now(),
       claimed_by = 'ceiling'
 WHERE id IN (SELECT id FROM rexecutor_job
               WHERE status IN ('retryable', 'scheduled') AND executor = 'bench_noop'
                 AND scheduled_at <= now()
               ORDER BY priority, scheduled_at, id
               LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, attempt
"""
COMPLETE_SQL = """
UPDATE rexecutor_job SET status = 'complete', completed_at = now()
 WHERE id = ANY(%s) AND status = 'executing' AND claimed_by = 'ceiling'
   AND cancel_requested_at IS NULL
"""


def ceiling_drain(opts: Options) -> dict[str, Any]:
    """One connection: claim ``concurrency`` jobs, complete them in one statement, repeat (the
    round trips of one loop, not the machine: see ``ceiling_parallel`` for that)."""
    from tests.benchmarks.meter import DrainMeter, median_round

    rounds = []
    for _ in range(opts.rounds):
        reset_tables()
        prefill(opts.jobs)
        meter = DrainMeter(opts.url, os.getpid())
        done = 0
        with raw_connection(opts.url) as conn:
            meter.begin()
            meter.start()
            while True:
                rows = conn.execute(CLAIM_SQL, [opts.concurrency]).fetchall()
                if not rows:
                    break
                done += conn.execute(COMPLETE_SQL, [[r[0] for r in rows]]).rowcount
            meter.stop()
        if done != opts.jobs:
            raise RuntimeError(f"ceiling drain completed {done} of {opts.jobs}")
        figures = meter.figures(done)
        rounds.append({"jobs_per_s": figures["wall_jobs_per_s"], **figures})
    return median_round(rounds)


def ceiling_parallel_drain(opts: Options) -> dict[str, Any]:
    from tests.benchmarks import ceiling_parallel

    return ceiling_parallel.measure(
        opts.url, opts.jobs, opts.rounds, opts.concurrency, opts.concurrency, prefill, reset_tables
    )


def bench_peers(opts: Options) -> dict[str, Any]:
    from tests.benchmarks.peers import measure_peers

    return measure_peers(opts, list(PEERS))


def ceiling_pickup(opts: Options) -> dict[str, Any]:
    """A LISTEN connection woken by the insert trigger's NOTIFY claims the job at once."""
    reset_tables()
    committed: dict[int, float] = {}
    claimed: dict[int, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with raw_connection(opts.url) as listener, raw_connection(opts.url) as claimer:
            listener.execute("LISTEN rexecutor_jobs_v1")
            ready.set()
            for _ in listener.notifies(timeout=30):
                for job_id, _attempt in claimer.execute(CLAIM_SQL, [opts.concurrency]):
                    claimed[job_id] = time.time()
                if len(claimed) >= opts.pickup_jobs:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    statement = (
        f"INSERT INTO rexecutor_job ({INSERT_COLUMNS})"
        " VALUES ('bench_noop', 'scheduled', NULL, NULL, 0, 5, 0, '[]', now(), now())"
        " RETURNING id"
    )
    with raw_connection(opts.url) as conn:
        for _ in range(opts.pickup_jobs):
            (job_id,) = conn.execute(statement).fetchone()
            committed[job_id] = time.time()
            time.sleep(opts.pickup_gap)
    thread.join(30)
    latencies = [claimed[j] - at for j, at in committed.items() if j in claimed]
    if len(latencies) != opts.pickup_jobs:
        raise RuntimeError(f"ceiling pickup saw {len(latencies)} of {opts.pickup_jobs} jobs")
    return percentiles(latencies)


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import django
    import psycopg

    cpu = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    server = sql_run("SHOW server_version")[0][0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "postgresql": server,
        "synchronous_commit": sql_run("SHOW synchronous_commit")[0][0],
    }


def get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def ratio(value: Any, reference: Any) -> float | None:
    if not isinstance(value, int | float) or not isinstance(reference, int | float):
        return None
    return round(value / reference, 2) if reference else None


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system: its drain and what it cost, beside the ceilings and pgqueuer."""
    ceiling, ours, peers = results["ceiling"], results["rexecutor"], results.get("peers", {})
    insert_one, copy = get(ceiling, "insert_one", "median"), get(ceiling, "copy", "median")
    drains: list[tuple[str, Any, Any, Any, Any]] = [
        # (row, drain, enqueue one, bulk, pickup)
        ("ceiling minimal, parallel", get(ceiling, "parallel", "minimal"), None, None, None),
        ("ceiling ours, parallel", get(ceiling, "parallel", "ours"), get(ceiling, "insert_one"),
         get(ceiling, "copy"), get(ceiling, "pickup")),
        ("ceiling ours, 1 connection", get(ceiling, "drain"), None, None, None),
        *((name, get(peers, name, "drain"), get(peers, name, "enqueue_one"),
           get(peers, name, "enqueue_bulk"), get(peers, name, "pickup")) for name in PEERS),
        *((f"django-rexecutor --processes {n}", get(ours, f"drain_{n}"),
           get(ours, "enqueue_one") if n == 1 else None,
           get(ours, "enqueue_bulk") if n == 1 else None,
           get(ours, "pickup") if n == 1 else None) for n in DRAIN_PROCESSES.values()),
    ]  # fmt: skip
    minimal = get(ceiling, "parallel", "minimal", "median")
    on_ours = get(ceiling, "parallel", "ours", "median")
    pgqueuer = get(peers, "pgqueuer", "drain", "median")
    rows = []
    for name, drain, one, bulk, pickup in drains:
        rate = get(drain, "median")
        rows.append(
            {
                "row": name,
                "drain_jobs_per_s": rate,
                "of_ceiling_minimal": ratio(rate, minimal),
                "of_ceiling_ours": ratio(rate, on_ours),
                "of_pgqueuer": ratio(rate, pgqueuer),
                "worker_cpu_pct_of_core": get(drain, "worker_cpu_pct_of_core"),
                "machine_busy_pct": get(drain, "machine_busy_pct"),
                "pg_cpu_pct_of_core": get(drain, "pg_cpu_pct_of_core"),
                "worker_cpu_us_per_job": get(drain, "worker_cpu_us_per_job"),
                "db_transactions_per_job": get(drain, "db_transactions_per_job"),
                "enqueue_one_per_s": get(one, "median"),
                "enqueue_one_of_insert": ratio(get(one, "median"), insert_one),
                "enqueue_bulk_per_s": get(bulk, "median"),
                "enqueue_bulk_of_copy": ratio(get(bulk, "median"), copy),
                "pickup_p50_ms": get(pickup, "p50_ms"),
                "pickup_p95_ms": get(pickup, "p95_ms"),
                "error": get(peers, name, "error"),
            }
        )
    return rows


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value < 100:
        return f"{value:.2f}{unit}"
    return f"{value:,.0f}{unit}"


def with_ratio(value: Any, share: Any) -> str:
    return fmt(value) if share is None else f"{fmt(value)} ({share:.2f})"


def print_table(results: dict[str, Any]) -> None:
    header = (
        "row", "drain jobs/s", "/ ceiling minimal", "/ ceiling ours", "/ pgqueuer",
        "worker CPU %", "machine busy %", "PG CPU %", "CPU µs/job", "transactions/job",
        "enqueue one /s (/ INSERT)", "bulk /s (/ COPY)", "pickup p50 / p95 ms",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for r in results["summary"]:
        if r["error"]:
            rows.append((r["row"], f"failed: {r['error']}"[:60], *[""] * (len(header) - 2)))
            continue
        pickup = "—" if r["pickup_p50_ms"] is None else (
            f"{r['pickup_p50_ms']:.2f} / {r['pickup_p95_ms']:.2f}"
        )  # fmt: skip
        rows.append(
            (
                r["row"], fmt(r["drain_jobs_per_s"]), fmt(r["of_ceiling_minimal"]),
                fmt(r["of_ceiling_ours"]), fmt(r["of_pgqueuer"]),
                fmt(r["worker_cpu_pct_of_core"]), fmt(r["machine_busy_pct"]),
                fmt(r["pg_cpu_pct_of_core"]), fmt(r["worker_cpu_us_per_job"]),
                fmt(r["db_transactions_per_job"]),
                with_ratio(r["enqueue_one_per_s"], r["enqueue_one_of_insert"]),
                with_ratio(r["enqueue_bulk_per_s"], r["enqueue_bulk_of_copy"]), pickup,
            )
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.write("\n".join(lines) + "\n")
    ours = results["rexecutor"]
    checks = [
        ("enqueue_one", get(ours, "enqueue_one", "median")),
        ("enqueue_bulk", get(ours, "enqueue_bulk", "median")),
        ("drain_1", get(ours, "drain_1", "median")),
        ("pickup_p50_ms", get(ours, "pickup", "p50_ms")),
        ("pickup_p95_ms", get(ours, "pickup", "p95_ms")),
        ("rss_idle_mb", get(ours, "pickup", "idle_rss_mb")),
    ]
    verdicts = []
    for key, value in checks:
        if value is not None:
            op, bound = TARGETS[key]
            ok = value >= bound if op == ">=" else value <= bound
            verdicts.append(f"{key} {fmt(value)} {op} {bound:,g} {'ok' if ok else 'MISSED'}")
    sys.stdout.write(
        f"\nidle worker RSS (--processes 1): {fmt(get(ours, 'pickup', 'idle_rss_mb'))} MB;"
        f" peak while draining: {fmt(get(ours, 'drain_1', 'peak_rss_mb'))} MB\n"
        f"targets (issue 6): {'; '.join(verdicts) or '—'}\n"
    )


def bench_django_tasks(opts: Options) -> dict[str, Any]:
    """Django ``@task`` functions through our backend beside django-tasks-db (issue 7), in
    their own database and settings: see ``tasks_bench``."""
    from tests.benchmarks import tasks_bench

    jobs = min(opts.jobs, 1000)  # django-tasks-db drains only a few dozen tasks a second
    try:
        return {"rows": tasks_bench.run(opts.url, jobs=jobs, pickups=10), "jobs": jobs}
    except subprocess.CalledProcessError as exc:  # reported, without losing the run's table
        return {"error": f"{exc}\n{exc.stderr or ''}"[-2000:], "jobs": jobs}


def print_tasks_table(tasks: dict[str, Any] | None) -> None:
    if not tasks:
        return
    if "error" in tasks:
        sys.stdout.write(f"\nDjango @task functions: failed; {tasks['error'].splitlines()[-1]}\n")
        return
    sys.stdout.write(f"\nDjango @task functions ({tasks['jobs']:,} no-op tasks):\n\n")
    sys.stdout.write(
        "| backend | enqueue one by one, tasks/s | drain, tasks/s | pickup p50, ms |\n"
    )
    sys.stdout.write("|---|---|---|---|\n")
    for row in tasks["rows"]:
        drain = f"{row['drain_per_s']:,}" if row["drain_per_s"] else "-"
        sys.stdout.write(
            f"| {row['system']} | {row['enqueue_per_s']:,} | {drain} | {row['pickup_p50_ms']} |\n"
        )


def mariadb_child(opts: Options) -> int:
    """The MariaDB row, measured in this (child) process: its JSON goes to ``opts.json_path``."""
    create_database(opts.url, opts.synchronous_commit)
    setup_django(opts)
    from django.db import connection

    results: dict[str, Any] = {"server": connection.mysql_server_info}  # type: ignore[attr-defined]
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("enqueue", "enqueue_one", lambda: bench_enqueue_one(opts)),
        ("bulk", "enqueue_bulk", lambda: bench_enqueue_bulk(opts)),
        ("drain", "drain_1", lambda: bench_drain(opts, 1, sample_rss=False)),
        ("pickup", "pickup", lambda: bench_pickup(opts)),
    ]
    for part, key, step in steps:
        if part in opts.parts:
            sys.stderr.write(f"bench: mariadb/{key} (load {load_1min():.2f}) ...\n")
            results[key] = step()
            sys.stderr.write(f"bench: mariadb/{key} {results[key]}\n")
    reset_tables()
    opts.json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def bench_mariadb(opts: Options, argv: list[str] | None) -> dict[str, Any]:
    """Run this script as the MariaDB child (its own Django, on ``--mysql-url``)."""
    assert opts.mysql_url is not None
    out = opts.json_path.with_name("bench-mariadb.json")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    subprocess.run(
        [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
         "--mariadb-child", "--json", str(out)],
        env=env, check=True,
    )  # fmt: skip
    return dict(json.loads(out.read_text()))


def print_mariadb_row(results: dict[str, Any] | None) -> None:
    if not results:
        return

    def get(*path: str) -> str:
        node: Any = results
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return "—" if node is None else f"{node:,}"

    sys.stdout.write(f"\nMariaDB ({results.get('server', '?')}), same run:\n\n")
    sys.stdout.write(
        "| database | enqueue one by one, jobs/s | bulk enqueue, jobs/s | drain, 1 worker process,"
        " jobs/s | pickup p50 / p95, ms |\n|---|---|---|---|---|\n"
    )
    sys.stdout.write(
        f"| MariaDB | {get('enqueue_one', 'median')} | {get('enqueue_bulk', 'median')}"
        f" | {get('drain_1', 'median')} | {get('pickup', 'p50_ms')} / {get('pickup', 'p95_ms')} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.mariadb_child:
        return mariadb_child(opts)
    create_database(opts.url, opts.synchronous_commit)
    setup_django(opts)
    results: dict[str, Any] = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": {
            "jobs": opts.jobs,
            "enqueue_jobs": opts.enqueue_jobs,
            "concurrency": opts.concurrency,
            "pickup_jobs": opts.pickup_jobs,
            "pickup_gap_ms": opts.pickup_gap * 1000,
            "rounds": opts.rounds,
            "parts": list(opts.parts),
            "worker_args": opts.worker_args,
        },
        "load_1min_before": load_1min(),
        "rexecutor": {},
        "ceiling": {},
    }
    ours, ceiling = results["rexecutor"], results["ceiling"]
    steps: list[tuple[str, dict[str, Any], str, Callable[[], dict[str, Any]]]] = [
        ("ceiling", ceiling, "insert_one", lambda: ceiling_insert_one(opts)),
        ("ceiling", ceiling, "copy", lambda: ceiling_copy(opts)),
        ("ceiling", ceiling, "drain", lambda: ceiling_drain(opts)),
        ("ceiling", ceiling, "parallel", lambda: ceiling_parallel_drain(opts)),
        ("ceiling", ceiling, "pickup", lambda: ceiling_pickup(opts)),
        ("peers", results, "peers", lambda: bench_peers(opts)),
        ("enqueue", ours, "enqueue_one", lambda: bench_enqueue_one(opts)),
        ("bulk", ours, "enqueue_bulk", lambda: bench_enqueue_bulk(opts)),
        *(
            (part, ours, f"drain_{n}", lambda n=n: bench_drain(opts, n, sample_rss=n == 1))
            for part, n in DRAIN_PROCESSES.items()
        ),
        ("pickup", ours, "pickup", lambda: bench_pickup(opts)),
        ("tasks", results, "django_tasks", lambda: bench_django_tasks(opts)),
    ]
    for part, target, key, step in steps:
        if part not in opts.parts:
            continue
        sys.stderr.write(f"bench: {part}/{key} (load {load_1min():.2f}) ...\n")
        started = time.perf_counter()
        target[key] = step()
        sys.stderr.write(
            f"bench: {part}/{key} {target[key]} in {time.perf_counter() - started:.1f} s\n"
        )
    reset_tables()
    if opts.mysql_url:
        sys.stderr.write("bench: the MariaDB row ...\n")
        results["mariadb"] = bench_mariadb(opts, argv)
    results["load_1min_after"] = load_1min()
    results["summary"] = summary(results)
    results["command"] = opts.command
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print_tasks_table(results.get("django_tasks"))
    print_mariadb_row(results.get("mariadb"))
    m = results["machine"]
    sys.stdout.write(
        f"\n{m['cpu']} ({m['cores']} cores), PostgreSQL {m['postgresql']}, Python {m['python']},"
        f" Django {m['django']}; load {results['load_1min_before']:.2f} → "
        f"{results['load_1min_after']:.2f}; synchronous_commit"
        f" {m['synchronous_commit']}; JSON: {opts.json_path}\ncommand: {opts.command}\n"
    )
    if not opts.keep_logs:
        for log in (REPO / "artifacts").glob("bench-worker-*.log"):
            log.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
