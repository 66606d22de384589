"""factory-boy factories for the job tables, with one trait per status.

Each trait sets the fields a job in that status really has (attempts, timestamps, claim, error
history), so a factory-made row behaves like one a worker produced::

    JobRecordFactory.create(retryable=True)  # attempt 1, due later, one error
    JobRecordFactory.create(discarded=True, max_attempts=3)  # three errors, discarded_at
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import ErrorType, JobStatus

EXECUTOR = "factory.job"
WORKER = "factory-worker"


def _now() -> Any:
    return timezone.now()


def _ago(seconds: float) -> Any:
    return factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=seconds))


class JobRecordFactory(DjangoModelFactory[JobRecord]):
    """A scheduled job by default; pass ``executing=True``, ``retryable=True``,
    ``complete=True``, ``cancelled=True`` or ``discarded=True`` for the other statuses.
    ``errors=[]`` creates no error rows; by default a job gets the errors its status implies."""

    class Meta:
        model = JobRecord
        skip_postgeneration_save = True

    class Params:
        scheduled = factory.Trait(status=JobStatus.SCHEDULED)
        executing = factory.Trait(
            status=JobStatus.EXECUTING,
            attempt=1,
            scheduled_at=_ago(2),
            attempted_at=_ago(1),
            claimed_by=WORKER,
        )
        retryable = factory.Trait(
            status=JobStatus.RETRYABLE,
            attempt=1,
            attempted_at=_ago(1),
            scheduled_at=factory.LazyFunction(lambda: timezone.now() + timedelta(seconds=30)),
            claimed_by=WORKER,
        )
        complete = factory.Trait(
            status=JobStatus.COMPLETE,
            attempt=1,
            scheduled_at=_ago(2),
            attempted_at=_ago(1),
            completed_at=factory.LazyFunction(_now),
            claimed_by=WORKER,
        )
        cancelled = factory.Trait(
            # Cancelled while waiting: it never ran.
            status=JobStatus.CANCELLED,
            cancelled_at=factory.LazyFunction(_now),
        )
        discarded = factory.Trait(
            status=JobStatus.DISCARDED,
            attempt=factory.SelfAttribute("max_attempts"),
            scheduled_at=_ago(2),
            attempted_at=_ago(1),
            discarded_at=factory.LazyFunction(_now),
            claimed_by=WORKER,
        )

    executor = EXECUTOR
    status = JobStatus.SCHEDULED
    data = factory.Sequence(lambda n: {"n": n})
    metadata = None
    attempt = 0
    max_attempts = 5
    priority = 0
    tags = factory.LazyFunction(list)
    inserted_at = factory.LazyFunction(_now)
    scheduled_at = factory.SelfAttribute("inserted_at")

    @factory.post_generation
    def errors(obj: JobRecord, create: bool, extracted: Any, **kwargs: Any) -> None:
        """The error history the status implies, unless ``errors=[...]`` gives it (a list of
        ``JobErrorRecordFactory`` keyword dicts)."""
        if not create:
            return
        if extracted is not None:
            for fields in extracted:
                JobErrorRecordFactory.create(job=obj, **fields)
            return
        if obj.status in (JobStatus.RETRYABLE, JobStatus.DISCARDED):
            for attempt in range(1, obj.attempt + 1):
                JobErrorRecordFactory.create(job=obj, attempt=attempt)
        elif obj.status == JobStatus.CANCELLED:
            JobErrorRecordFactory.create(
                job=obj,
                attempt=obj.attempt,
                error_type=ErrorType.CANCELLED,
                message="cancelled by factory",
                traceback="",
            )


class JobErrorRecordFactory(DjangoModelFactory[JobErrorRecord]):
    """One failed attempt; by default of a new retryable job (which brings its own error)."""

    class Meta:
        model = JobErrorRecord

    job = factory.SubFactory(JobRecordFactory, retryable=True, errors=[])
    attempt = factory.SelfAttribute("job.attempt")
    error_type = ErrorType.PANIC
    message = factory.Sequence(lambda n: f"RuntimeError: failure #{n}")
    traceback = "Traceback (most recent call last):\n  ...\nRuntimeError: failure"
    recorded_at = factory.LazyFunction(_now)
