"""``Where``: every constructor builds the node it names, rejects bad arguments by name, and
means the same on the database as in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from django_rexecutor import (
    DjangoBackend,
    EncodeDecodeError,
    Executor,
    InMemoryBackend,
    Job,
    JobStatus,
    Where,
)
from django_rexecutor.backends.base import Backend, ErrorDetails
from django_rexecutor.query import (
    And,
    DataEquals,
    IdEquals,
    IdIn,
    MetadataEquals,
    ScheduledAtAfter,
    ScheduledAtBefore,
    ScheduledAtEqual,
    StatusEqual,
    TagsAllOf,
    TagsOneOf,
)

T0 = datetime(2030, 6, 1, tzinfo=UTC)


class Report(Executor):
    name = "tests.query.report"

    def execute(self, job: Job) -> None:
        return None


class Export(Executor):
    name = "tests.query.export"

    def execute(self, job: Job) -> None:
        return None


def test_constructors_build_the_nodes_they_name() -> None:
    assert Where.data_equals({"a": (1, 2)}) == DataEquals({"a": [1, 2]})
    assert Where.metadata_equals(None) == MetadataEquals(None)
    assert Where.id_equals(5) == IdEquals(5)
    assert Where.id_in(i for i in (3, 1, 2)) == IdIn((3, 1, 2))
    assert Where.status_equals("retryable") == StatusEqual(JobStatus.RETRYABLE)
    assert Where.status_equals(JobStatus.COMPLETE) == StatusEqual(JobStatus.COMPLETE)
    assert Where.tagged_by_all_of(["a", "b"]) == TagsAllOf(("a", "b"))
    assert Where.tagged_by_one_of(("a",)) == TagsOneOf(("a",))
    assert Where.scheduled_at_before(T0) == ScheduledAtBefore(T0)
    assert Where.scheduled_at_after(T0) == ScheduledAtAfter(T0)
    assert Where.scheduled_at_equals(T0) == ScheduledAtEqual(T0)
    assert Where.all() == And(())


@pytest.mark.parametrize("age", [timedelta(hours=2), 7200, 7200.0])
def test_relative_constructors_measure_from_now(age: Any) -> None:
    before = timezone.now()
    older = Where.scheduled_at_older_than(age)
    recent = Where.scheduled_at_within_the_last(age)
    after = timezone.now()
    assert isinstance(older, ScheduledAtBefore) and isinstance(recent, ScheduledAtAfter)
    for node in (older, recent):
        assert before - timedelta(hours=2) <= node.at <= after - timedelta(hours=2)


@pytest.mark.parametrize(
    ("build", "error", "named"),
    [
        (lambda: Where.data_equals(Decimal("2")), EncodeDecodeError, "Decimal('2')"),
        (lambda: Where.metadata_equals({1: 2}), EncodeDecodeError, "the key 1"),
        (lambda: Where.id_equals("7"), TypeError, "'7'"),
        (lambda: Where.id_equals(True), TypeError, "True"),
        (lambda: Where.id_in([1, 2.0]), TypeError, "2.0"),
        (lambda: Where.status_equals("done"), ValueError, "'done' is not a job status"),
        (lambda: Where.status_equals("Complete"), ValueError, "'Complete'"),
        (lambda: Where.tagged_by_all_of("urgent"), TypeError, "not the string 'urgent'"),
        (lambda: Where.tagged_by_one_of(["a", 3]), TypeError, "tag 3"),
        (lambda: Where.scheduled_at_before(datetime(2030, 1, 1)), ValueError, "naive"),
        (lambda: Where.scheduled_at_equals("2030-01-01"), TypeError, "'2030-01-01'"),
        (lambda: Where.scheduled_at_older_than(-5), ValueError, "older_than"),
        (lambda: Where.scheduled_at_within_the_last("1h"), TypeError, "'1h'"),
    ],
)
def test_bad_arguments_are_rejected_by_name(build: Any, error: type, named: str) -> None:
    with pytest.raises(error) as info:
        build()
    assert named in str(info.value)


def test_a_status_that_does_not_exist_lists_the_valid_ones(db: None) -> None:
    with pytest.raises(ValueError, match="expected one of: scheduled, executing, retryable"):
        Report.query_jobs(Where.status_equals("finished"))


# -- the same queries on the database and in memory ------------------------------------------


def _fill(backend: Backend) -> list[int]:
    now = timezone.now()
    return [
        Report.enqueue({"n": 1}, schedule_at=now - timedelta(days=2), tags=["a"], backend=backend),
        Report.enqueue({"n": 2}, schedule_at=now - timedelta(minutes=5), backend=backend),
        Report.enqueue({"n": 3}, schedule_at=now + timedelta(days=1), tags=["a"], backend=backend),
        Export.enqueue({"n": 1}, schedule_at=now - timedelta(hours=3), backend=backend),
    ]


def _queries() -> list[tuple[str, Any, list[int]]]:
    """(description, query, indexes into the filled ids)."""
    return [
        ("older than an hour", Where.scheduled_at_older_than(timedelta(hours=1)), [0, 3]),
        (
            "within the last hour (future included)",
            Where.scheduled_at_within_the_last(3600),
            [1, 2],
        ),
        ("data", Where.data_equals({"n": 1}), [0, 3]),
        ("tag and not data", Where.tagged_by_all_of(["a"]) & ~Where.data_equals({"n": 1}), [2]),
        ("status", Where.status_equals("scheduled"), [0, 1, 2, 3]),
        ("nothing", Where.status_equals("complete"), []),
    ]


@pytest.mark.parametrize("kind", ["database", "memory"])
def test_queries_mean_the_same_on_every_backend(db: None, kind: str) -> None:
    backend: Backend = DjangoBackend() if kind == "database" else InMemoryBackend()
    ids = _fill(backend)
    for description, query, expected in _queries():
        assert [j.id for j in backend.query(query)] == [ids[i] for i in expected], description
    assert [j.id for j in Report.query_jobs(Where.data_equals({"n": 1}), backend=backend)] == [
        ids[0]
    ]


def test_query_limit_and_order(db: None) -> None:
    backend = DjangoBackend()
    ids = _fill(backend)
    assert [j.id for j in backend.query(Where.all(), limit=2)] == ids[:2]
    assert [j.id for j in backend.query(Where.id_in(reversed(ids)))] == ids


def test_queried_jobs_carry_their_error_history_oldest_first(db: None) -> None:
    backend = DjangoBackend()
    job_id = Report.enqueue(max_attempts=3)
    for attempt, message in ((1, "first"), (2, "second")):
        [claimed] = backend.claim_jobs("tests-query", {Report.name: 1}, 1)
        assert claimed.attempt == attempt
        backend.mark_job_retryable(
            job_id, timezone.now() - timedelta(seconds=1), ErrorDetails("boom", message)
        )
    [job] = Report.query_jobs(Where.id_equals(job_id))
    assert [(e.attempt, e.error_type, e.message) for e in job.errors] == [
        (1, "boom", "first"),
        (2, "boom", "second"),
    ]
    assert job.errors[0].recorded_at <= job.errors[1].recorded_at
