"""Peer rows of the benchmark: other PostgreSQL job queues, measured in the same run as ours.

Each peer is driven through its public API and its own worker command, in a database of its
own on the same server (``<bench database>_<peer>``, created afresh), with the same settings
as our rows: ``--concurrency`` slots in one worker process, no-op jobs. Measured per peer:

* enqueue one by one and in bulk, through the peer's async API on one connection;
* drain: the worker is started first and left idle, then ``--jobs`` jobs are enqueued in one
  bulk call; timed from that commit until the last job is done (polled every 10 ms), with the
  figures of ``meter.DrainMeter`` (worker and PostgreSQL CPU, machine busy share, database
  transactions per job: the bulk enqueue's own and the polls are not counted);
* pickup: an idle worker, one job at a time, from the enqueue's commit to ``execute``'s start.

Needs the ``bench`` extra (``pip install -e '.[dev,bench]'``, which ``make bench`` does)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from tests.benchmarks.meter import DrainMeter, median_round, transactions

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
STAMPS = ARTIFACTS / "bench-peer-stamps.txt"


class Settings(Protocol):
    url: str
    jobs: int
    enqueue_jobs: int
    concurrency: int
    pickup_jobs: int
    pickup_gap: float
    rounds: int
    synchronous_commit: str


@dataclass
class Peer:
    """How to set up, feed, run and watch one peer."""

    name: str
    install: Callable[[str], None]
    enqueue_one: Callable[[str, int], Coroutine[Any, Any, None]]
    enqueue_bulk: Callable[[str, int], Coroutine[Any, Any, None]]
    #: ``(url, count, gap, committed)``: enqueue ``count`` stamping jobs keyed 0…count-1, one
    #: every ``gap`` seconds on one connection, noting in ``committed`` when each enqueue
    #: returned.
    feed_stamps: Callable[[str, int, float, dict[int, float]], Coroutine[Any, Any, None]]
    worker: Callable[[str, int], list[str]]
    done_sql: str


# -- databases and processes ------------------------------------------------------------------


def peer_url(url: str, peer: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path}_{peer}"))


def fresh_database(url: str, synchronous_commit: str) -> None:
    """Create the peer's database afresh, with the ``synchronous_commit`` of ours."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}')


def scalar(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PEER_DSN"] = url
    env["REXECUTOR_BENCH_STAMPS"] = str(STAMPS)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_quietly(command: list[str], url: str) -> None:
    done = subprocess.run(command, env=child_env(url), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def bin_path(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class Process:
    def __init__(self, command: list[str], url: str, label: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"bench-peer-{label}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, env=child_env(url), stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")


# -- the measurements ---------------------------------------------------------------------------


def rate(rounds: int, run: Callable[[], float], count: int) -> dict[str, Any]:
    rates = [count / run() for _ in range(rounds)]
    return {"rates": [round(r) for r in rates], "median": round(statistics.median(rates))}


def timed(coroutine: Callable[[], Awaitable[None]]) -> float:
    async def go() -> float:
        started = time.perf_counter()
        await coroutine()
        return time.perf_counter() - started

    return asyncio.run(go())


def measure_peer(peer: Peer, opts: Settings) -> dict[str, Any]:
    url = peer_url(opts.url, peer.name)
    fresh_database(url, opts.synchronous_commit)
    peer.install(url)
    out: dict[str, Any] = {}
    out["enqueue_one"] = rate(
        opts.rounds,
        lambda: timed(lambda: peer.enqueue_one(url, opts.enqueue_jobs)),
        opts.enqueue_jobs,
    )
    out["enqueue_bulk"] = rate(
        opts.rounds, lambda: timed(lambda: peer.enqueue_bulk(url, opts.jobs)), opts.jobs
    )
    out["drain"] = measure_drain(peer, url, opts)
    out["pickup"] = measure_pickup(peer, url, opts)
    return out


def reset(url: str, peer: Peer) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in peer_tables(peer):
            conn.execute(f"TRUNCATE {table}")


def peer_tables(peer: Peer) -> list[str]:
    return {
        "pgqueuer": ["pgqueuer", "pgqueuer_log", "pgqueuer_statistics"],
        "procrastinate": ["procrastinate_jobs CASCADE"],
    }[peer.name]


def measure_drain(peer: Peer, url: str, opts: Settings) -> dict[str, Any]:
    import psycopg

    reset(url, peer)
    xacts = transactions(url)
    asyncio.run(peer.enqueue_bulk(url, opts.jobs))
    bulk_xacts = transactions(url) - xacts  # what the bulk enqueue alone costs, not the drain
    rounds: list[dict[str, Any]] = []
    for round_no in range(opts.rounds):
        reset(url, peer)
        worker = Process(peer.worker(url, opts.concurrency), url, f"{peer.name}-drain{round_no}")
        meter = DrainMeter(url, worker.proc.pid)
        polls = 0
        try:
            time.sleep(3.0)  # started and idle: waiting for work
            worker.check_alive()
            meter.begin()
            with psycopg.connect(url, autocommit=True) as conn:
                asyncio.run(peer.enqueue_bulk(url, opts.jobs))
                meter.start()
                deadline = time.perf_counter() + max(120, opts.jobs / 200)
                while True:
                    polls += 1
                    if conn.execute(peer.done_sql).fetchone()[0] >= opts.jobs:  # type: ignore[index]
                        break
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"{peer.name} did not drain {opts.jobs} jobs in time")
                    worker.check_alive()
                    time.sleep(0.01)
                meter.stop()
        finally:
            worker.stop()  # its backends exit, which sends their last counts to the statistics
        figures = meter.figures(opts.jobs, own_transactions=polls + bulk_xacts)
        rounds.append({"jobs_per_s": figures["wall_jobs_per_s"], **figures})
    return {"bulk_enqueue_transactions": bulk_xacts, **median_round(rounds)}


def measure_pickup(peer: Peer, url: str, opts: Settings) -> dict[str, Any]:
    reset(url, peer)
    STAMPS.parent.mkdir(parents=True, exist_ok=True)
    STAMPS.unlink(missing_ok=True)
    worker = Process(peer.worker(url, opts.concurrency), url, f"{peer.name}-pickup")
    committed: dict[int, float] = {}
    try:
        time.sleep(3.0)
        worker.check_alive()

        asyncio.run(peer.feed_stamps(url, opts.pickup_jobs + 20, opts.pickup_gap, committed))
        for i in range(20):  # warm-up jobs, not measured
            committed.pop(i, None)
        deadline = time.monotonic() + 60
        while len(read_stamps()) < opts.pickup_jobs + 20:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name}: not every pickup job started")
            time.sleep(0.05)
    finally:
        worker.stop()
    started = read_stamps()
    latencies = sorted(started[i] - at for i, at in committed.items())
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "jobs": len(latencies),
    }


def read_stamps() -> dict[int, float]:
    if not STAMPS.exists():
        return {}
    lines = STAMPS.read_text().splitlines()
    return {int(key): float(at) for key, at in (line.split() for line in lines if line)}


# -- pgqueuer -------------------------------------------------------------------------------


def pgqueuer_peer() -> Peer:
    async def queries(url: str) -> tuple[Any, Any]:
        import asyncpg  # type: ignore[import-untyped]
        from pgqueuer import AsyncpgDriver, Queries

        connection = await asyncpg.connect(url)
        return connection, Queries(AsyncpgDriver(connection))

    async def one(url: str, count: int) -> None:
        connection, q = await queries(url)
        try:
            for i in range(count):
                await q.enqueue("noop", str(i).encode())
        finally:
            await connection.close()

    async def bulk(url: str, count: int) -> None:
        connection, q = await queries(url)
        try:
            await q.enqueue(["noop"] * count, [str(i).encode() for i in range(count)], [0] * count)
        finally:
            await connection.close()

    async def stamps(url: str, count: int, gap: float, committed: dict[int, float]) -> None:
        connection, q = await queries(url)
        try:
            for i in range(count):
                await q.enqueue("stamp", str(i).encode())
                committed[i] = time.time()
                await asyncio.sleep(gap)
        finally:
            await connection.close()

    return Peer(
        name="pgqueuer",
        install=lambda url: run_quietly([bin_path("pgq"), "--pg-dsn", url, "install"], url),
        enqueue_one=one,
        enqueue_bulk=bulk,
        feed_stamps=stamps,
        worker=lambda url, slots: [
            sys.executable,
            "-c",
            f"from tests.benchmarks.peer_apps import run_pgqueuer; run_pgqueuer({slots})",
        ],
        # Finished jobs leave the queue table for the log.
        done_sql="SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    )


# -- Procrastinate ----------------------------------------------------------------------------


def procrastinate_peer() -> Peer:
    app_path = "tests.benchmarks.peer_apps.procrastinate_app"

    def app(url: str) -> Any:
        from tests.benchmarks.peer_apps import make_procrastinate_app

        return make_procrastinate_app(url)

    async def one(url: str, count: int) -> None:
        application = app(url)
        async with application.open_async():
            task = application.tasks["noop"]
            for i in range(count):
                await task.defer_async(i=i)

    async def bulk(url: str, count: int) -> None:
        application = app(url)
        async with application.open_async():
            await application.tasks["noop"].batch_defer_async(*({"i": i} for i in range(count)))

    async def stamps(url: str, count: int, gap: float, committed: dict[int, float]) -> None:
        application = app(url)
        async with application.open_async():
            for i in range(count):
                await application.tasks["stamp"].defer_async(i=i)
                committed[i] = time.time()
                await asyncio.sleep(gap)

    return Peer(
        name="procrastinate",
        install=lambda url: run_quietly(
            [bin_path("procrastinate"), "--app", app_path, "schema", "--apply"], url
        ),
        enqueue_one=one,
        enqueue_bulk=bulk,
        feed_stamps=stamps,
        worker=lambda url, slots: [
            bin_path("procrastinate"),
            "--app",
            app_path,
            "worker",
            "--concurrency",
            str(slots),
        ],
        done_sql="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    )


PEERS: dict[str, Callable[[], Peer]] = {
    "pgqueuer": pgqueuer_peer,
    "procrastinate": procrastinate_peer,
}


def measure_peers(opts: Settings, names: list[str]) -> dict[str, Any]:
    """Every peer of ``names``; a peer that cannot run (not installed, failed) is reported as
    such, never silently left out."""
    results: dict[str, Any] = {}
    for name in names:
        try:
            results[name] = measure_peer(PEERS[name](), opts)
        except Exception as exc:  # noqa: BLE001 - one peer's failure must not lose the run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"peer {name}: {results[name]}", file=sys.stderr, flush=True)
    return results
