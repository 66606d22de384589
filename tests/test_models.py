"""The job tables: database-level guarantees (check constraints, cascades, unique cron ticks)
and the state-named querysets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_rexecutor import JobStatus
from django_rexecutor.models import CronTickRecord, JobErrorRecord, JobRecord

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("attempt", -1, "rexecutor_job_attempt_gte_0"),
        ("max_attempts", 0, "rexecutor_job_max_attempts_gte_1"),
        ("priority", -1, "rexecutor_job_priority_gte_0"),
    ],
)
def test_check_constraints_reject_bad_rows(field: str, value: int, constraint: str) -> None:
    """Rows written around the API (raw ORM, admin, SQL scripts) still cannot break the
    invariants the worker relies on."""
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        JobRecord.objects.create(executor="tests.models", **{field: value})
    record = JobRecord.objects.create(executor="tests.models")
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        JobRecord.objects.filter(pk=record.pk).update(**{field: value})
    assert list(JobRecord.objects.values_list(field, flat=True)) == [
        JobRecord._meta.get_field(field).default
    ]


def test_a_bad_status_is_caught_by_model_validation() -> None:
    from django.core.exceptions import ValidationError

    record = JobRecord(executor="tests.models", status="finished")
    with pytest.raises(ValidationError, match="finished"):
        record.full_clean()


def test_deleting_a_job_deletes_its_errors() -> None:
    record = JobRecord.objects.create(executor="tests.models", attempt=1)
    JobErrorRecord.objects.create(job=record, attempt=1, error_type="panic", message="x")
    record.delete()
    assert not JobErrorRecord.objects.exists()


def test_error_records_come_back_oldest_first() -> None:
    record = JobRecord.objects.create(executor="tests.models", attempt=2)
    now = timezone.now()
    second = JobErrorRecord.objects.create(job=record, attempt=2, error_type="b", recorded_at=now)
    first = JobErrorRecord.objects.create(
        job=record, attempt=1, error_type="a", recorded_at=now - timedelta(seconds=1)
    )
    assert list(record.error_records.all()) == [first, second]


def test_a_cron_tick_is_stored_once() -> None:
    tick = timezone.now().replace(microsecond=0)
    CronTickRecord.objects.create(name="nightly", tick_at=tick)
    with pytest.raises(IntegrityError), transaction.atomic():
        CronTickRecord.objects.create(name="nightly", tick_at=tick)
    CronTickRecord.objects.create(name="nightly", tick_at=tick + timedelta(minutes=1))
    assert CronTickRecord.objects.count() == 2


def test_ids_are_64_bit() -> None:
    big = 2**40
    record = JobRecord.objects.create(id=big, executor="tests.models")
    JobErrorRecord.objects.create(id=big, job=record, attempt=0, error_type="x")
    assert JobRecord.objects.get(pk=big).error_records.get().pk == big


def test_state_named_querysets() -> None:
    now = timezone.now()
    make: Any = JobRecord.objects.create
    ready = make(executor="m", status=JobStatus.SCHEDULED, scheduled_at=now - timedelta(seconds=1))
    retry = make(executor="m", status=JobStatus.RETRYABLE, attempt=1, scheduled_at=now)
    future = make(executor="m", status=JobStatus.SCHEDULED, scheduled_at=now + timedelta(hours=1))
    running = make(executor="m", status=JobStatus.EXECUTING, attempt=1)
    done = make(executor="m", status=JobStatus.COMPLETE, attempt=1, completed_at=now)
    gone = make(executor="m", status=JobStatus.DISCARDED, attempt=1, discarded_at=now)
    step = make(executor="m", status=JobStatus.WAITING, scheduled_at=now, workflow_id="w1")

    def ids(qs: Any) -> set[int]:
        return set(qs.values_list("pk", flat=True))

    assert ids(JobRecord.objects.ready()) == {ready.pk, retry.pk}
    assert ids(JobRecord.objects.waiting()) == {ready.pk, retry.pk, future.pk}
    assert ids(JobRecord.objects.running()) == {running.pk}
    assert ids(JobRecord.objects.finished()) == {done.pk, gone.pk}
    assert ids(JobRecord.objects.blocked()) == {step.pk}
    assert step.pk in ids(JobRecord.objects.cancellable())
    assert step.pk not in ids(JobRecord.objects.rerunnable())
    assert done.finished_at == now and ready.finished_at is None
    assert str(ready) == f"m #{ready.pk}"


def test_json_columns_store_sorted_keys() -> None:
    """Canonical JSON keeps exact-equality lookups identical on SQLite (text) and PostgreSQL."""
    record = JobRecord.objects.create(executor="m", data={"b": 1, "a": {"d": 2, "c": 3}})
    assert JobRecord.objects.filter(data={"a": {"c": 3, "d": 2}, "b": 1}).get() == record
