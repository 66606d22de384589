"""Enqueuing through the public API: what gets stored, bad input (a clear error naming the
value, and nothing stored), scheduling, transactions, bulk enqueue and query counts."""

from __future__ import annotations

import math
import pickle
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_rexecutor import (
    DjangoBackend,
    EncodeDecodeError,
    Executor,
    Job,
    JobId,
    JobStatus,
    UniquenessCriteria,
)
from django_rexecutor.backends import get_backend, resolve_backend
from django_rexecutor.models import JobRecord
from django_rexecutor.signals import job_enqueued

pytestmark = pytest.mark.django_db


class Plain(Executor):
    name = "tests.enqueue.plain"

    def execute(self, job: Job) -> None:
        return None


class Patient(Executor):
    name = "tests.enqueue.patient"
    max_attempts = 2

    def execute(self, job: Job) -> None:
        return None


@pytest.fixture
def nothing_stored(db: None) -> Any:
    """Asserts at teardown that the test stored no job (bad input must leave no row)."""
    before = JobRecord.objects.count()
    yield
    assert JobRecord.objects.count() == before


# -- what gets stored ----------------------------------------------------------------------


def test_enqueue_stores_every_option() -> None:
    at = timezone.now() + timedelta(hours=3)
    job_id = (
        Plain.builder()
        .with_data({"user_id": 42, "nested": [1, {"x": None}]})
        .with_metadata({"request_id": "abc"})
        .with_tags(["signup"])
        .add_tag("email")
        .add_tag("signup")
        .with_priority(3)
        .with_max_attempts(7)
        .schedule_at(at)
        .enqueue()
    )
    job = Plain.get_job(job_id)
    assert (job.id, job.executor, job.status) == (job_id, Plain.name, JobStatus.SCHEDULED)
    assert job.data == {"user_id": 42, "nested": [1, {"x": None}]}
    assert job.metadata == {"request_id": "abc"}
    assert job.tags == ["signup", "email"]
    assert (job.priority, job.max_attempts, job.attempt) == (3, 7, 0)
    assert job.scheduled_at == at
    assert job.errors == []
    assert job.inserted_at.tzinfo is not None
    assert job.attempted_at is job.completed_at is job.cancelled_at is job.discarded_at is None


def test_defaults_come_from_the_executor() -> None:
    job = Patient.get_job(Patient.enqueue())
    assert (job.data, job.metadata, job.tags, job.priority) == (None, None, [], 0)
    assert job.max_attempts == 2
    assert job.scheduled_at <= timezone.now()


def test_tuples_are_stored_as_lists_and_the_builder_is_reusable() -> None:
    base = Plain.builder().with_tags(["a"])
    first = base.with_data({"point": (1, 2)}).enqueue()
    second = base.enqueue()
    assert Plain.get_job(first).data == {"point": [1, 2]}
    assert Plain.get_job(second).data is None
    assert Plain.get_job(second).tags == ["a"]


def test_enqueue_ids_are_distinct_and_increasing() -> None:
    ids = [Plain.enqueue(i) for i in range(5)]
    assert ids == sorted(set(ids))


def test_job_id_is_an_int_that_says_whether_it_was_inserted() -> None:
    rule = UniquenessCriteria.by_key("job-id-test")
    first = Plain.enqueue(unique=rule)
    second = Plain.enqueue(unique=rule)
    assert isinstance(first, JobId) and isinstance(first, int)
    assert first.inserted is True
    assert second.inserted is False
    assert second == first
    assert repr(second) == f"JobId({int(first)}, inserted=False)"
    # Messages and logs (%-style) show the number.
    assert str(second) == f"{second}" == "%s" % second == str(int(first))  # noqa: UP031
    restored = pickle.loads(pickle.dumps(second))
    assert (restored, restored.inserted) == (first, False)


def test_job_enqueued_signal_carries_the_id() -> None:
    seen: list[tuple[type, int]] = []

    def receiver(sender: type, job_id: int, **kwargs: Any) -> None:
        seen.append((sender, job_id))

    job_enqueued.connect(receiver)
    try:
        job_id = Plain.enqueue()
        many = Patient.enqueue_many([{}, {}])
    finally:
        job_enqueued.disconnect(receiver)
    assert seen == [(Plain, job_id), (Patient, many[0]), (Patient, many[1])]


# -- scheduling ----------------------------------------------------------------------------


def test_schedule_in_the_future() -> None:
    before = timezone.now()
    job = Plain.get_job(Plain.enqueue(schedule_in=timedelta(minutes=5)))
    assert (
        before + timedelta(minutes=5) <= job.scheduled_at <= timezone.now() + timedelta(minutes=5)
    )
    assert not JobRecord.objects.ready().filter(pk=job.id).exists()
    seconds = Plain.get_job(Plain.enqueue(schedule_in=90))
    assert seconds.scheduled_at >= before + timedelta(seconds=90)


@pytest.mark.parametrize(
    "option",
    [
        {"schedule_in": timedelta(hours=-1)},
        {"schedule_in": -30},
        {"schedule_at": datetime(2001, 1, 1, tzinfo=UTC)},
    ],
    ids=["schedule_in timedelta", "schedule_in seconds", "schedule_at"],
)
def test_a_moment_in_the_past_means_due_now(option: dict[str, Any]) -> None:
    job_id = Plain.enqueue(**option)
    assert Plain.get_job(job_id).scheduled_at <= timezone.now()
    assert JobRecord.objects.ready().filter(pk=job_id).exists()
    claimed = DjangoBackend().claim_jobs("tests-worker", {Plain.name: 10}, 10)
    assert [job.id for job in claimed] == [job_id]


# -- bad input: a clear error naming the value, nothing stored ----------------------------------


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), "datetime.datetime(2024"),
        (Decimal("1.5"), "Decimal('1.5')"),
        ({1, 2}, "{1, 2}"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (Opaque(), "<Opaque thing>"),
        (b"bytes", "b'bytes'"),
        ({1: "x"}, "the key 1"),
        ({("a",): 1}, "the key ('a',)"),
        ({"ok": [1, {"deep": {2.5}}]}, "{2.5}"),
        ("nul\x00char", "NUL"),
        ({"key\x00": 1}, "NUL"),
        ("\ud800", "lone surrogate"),
    ],
    ids=[
        "datetime",
        "Decimal",
        "set",
        "NaN",
        "inf",
        "-inf",
        "object",
        "bytes",
        "int key",
        "tuple key",
        "deeply nested",
        "NUL in string",
        "NUL in key",
        "lone surrogate",
    ],
)
@pytest.mark.parametrize("field", ["data", "metadata"])
def test_non_json_native_payloads_are_rejected(
    nothing_stored: None, field: str, value: object, named: str
) -> None:
    with pytest.raises(EncodeDecodeError, match=field) as info:
        Plain.enqueue(**{field: value})
    assert isinstance(info.value, ValueError)
    assert named in str(info.value)
    with pytest.raises(EncodeDecodeError):
        Plain.enqueue_many([{"data": 1}, {field: value}])


def test_naive_schedule_at_is_rejected(nothing_stored: None) -> None:
    naive = datetime(2030, 5, 1, 12, 30)
    with pytest.raises(ValueError, match="naive datetime 2030-05-01T12:30:00"):
        Plain.enqueue(schedule_at=naive)
    with pytest.raises(TypeError, match="'tomorrow'"):
        Plain.enqueue(schedule_at="tomorrow")


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        (0, ValueError, "at least 1, got 0"),
        (-3, ValueError, "got -3"),
        (2**31, ValueError, str(2**31)),
        ("3", TypeError, "'3'"),
        (2.0, TypeError, "2.0"),
        (True, TypeError, "True"),
    ],
)
def test_bad_max_attempts_is_rejected(
    nothing_stored: None, value: object, error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match="max_attempts") as info:
        Plain.enqueue(max_attempts=value)
    assert named in str(info.value)
    with pytest.raises(error):
        Plain.builder().with_max_attempts(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        (-1, ValueError, "got -1"),
        (2**31, ValueError, str(2**31)),
        (1.5, TypeError, "1.5"),
        ("1", TypeError, "'1'"),
        (None, TypeError, "None"),
        (True, TypeError, "True"),
        (False, TypeError, "False"),
    ],
)
def test_bad_priority_is_rejected(
    nothing_stored: None, value: object, error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match="priority") as info:
        Plain.enqueue(priority=value)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ([1], "1 (int)"),
        (["ok", None], "None"),
        ([b"x"], "b'x'"),
        ("signup", "'signup'"),
        (["bad\x00tag"], "NUL"),
    ],
)
def test_bad_tags_are_rejected(nothing_stored: None, tags: object, named: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        Plain.enqueue(tags=tags)
    assert named in str(info.value)
    with pytest.raises((TypeError, ValueError)):
        Plain.builder().add_tag(tags[-1] if isinstance(tags, list) else 5)  # type: ignore[arg-type]


def test_unknown_options_are_rejected_by_name(nothing_stored: None) -> None:
    with pytest.raises(TypeError, match="'priorty'"):
        Plain.enqueue(data=1, priorty=3)
    with pytest.raises(TypeError, match="'sheduled_at'"):
        Plain.enqueue_many([{"data": 1}, {"sheduled_at": timezone.now()}])


def test_bad_uniqueness_arguments_are_rejected(nothing_stored: None) -> None:
    with pytest.raises(TypeError, match="'by key'"):
        Plain.enqueue(unique="by key")
    with pytest.raises(EncodeDecodeError, match="uniqueness key"):
        UniquenessCriteria.by_key(Decimal(1))
    with pytest.raises(ValueError, match="'bogus' is not a job status"):
        UniquenessCriteria.by_statuses(["bogus"])


def test_unknown_database_alias_is_an_error(nothing_stored: None) -> None:
    from django.utils.connection import ConnectionDoesNotExist

    with pytest.raises(ConnectionDoesNotExist, match="nope"):
        Plain.enqueue(using="nope")


# -- transactions and aliases ----------------------------------------------------------------


def test_enqueue_inside_a_rolled_back_transaction_leaves_no_job() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        Plain.enqueue({"order": 1})
        assert JobRecord.objects.filter(executor=Plain.name).count() == 1
        raise Boom
    assert not JobRecord.objects.filter(executor=Plain.name).exists()
    with transaction.atomic():
        job_id = Plain.enqueue({"order": 2})
    assert Plain.get_job(job_id).data == {"order": 2}


def _count_from_another_connection() -> int:
    """Jobs of ``Plain`` visible to another connection (i.e. committed ones)."""
    result: list[int] = []

    def count() -> None:
        try:
            result.append(JobRecord.objects.filter(executor=Plain.name).count())
        finally:
            connection.close()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return result[0]


@pytest.mark.django_db(transaction=True)
def test_enqueue_joins_the_callers_transaction() -> None:
    with transaction.atomic():
        job_id = Plain.enqueue({"step": 1})
        assert _count_from_another_connection() == 0
    assert _count_from_another_connection() == 1
    with pytest.raises(RuntimeError), transaction.atomic():
        Plain.enqueue({"step": 2})
        raise RuntimeError
    assert _count_from_another_connection() == 1
    assert [job.id for job in Plain.query_jobs()] == [job_id]


def test_using_binds_the_backend_to_an_alias() -> None:
    backend = get_backend()
    assert isinstance(backend, DjangoBackend) and backend.alias == "default"
    other = backend.using("replica")
    assert isinstance(other, DjangoBackend) and other.alias == "replica"
    assert backend.using("default") is backend
    assert resolve_backend(None, "replica").alias == "replica"  # type: ignore[attr-defined]
    assert resolve_backend(DjangoBackend(), "replica").alias == "replica"  # type: ignore[attr-defined]
    with transaction.atomic(using="default"):
        job_id = Plain.enqueue(using="default")
    assert Plain.get_job(job_id).id == job_id


# -- bulk enqueue --------------------------------------------------------------------------


def test_enqueue_many_takes_builders_and_dicts_and_keeps_the_order() -> None:
    later = timezone.now() + timedelta(hours=1)
    items: list[Any] = [
        Plain.builder().with_data("first").with_priority(2),
        {"data": "second", "tags": ["bulk"], "schedule_at": later},
        Plain.builder().with_data("third"),
        {"data": "fourth", "max_attempts": 9, "metadata": {"m": 1}},
    ]
    ids = Plain.enqueue_many(items)
    assert all(isinstance(i, JobId) and i.inserted for i in ids)
    assert ids == sorted(ids)
    jobs = {job.id: job for job in Plain.query_jobs()}
    assert [jobs[i].data for i in ids] == ["first", "second", "third", "fourth"]
    assert jobs[ids[0]].priority == 2
    assert jobs[ids[1]].tags == ["bulk"] and jobs[ids[1]].scheduled_at == later
    assert (jobs[ids[3]].max_attempts, jobs[ids[3]].metadata) == (9, {"m": 1})
    assert Plain.enqueue_many([]) == []


def test_enqueue_many_with_uniqueness_reports_matches_in_order() -> None:
    rule = UniquenessCriteria.by_key("bulk").and_executor()
    ids = Plain.enqueue_many([{"data": 1, "unique": rule}, {"data": 2}, {"unique": rule}])
    assert [i.inserted for i in ids] == [True, True, False]
    assert ids[2] == ids[0]
    assert len(Plain.query_jobs()) == 2


def test_enqueue_many_rejects_a_builder_of_another_executor(nothing_stored: None) -> None:
    with pytest.raises(TypeError, match="item 1 is a builder of Patient, not of Plain"):
        Plain.enqueue_many([{"data": 1}, Patient.builder()])
    with pytest.raises(TypeError, match="item 0 must be a JobBuilder or a dict, got 42"):
        Plain.enqueue_many([42])  # type: ignore[list-item]


# -- query counts --------------------------------------------------------------------------


def test_a_plain_enqueue_is_a_single_insert(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1) as captured:
        Plain.enqueue({"a": 1}, tags=["x"], priority=1)
    assert captured.captured_queries[0]["sql"].startswith("INSERT")


def test_enqueue_many_takes_few_statements_whatever_the_count() -> None:
    from django.test.utils import CaptureQueriesContext

    counts = []
    for size in (5, 300):
        with CaptureQueriesContext(connection) as captured:
            Plain.enqueue_many([{"data": i, "tags": ["bulk"]} for i in range(size)])
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1] <= 3, counts
    assert JobRecord.objects.filter(executor=Plain.name).count() == 305


def test_a_unique_enqueue_takes_a_lock_a_lookup_and_an_insert(
    django_assert_num_queries: Any,
) -> None:
    # Inside the test's transaction the atomic block is a savepoint: SAVEPOINT, lock, SELECT,
    # INSERT, RELEASE. On MariaDB/MySQL the test's REPEATABLE READ transaction adds a read of
    # the lock row's version in its snapshot (see MySQLEngine.lock_slot).
    extra = 1 if connection.vendor == "mysql" else 0
    with django_assert_num_queries(5 + extra):
        Plain.enqueue(unique=UniquenessCriteria.by_key("count"))
    with django_assert_num_queries(4 + extra):
        Plain.enqueue(unique=UniquenessCriteria.by_key("count"))
