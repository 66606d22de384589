"""A table of a million jobs on PostgreSQL: rescue runs in bounded batches, and the dashboard
reads bounded parts of the table instead of aggregating every row.

One module-scoped table, loaded with ``COPY`` and analyzed once, serves every test here; each
test runs in a transaction that is rolled back, so none sees another's changes."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_rexecutor.admin import dashboard
from django_rexecutor.backends.django import observing
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import JobStatus
from tests.test_admin_helpers import fast_password_hashing  # noqa: F401

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

EXECUTORS = [f"big.executor_{n}" for n in range(10)]
#: How many jobs of each status the table holds (1,000,000 in all).
MIX = {
    JobStatus.COMPLETE: 900_000,
    JobStatus.DISCARDED: 30_000,
    JobStatus.CANCELLED: 10_000,
    JobStatus.SCHEDULED: 5_000,
    JobStatus.RETRYABLE: 5_000,
    JobStatus.EXECUTING: 50_000,  # all left by dead workers: orphans
}
COLUMNS = (
    "executor, status, attempt, max_attempts, priority, tags, inserted_at, scheduled_at,"
    " attempted_at, completed_at, cancelled_at, discarded_at, claimed_by"
)


def copy_lines() -> Iterator[str]:
    """The table's rows in COPY's text format, finished jobs spread over the last 30 days."""
    now = datetime.now(UTC)
    n = 0
    for status, count in MIX.items():
        for i in range(count):
            n += 1
            at = (now - timedelta(seconds=(n * 2.6) % 2_592_000)).isoformat()
            done = {
                JobStatus.COMPLETE: (at, r"\N", r"\N"),
                JobStatus.CANCELLED: (r"\N", at, r"\N"),
                JobStatus.DISCARDED: (r"\N", r"\N", at),
            }.get(status, (r"\N", r"\N", r"\N"))
            attempt = 0 if status == JobStatus.SCHEDULED else 1 + i % 3
            worker = f"dead-worker-{i % 5}" if status == JobStatus.EXECUTING else r"\N"
            tags = json.dumps(["big"] if i % 10 == 0 else [])
            row = (
                EXECUTORS[n % len(EXECUTORS)], status.value, str(attempt), "3", str(i % 3),
                tags, at, at, at if attempt else r"\N", *done, worker,
            )  # fmt: skip
            yield "\t".join(row) + "\n"


@pytest.fixture(scope="module")
def million_jobs(django_db_setup: None, django_db_blocker: Any) -> Iterator[int]:
    """A committed table of 1,000,000 jobs, analyzed so the planner knows its size."""
    with django_db_blocker.unblock():
        raw = connection.cursor().connection  # psycopg's own, for COPY
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {JobRecord._meta.db_table} ({COLUMNS}) FROM STDIN") as copy:
                buffer = io.StringIO()
                for number, line in enumerate(copy_lines(), 1):
                    buffer.write(line)
                    if number % 50_000 == 0:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
            cursor.execute(f"ANALYZE {JobRecord._meta.db_table}")
        raw.commit()
        yield sum(MIX.values())
        with raw.cursor() as cursor:
            cursor.execute(f"TRUNCATE {JobRecord._meta.db_table}, {JobErrorRecord._meta.db_table}")
        raw.commit()


@pytest.mark.django_db
def test_a_big_rescue_runs_in_short_bounded_batches(million_jobs: int) -> None:
    backend = DjangoBackend()
    batches: list[tuple[int, float]] = []
    rescue_batch = backend._rescue_batch

    def timed(after: timedelta) -> tuple[int, list[int]]:
        started = time.monotonic()
        read, rescued = rescue_batch(after)
        batches.append((read, time.monotonic() - started))
        return read, rescued

    backend._rescue_batch = timed  # type: ignore[method-assign]
    started = time.monotonic()
    rescued = backend.rescue_orphaned_jobs(timedelta(seconds=30))
    took = time.monotonic() - started
    orphans = MIX[JobStatus.EXECUTING]
    assert len(rescued) == len(set(rescued)) == orphans
    assert not JobRecord.objects.filter(status=JobStatus.EXECUTING).exists()
    assert JobErrorRecord.objects.filter(error_type="orphaned").count() == orphans
    # 50 full batches and a last empty one; each a short transaction holding at most
    # rescue_batch_size rows.
    assert max(read for read, _ in batches) == backend.rescue_batch_size
    assert len(batches) == orphans // backend.rescue_batch_size + 1
    assert max(seconds for _, seconds in batches) < 1.0, batches
    assert took < 20, took


def rows_read(sql: str, params: Any) -> int:
    """How many rows of the job table a query's plan really read (EXPLAIN ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> int:
        own = 0
        if node.get("Relation Name") == JobRecord._meta.db_table:
            loops = node.get("Actual Loops", 1)
            own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan[0]["Plan"])


@pytest.mark.django_db
def test_the_dashboard_reads_no_more_than_the_queue_and_a_sample(
    million_jobs: int, admin_client: Client
) -> None:
    url = reverse("admin:django_rexecutor_dashboard") + "?partial=1"
    admin_client.get(url)  # warm up (session, permissions, caches)
    started = time.monotonic()
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url)
    took = time.monotonic() - started
    assert response.status_code == 200
    assert "rx-estimated" in response.text, "finished jobs are marked as estimated"
    queue = sum(MIX[s] for s in (JobStatus.SCHEDULED, JobStatus.RETRYABLE, JobStatus.EXECUTING))
    table = JobRecord._meta.db_table
    # The queries as sent (parameters bound), re-run under EXPLAIN ANALYZE.
    job_queries = [
        q["sql"]
        for q in captured.captured_queries
        if f'"{table}"' in q["sql"] or f" {table} " in q["sql"]
    ]
    assert job_queries
    for sql in job_queries:
        read = rows_read(sql, None)
        assert read <= queue + 3 * observing.SAMPLE_ROWS, (read, sql)
    assert took < 3, took
    # The numbers: waiting and running jobs exact, finished ones close to the truth.
    rows, estimated = dashboard.status_counts("default", datetime.now(UTC))
    assert estimated
    totals: dict[str, int] = {}
    for row in rows:
        for status, n in row.counts.items():
            totals[status] = totals.get(status, 0) + n
    for status in (JobStatus.SCHEDULED, JobStatus.RETRYABLE, JobStatus.EXECUTING):
        assert totals[status] == MIX[status]
    assert abs(totals[JobStatus.COMPLETE] - MIX[JobStatus.COMPLETE]) < 0.05 * million_jobs
