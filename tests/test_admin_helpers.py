"""Helpers shared by the admin tests (this module holds no tests): jobs in a given state,
and staff users with chosen permissions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import JobStatus

_FINISHED_FIELD = {
    JobStatus.COMPLETE: "completed_at",
    JobStatus.CANCELLED: "cancelled_at",
    JobStatus.DISCARDED: "discarded_at",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Users are created in almost every admin test; the default hasher takes ~2 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_job(
    status: JobStatus = JobStatus.SCHEDULED,
    *,
    executor: str = "emails.send",
    errors: list[tuple[str, str, str]] | None = None,
    finished_at: datetime | None = None,
    **fields: Any,
) -> JobRecord:
    """A job as the worker would have left it in ``status``, with ``errors`` (type, message,
    traceback) recorded for its attempts."""
    now = timezone.now()
    attempt = fields.pop("attempt", 0 if status == JobStatus.SCHEDULED else 1)
    values: dict[str, Any] = {
        "executor": executor,
        "status": status,
        "attempt": attempt,
        "max_attempts": fields.pop("max_attempts", 3),
        "scheduled_at": fields.pop("scheduled_at", now - timedelta(seconds=5)),
    }
    if attempt:
        values["attempted_at"] = now
    if status == JobStatus.EXECUTING:
        values["claimed_by"] = "worker-1"
    if status in _FINISHED_FIELD:
        values[_FINISHED_FIELD[status]] = finished_at or now
    values.update(fields)
    job = JobRecord.objects.create(**values)
    for n, (error_type, message, traceback) in enumerate(errors or [], start=1):
        JobErrorRecord.objects.create(
            job=job, attempt=n, error_type=error_type, message=message, traceback=traceback
        )
    return job


def staff_user(username: str, *codenames: str) -> User:
    """A staff user holding exactly the given ``django_rexecutor`` permissions."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label="django_rexecutor", codename__in=codenames
    )
    assert perms.count() == len(codenames), codenames
    user.user_permissions.set(perms)
    return user


def statuses(*jobs: JobRecord) -> list[str]:
    return [JobRecord.objects.get(pk=job.pk).status for job in jobs]
