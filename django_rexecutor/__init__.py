"""django-rexecutor: robust background jobs for Django, on PostgreSQL or SQLite.

Every name a user needs is importable from here. ``DjangoBackend`` is loaded lazily, because
it needs the app registry while this package is imported early (from ``INSTALLED_APPS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends.base import Backend
from .backends.memory import InMemoryBackend
from .backoff import BackoffStrategy, Jitter
from .builder import JobBuilder
from .exceptions import (
    BackendError,
    ConfigurationError,
    EncodeDecodeError,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    RexecutorError,
    UniquenessConflict,
    WorkflowError,
)
from .executor import Executor
from .job import Job, JobError, JobId
from .limits import RateLimit
from .outcomes import Cancel, Done, ExecutionError, Snooze
from .query import Where
from .status import JobStatus
from .uniqueness import Replace, UniquenessCriteria
from .workflows import Workflow, WorkflowRun

if TYPE_CHECKING:
    from .backends.django import DjangoBackend

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackoffStrategy",
    "Cancel",
    "ConfigurationError",
    "DjangoBackend",
    "Done",
    "EncodeDecodeError",
    "ExecutionError",
    "Executor",
    "InMemoryBackend",
    "InvalidTransition",
    "Jitter",
    "Job",
    "JobBuilder",
    "JobError",
    "JobId",
    "JobNotFound",
    "JobStatus",
    "PayloadTooLarge",
    "RateLimit",
    "Replace",
    "RexecutorError",
    "Snooze",
    "UniquenessConflict",
    "UniquenessCriteria",
    "Where",
    "Workflow",
    "WorkflowError",
    "WorkflowRun",
]


def __getattr__(name: str) -> Any:
    if name == "DjangoBackend":
        from .backends.django import DjangoBackend

        return DjangoBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
