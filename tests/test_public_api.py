"""Every public name of the spec is importable from the top-level package, and the value
types behave as documented."""

from __future__ import annotations

import importlib

import pytest

import django_rexecutor

SPEC_NAMES = [
    "Executor",
    "Job",
    "JobStatus",
    "JobError",
    "Done",
    "Cancel",
    "Snooze",
    "ExecutionError",
    "JobId",
    "UniquenessCriteria",
    "Replace",
    "Where",
    "BackoffStrategy",
    "Jitter",
    "Backend",
    "InMemoryBackend",
    "DjangoBackend",
    "RexecutorError",
    "JobNotFound",
    "InvalidTransition",
    "EncodeDecodeError",
    "BackendError",
]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_names_are_importable_from_the_package(name: str) -> None:
    module = importlib.import_module("django_rexecutor")
    value = getattr(module, name)
    assert value is not None
    assert name in django_rexecutor.__all__


def test_all_lists_only_real_names() -> None:
    for name in django_rexecutor.__all__:
        assert getattr(django_rexecutor, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        django_rexecutor.Nope  # noqa: B018


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from django_rexecutor import *", namespace)
    assert set(SPEC_NAMES) <= set(namespace)


def test_the_orm_model_and_the_job_value_are_different_names() -> None:
    from django_rexecutor.models import JobRecord

    assert django_rexecutor.Job is not JobRecord
    assert django_rexecutor.Job.__name__ != JobRecord.__name__
    assert not hasattr(django_rexecutor, "JobRecord")


def test_the_exception_hierarchy() -> None:
    from django_rexecutor import (
        BackendError,
        ConfigurationError,
        EncodeDecodeError,
        InvalidTransition,
        JobNotFound,
        RexecutorError,
    )

    for error in (
        BackendError,
        ConfigurationError,
        EncodeDecodeError,
        InvalidTransition,
        JobNotFound,
    ):
        assert issubclass(error, RexecutorError)
    assert issubclass(EncodeDecodeError, ValueError)
    assert issubclass(JobNotFound, LookupError)
    assert str(JobNotFound(7)) == "Job 7 does not exist."
    error = InvalidTransition(7, "complete", "cancel", "Only waiting jobs can be.")
    assert (error.job_id, error.status, error.action) == (7, "complete", "cancel")
    assert str(error) == "Cannot cancel job 7: it is complete. Only waiting jobs can be."


def test_job_status_values_and_sets() -> None:
    from django_rexecutor import JobStatus
    from django_rexecutor.status import READY_STATUSES, TERMINAL_STATUSES

    assert [s.name for s in JobStatus] == [
        "SCHEDULED",
        "EXECUTING",
        "RETRYABLE",
        "COMPLETE",
        "CANCELLED",
        "DISCARDED",
        "WAITING",
    ]
    assert all(s.value == s.name.lower() for s in JobStatus)
    assert {JobStatus.SCHEDULED, JobStatus.RETRYABLE} == READY_STATUSES
    assert {JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED} == TERMINAL_STATUSES
    assert JobStatus.COMPLETE.is_terminal and not JobStatus.RETRYABLE.is_terminal
    assert JobStatus.parse("complete") is JobStatus.COMPLETE


def test_job_is_last_attempt_uses_greater_or_equal() -> None:
    from datetime import UTC, datetime

    from django_rexecutor import Job, JobStatus

    at = datetime(2030, 1, 1, tzinfo=UTC)

    def job(attempt: int, max_attempts: int) -> Job:
        return Job(
            1, JobStatus.EXECUTING, "x", None, None, attempt, max_attempts, 0, [], [], at, at
        )

    assert not job(2, 3).is_last_attempt
    assert job(3, 3).is_last_attempt
    # max_attempts lowered below the attempt already running: still the last one.
    assert job(4, 2).is_last_attempt
    assert job(1, 1) == job(1, 1) and job(1, 1) != job(1, 2)
