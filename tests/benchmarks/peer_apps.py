"""The peers' applications the benchmark drives through their own worker commands.

Each peer gets the same two jobs as ours: a no-op, and one that appends the wall-clock time at
which it started to the file named by ``REXECUTOR_BENCH_STAMPS`` (see ``jobs.BenchStamp``).
The connection string comes from ``PEER_DSN``. Imported only by the peers' processes: the
peers are development dependencies of the benchmark (the ``bench`` extra), nothing else."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

STAMP_FILE_ENV = "REXECUTOR_BENCH_STAMPS"
DSN_ENV = "PEER_DSN"


def stamp(job_id: Any) -> None:
    started = time.time()
    fd = os.open(os.environ[STAMP_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {started!r}\n".encode())
    finally:
        os.close(fd)


# -- pgqueuer: `pgq run tests.benchmarks.peer_apps:pgqueuer_factory` -----------------------


@asynccontextmanager
async def pgqueuer_factory() -> AsyncIterator[Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, PgQueuer

    connection = await asyncpg.connect(os.environ[DSN_ENV])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Any) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp_job(job: Any) -> None:
        stamp(job.payload.decode())

    try:
        yield pgq
    finally:
        await connection.close()


# -- Procrastinate: `procrastinate --app tests.benchmarks.peer_apps.procrastinate_app` ------


def make_procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(i: int) -> None:
        return None

    @app.task(name="stamp")
    async def stamp_job(i: int) -> None:
        stamp(i)

    return app


#: What the ``procrastinate`` command loads (``--app``); it needs ``PEER_DSN``.
procrastinate_app = make_procrastinate_app(os.environ[DSN_ENV]) if os.environ.get(DSN_ENV) else None


def run_pgqueuer(slots: int) -> None:
    """pgqueuer's worker as its ``pgq run`` command starts it (``pgqueuer.run``, the function
    behind the command): the command itself fails to start with the typer release installed
    beside it (its log-level option arrives as a string)."""
    import asyncio

    import pgqueuer

    asyncio.run(
        pgqueuer.run(
            "tests.benchmarks.peer_apps:pgqueuer_factory",
            # At most ``slots`` jobs at once, as our worker's --concurrency; pgqueuer requires
            # its concurrency to be at least twice its batch.
            batch_size=max(1, slots // 2),
            max_concurrent_tasks=slots,
        )
    )
