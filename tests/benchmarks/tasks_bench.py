"""Benchmark of Django's ``@task`` functions: ``RexecutorTaskBackend`` beside django-tasks-db,
same machine, same PostgreSQL, same run.

Run standalone (``DATABASE_URL=postgres://... python tests/benchmarks/tasks_bench.py``) or from
``bench.py`` through ``run()``. It works in its own database (``rexecutor_tasks_bench``), and
for each backend measures:

* enqueue: ``task.enqueue()`` one by one, autocommit;
* drain: N pre-enqueued no-op tasks run by one worker process (ours:
  ``rexecutor_worker --burst``, default concurrency; django-tasks-db: ``db_worker --batch``),
  timed from the first start to the last finish as recorded in the database;
* pickup: enqueue one task on an idle worker, time from its enqueue to its start (both stamped
  by this host's clock in the database), p50 over several tasks.

Needs Django 6 and ``pip install django-tasks-db``."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
MANAGE_PY = REPO / "testproject" / "manage.py"
SETTINGS = "tests.benchmarks.tasks_settings"
DATABASE = "rexecutor_tasks_bench"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/rexecutor"


def run(url: str = DEFAULT_URL, jobs: int = 2000, pickups: int = 10) -> list[dict[str, Any]]:
    """Run the benchmark in a child process (it needs its own settings); returns its rows."""
    out = subprocess.run(
        [sys.executable, __file__, "--url", url, "--jobs", str(jobs), "--pickups", str(pickups),
         "--json", "-"],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _database_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + DATABASE))


def _recreate_database(url: str, synchronous_commit: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
        # As bench.py does (see docs/performance.md): off by default, the same for both.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                sql.Identifier(DATABASE), sql.Literal(synchronous_commit)
            )
        )


def _child_env(url: str) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DATABASE_URL=_database_url(url))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "testproject")])
    return env


class System:
    """One backend under test: how to enqueue, run a worker and read the timings."""

    name: str
    table: str
    started: str
    finished: str
    enqueued: str

    def enqueue(self) -> str:
        """Enqueue one no-op task; returns its result id."""
        raise NotImplementedError

    def worker_args(self, burst: bool) -> list[str]:
        raise NotImplementedError


class Rexecutor(System):
    name = "@task via RexecutorTaskBackend"
    table, started, finished, enqueued = (
        "rexecutor_job",
        "attempted_at",
        "completed_at",
        "inserted_at",
    )

    def enqueue(self) -> str:
        from tests.benchmarks.bench_tasks import rexecutor_noop

        return rexecutor_noop.enqueue().id

    def worker_args(self, burst: bool) -> list[str]:
        args = ["rexecutor_worker", "--executor", "django_tasks.default", "--no-cron"]
        return [*args, "--no-pruner", "-v", "0", *(["--burst"] if burst else [])]


class TasksDB(System):
    name = "@task via django-tasks-db"
    table = "django_tasks_database_dbtaskresult"
    started, finished, enqueued = "started_at", "finished_at", "enqueued_at"

    def enqueue(self) -> str:
        from tests.benchmarks.bench_tasks import tasks_db_noop

        return tasks_db_noop.enqueue().id

    def worker_args(self, burst: bool) -> list[str]:
        args = ["db_worker", "--backend", "tasks_db", "--no-reload", "--no-startup-delay"]
        return [*args, "-v", "0", *(["--batch"] if burst else [])]


def _query(sql: str, params: list[Any] | None = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE rexecutor_job_error, rexecutor_job, rexecutor_worker,"
            " django_tasks_database_dbtaskresult"
        )


def measure(system: System, jobs: int, pickups: int, env: dict[str, str]) -> dict[str, Any]:
    _reset()
    start = time.perf_counter()
    for _ in range(jobs):
        system.enqueue()
    enqueue_rate = jobs / (time.perf_counter() - start)

    worker = [sys.executable, str(MANAGE_PY), *system.worker_args(burst=True)]
    subprocess.run(worker, env=env, check=True, timeout=600)
    done, span = _query(
        f"SELECT count({system.finished}),"
        f" EXTRACT(EPOCH FROM max({system.finished}) - min({system.started})) FROM {system.table}"
    )
    assert done == jobs, f"{system.name}: {done} of {jobs} tasks finished"

    _reset()
    idle = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), *system.worker_args(burst=False)], env=env
    )
    try:
        time.sleep(3)  # let it start and go idle
        latencies = []
        for _ in range(pickups):
            result_id = system.enqueue()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = _query(
                    f"SELECT EXTRACT(EPOCH FROM {system.started} - {system.enqueued})"
                    f" FROM {system.table} WHERE id = %s AND {system.finished} IS NOT NULL",
                    [result_id],
                )
                if row:
                    latencies.append(float(row[0]) * 1000)
                    break
                time.sleep(0.005)
            time.sleep(0.2)
    finally:
        idle.terminate()
        idle.wait(30)
    return {
        "system": system.name,
        "enqueue_per_s": round(enqueue_rate),
        "drain_per_s": round(jobs / float(span)) if span else None,
        "pickup_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "jobs": jobs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--pickups", type=int, default=10)
    parser.add_argument("--synchronous-commit", default="off", choices=["on", "off"])
    parser.add_argument(
        "--json", default=None, help="write rows as JSON to this path ('-': stdout)"
    )
    options = parser.parse_args(argv)

    _recreate_database(options.url, options.synchronous_commit)
    env = _child_env(options.url)
    os.environ.update(env)
    for path in env["PYTHONPATH"].split(os.pathsep):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    rows = [
        measure(system, options.jobs, options.pickups, env) for system in (Rexecutor(), TasksDB())
    ]
    if options.json == "-":
        print(json.dumps(rows))
        return 0
    print(f"{'system':<34} {'enqueue/s':>10} {'drain/s':>9} {'pickup p50':>11}")
    for row in rows:
        print(
            f"{row['system']:<34} {row['enqueue_per_s']:>10} {row['drain_per_s']:>9}"
            f" {row['pickup_p50_ms']:>9}ms"
        )
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
