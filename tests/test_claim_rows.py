"""The Django backend's claim and reads: the database clock decides what is due, and a row
that cannot become a ``Job`` fails alone, named, instead of failing everything read with it."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_rexecutor import DjangoBackend, Executor, Job, JobStatus, Where
from django_rexecutor.backends.base import EnqueuableJob
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import ErrorType
from tests.bad_rows import BAD_VALUES, NO_INFINITE_TIMESTAMPS, POSTGRES_BAD_VALUES, corrupt

pytestmark = pytest.mark.django_db

TABLE = JobRecord._meta.db_table


class Ledger(Executor):
    name = "test_claim_rows.ledger"
    max_attempts = 1

    def execute(self, job: Job) -> None:
        pass


def enqueue(scheduled_at=None, **fields) -> int:  # type: ignore[no-untyped-def]
    job = EnqueuableJob(
        executor=Ledger.name,
        data=fields.get("data"),
        metadata=None,
        max_attempts=1,
        scheduled_at=scheduled_at or timezone.now(),
        tags=(),
        priority=fields.get("priority", 0),
    )
    return int(DjangoBackend().enqueue(job))


def bad_cases() -> list[object]:
    return [pytest.param(*case, id=name) for name, case in BAD_VALUES.items()] + [
        pytest.param(*case, id=name, marks=pytest.mark.postgres_only)
        for name, case in POSTGRES_BAD_VALUES.items()
    ]


@pytest.fixture
def frozen_clock() -> Iterator[mock.MagicMock]:
    """This process's clocks, to move in a test (the database's stays right)."""
    real_now, real_time = timezone.now, time.time
    with (
        mock.patch("django.utils.timezone.now") as now,
        mock.patch("time.time") as wall,
    ):
        now.offset = timedelta(0)
        now.side_effect = lambda: real_now() + now.offset
        wall.side_effect = lambda: real_time() + now.offset.total_seconds()
        yield now


# -- the database clock ------------------------------------------------------------------------
def test_a_worker_clock_ten_minutes_fast_does_not_claim_jobs_due_in_five(frozen_clock) -> None:
    later = enqueue(timezone.now() + timedelta(minutes=5))
    frozen_clock.offset = timedelta(minutes=10)
    assert DjangoBackend().claim_jobs("fast-clock", {Ledger.name: 5}, 5) == []
    assert JobRecord.objects.get(pk=later).status == JobStatus.SCHEDULED


def test_a_worker_clock_a_minute_slow_still_claims_due_jobs(frozen_clock) -> None:
    due = enqueue(timezone.now() - timedelta(milliseconds=10))
    frozen_clock.offset = timedelta(seconds=-60)
    [job] = DjangoBackend().claim_jobs("slow-clock", {Ledger.name: 5}, 5)
    assert job.id == due
    # attempted_at is the database's time too, not the slow clock's.
    frozen_clock.offset = timedelta(0)
    assert abs(timezone.now() - job.attempted_at) < timedelta(seconds=5)
    assert JobRecord.objects.get(pk=due).attempted_at == job.attempted_at


def test_a_job_enqueued_a_moment_ago_is_due() -> None:
    # SQLite's clock has milliseconds, stored times microseconds: a job enqueued within the
    # current millisecond must be due all the same.
    for _ in range(20):
        job_id = enqueue()
        assert [j.id for j in DjangoBackend().claim_jobs("w", {Ledger.name: 1}, 1)] == [job_id]


# -- unreadable rows ---------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "value", "field", "words"), bad_cases())
def test_an_unreadable_claimed_row_is_discarded_alone(column, value, field, words) -> None:
    good_before = enqueue(priority=0)
    bad = enqueue(priority=0)
    good_after = enqueue(priority=0)
    corrupt(bad, column, value)
    jobs = DjangoBackend().claim_jobs("worker-1", {Ledger.name: 10}, 10)
    # The good jobs are claimed as usual, on their first attempt.
    assert [j.id for j in jobs] == [good_before, good_after]
    assert [j.attempt for j in jobs] == [1, 1]
    status, claimed_by = JobRecord.objects.values_list("status", "claimed_by").get(pk=bad)
    assert status == JobStatus.DISCARDED
    [error] = JobErrorRecord.objects.filter(job_id=bad)
    assert error.error_type == ErrorType.UNREADABLE
    assert field in error.message and words in error.message, error.message
    assert (error.attempt, claimed_by) == (1, "worker-1")


@pytest.mark.parametrize(("column", "value", "field", "words"), bad_cases())
def test_queries_return_an_unreadable_row_with_its_problem(column, value, field, words) -> None:
    good = enqueue(data={"n": 1})
    bad = enqueue(data={"n": 2})
    corrupt(bad, column, value)
    jobs = Ledger.query_jobs()
    assert [j.id for j in jobs] == [good, bad]
    assert jobs[0].unreadable == {}
    assert list(jobs[1].unreadable) == [field]
    assert words in jobs[1].unreadable[field]
    assert Ledger.get_job(bad).unreadable == jobs[1].unreadable
    # The fields that could be read are all there.
    assert (jobs[1].executor, jobs[1].status) == (Ledger.name, JobStatus.SCHEDULED)


@pytest.mark.skipif(connection.vendor == "mysql", reason=NO_INFINITE_TIMESTAMPS)
def test_a_row_at_infinity_is_never_due_and_does_not_break_the_next_due_time() -> None:
    never = enqueue()
    corrupt(never, "scheduled_at", "'infinity'" if connection.vendor == "postgresql" else "'~'")
    backend = DjangoBackend()
    assert backend.claim_jobs("w", {Ledger.name: 1}, 1) == []
    assert backend.next_scheduled_at([Ledger.name]) is not None
    soon = enqueue(timezone.now() + timedelta(minutes=1))
    assert backend.next_scheduled_at([Ledger.name]) == JobRecord.objects.get(pk=soon).scheduled_at


@pytest.mark.skipif(connection.vendor == "mysql", reason=NO_INFINITE_TIMESTAMPS)
def test_a_row_at_minus_infinity_is_due() -> None:
    due = enqueue(timezone.now() + timedelta(hours=1))
    corrupt(due, "scheduled_at", "'-infinity'")
    next_at = DjangoBackend().next_scheduled_at([Ledger.name])
    assert next_at is not None and next_at < timezone.now()


# -- bounded queries -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True, available_apps=["django_rexecutor"])
def test_query_jobs_on_a_million_jobs_reads_a_bounded_page() -> None:
    rows, per_write = 1_000_000, 10_000
    # Distinct data per job, as in real life (a hash index on identical values degrades).
    at = "2030-01-01 00:00:00+00"
    row = f"{Ledger.name}\tcomplete\t%s\t1\t1\t0\t[]\t{at}\t{at}\n"
    with connection.cursor() as cursor:
        copy_sql = (
            f"COPY {TABLE} (executor, status, data, attempt, max_attempts, priority, tags,"
            " inserted_at, scheduled_at) FROM STDIN"
        )
        with cursor.cursor.copy(copy_sql) as copy:
            for start in range(0, rows, per_write):
                copy.write("".join(row % f'{{"n": {n}}}' for n in range(start, start + per_write)))
        cursor.execute(f"ANALYZE {TABLE}")
        first_id = cursor.execute(f"SELECT min(id) FROM {TABLE}").fetchone()[0]
    backend = DjangoBackend()
    tracemalloc.start()
    try:
        with CaptureQueriesContext(connection) as queries:
            page = Ledger.query_jobs()
            following = Ledger.query_jobs(after_id=page[-1].id)
            read = backend.query(Where.all(), limit=2_500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page) == 1000 and page[0].id == first_id
    assert following[0].id == page[-1].id + 1
    assert len(read) == 2_500
    assert peak < 50 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"
    # No statement asked for more than one batch of job rows.
    job_selects = [q["sql"] for q in queries if f'FROM "{TABLE}" ' in q["sql"]]
    limits = [int(sql.rsplit("LIMIT ", 1)[1].split()[0]) for sql in job_selects]
    assert len(limits) == 2 + 2 + 5
    assert max(limits) <= backend.query_batch_size
