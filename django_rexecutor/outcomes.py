"""What ``Executor.execute`` may return (``Done``, ``Cancel``, ``Snooze``) or raise
(``ExecutionError``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .backoff import to_timedelta
from .status import ErrorType


@dataclass(frozen=True)
class Done:
    """The job completed. Returning ``None`` means the same. ``result`` (JSON-native) is
    stored with the job, e.g. a django.tasks task's return value."""

    result: Any = None


@dataclass(frozen=True)
class Cancel:
    """Stop this job for good: it becomes ``cancelled`` and is never retried."""

    reason: str = ""


@dataclass(frozen=True, init=False)
class Snooze:
    """Run the job again after ``delay`` without consuming an attempt."""

    delay: timedelta

    def __init__(self, delay: timedelta | float) -> None:
        object.__setattr__(self, "delay", to_timedelta(delay, name="Snooze delay"))


Outcome = Done | Cancel | Snooze


class ExecutionError(Exception):
    """Raise (or subclass with an ``error_type`` class attribute) to fail an attempt with a
    typed error; the job is retried or discarded like for any other exception."""

    error_type: str = ErrorType.ERROR

    def __init__(self, message: str = "", *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
