"""How long a big workflow takes to enqueue: a fan-out of N steps (10,000 by default) plus a
final callback waiting for all of them, through the public API (``Workflow.add_many``, then
``Workflow.enqueue()``), against PostgreSQL.

Run it with ``DATABASE_URL=postgres://... python tests/benchmarks/workflows.py``. It works in
its own database (``rexecutor_bench_workflows`` on the server of ``DATABASE_URL``, created
and migrated here), and prints, per run, the time to build the steps (the builders and the
graph checks, in Python) and to store them (one transaction: the jobs by ``COPY``, the edges
in bulk), plus the median. ``--release`` also times finishing every step the way workers
acknowledge them, and checks that the callback is released once, by the last one."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "testproject", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/rexecutor"
TABLES = "rexecutor_job_error, rexecutor_job_dependency, rexecutor_job"


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES}")
        cursor.execute("VACUUM ANALYZE rexecutor_job")


def one_run(steps: int) -> tuple[float, float, str]:
    from demo.jobs import RecordEffect
    from django_rexecutor import Workflow

    started = time.perf_counter()
    wf = Workflow("fan-out")
    fan = wf.add_many(RecordEffect.builder().with_data({"n": n}) for n in range(steps))
    wf.add(RecordEffect.builder(), name="callback", after=fan, run_if="finished")
    built = wf.steps()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    from django_rexecutor.backends import get_backend

    ids = get_backend().enqueue_workflow("bench-" + str(time.time_ns()), built)
    store_s = time.perf_counter() - started
    assert len(ids) == steps + 1
    return build_s, store_s, str(built[0].job.executor)


def release_run(steps: int) -> float:
    """Claim and acknowledge every step as workers do (batches of 100), and check that the
    callback became due exactly when the last step finished."""
    from demo.jobs import RecordEffect
    from django_rexecutor import JobStatus, Workflow
    from django_rexecutor.backends import get_backend
    from django_rexecutor.backends.values import Claim

    reset()
    wf = Workflow("fan-out")
    fan = wf.add_many(RecordEffect.builder() for _ in range(steps))
    wf.add(RecordEffect.builder(), name="callback", after=fan, run_if="finished")
    run = wf.enqueue()
    backend = get_backend()
    started = time.perf_counter()
    done = 0
    while done < steps:
        jobs = backend.claim_jobs("bench", {RecordEffect.name: 100}, 100)
        assert jobs and all(j.step != "callback" for j in jobs)
        done += backend.complete_jobs([Claim.of(j) for j in jobs])
    took = time.perf_counter() - started
    assert backend.get_job(run["callback"]).status == JobStatus.SCHEDULED
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default="rexecutor_bench_workflows")
    parser.add_argument("--release", action="store_true", help="also time finishing the steps")
    args = parser.parse_args()
    parts = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_URL)
    url = urlunsplit(parts._replace(path="/" + args.database))
    create_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.benchmarks.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    totals = []
    print(f"workflow of {args.steps:,} steps + 1 callback ({args.steps:,} edges), PostgreSQL")
    for n in range(args.runs):
        reset()
        build_s, store_s, _ = one_run(args.steps)
        totals.append(build_s + store_s)
        print(f"  run {n + 1}: build {build_s:.2f} s, store {store_s:.2f} s")
    print(f"  median enqueue (build + store): {statistics.median(totals):.2f} s")
    if args.release:
        took = release_run(args.steps)
        rate = args.steps / took
        print(
            f"  finishing the {args.steps:,} steps in batches of 100: {took:.2f} s ({rate:,.0f}/s)"
        )
    reset()


if __name__ == "__main__":
    main()
