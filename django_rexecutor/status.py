"""The single source of truth for job statuses and built-in error types; the models, the
backends, the admin badges and the database trigger all derive from these names."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class JobStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    EXECUTING = "executing", _("Executing")
    RETRYABLE = "retryable", _("Retryable")
    COMPLETE = "complete", _("Complete")
    CANCELLED = "cancelled", _("Cancelled")
    DISCARDED = "discarded", _("Discarded")
    #: A workflow step whose dependencies have not all finished: never claimed until they
    #: have (see ``django_rexecutor.workflows``).
    WAITING = "waiting", _("Waiting")

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, value: object) -> JobStatus:
        """Return the member for ``value`` or raise a ``ValueError`` listing the valid ones."""
        try:
            return cls(value)  # type: ignore[call-overload]
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"{value!r} is not a job status; expected one of: {valid}.") from None


READY_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED, JobStatus.RETRYABLE})
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED}
)


#: Longest error type a job's history stores (the column's length); longer ones are truncated.
ERROR_TYPE_MAX_LENGTH = 100


class ErrorType:
    """Error types recorded by the library itself; an ``ExecutionError`` adds its own."""

    PANIC = "panic"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"
    #: The job's row holds values the worker cannot read (written by hand or by a script).
    UNREADABLE = "unreadable"
    ERROR = "error"
    #: A workflow step cancelled because a dependency it needed to succeed did not.
    UPSTREAM_FAILED = "upstream_failed"
