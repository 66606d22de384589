"""Errors of the django.tasks integration, and the exception classes that name our own failure
kinds (time-out, lost worker, cancellation) in a ``TaskResult``'s ``errors``."""

from __future__ import annotations

from ..exceptions import EncodeDecodeError, RexecutorError


class TaskJSONError(EncodeDecodeError, TypeError):
    """Task arguments or a task's return value are not JSON. Also a ``TypeError``, which is
    what Django itself raises for arguments it cannot normalise."""


class TaskNotAllowed(RexecutorError):
    """A job names something a worker must not run: not a ``@task`` of a rexecutor task
    backend, or a module outside the installed apps and ``allowed_modules``."""


class WorkerLost(RexecutorError):
    """The worker running the task stopped sending heartbeats; the attempt was rescued."""


class TaskCancelled(RexecutorError):
    """The task was cancelled (from the admin or ``Executor.cancel_job``)."""


class AttemptTimedOut(RexecutorError, TimeoutError):
    """The attempt exceeded its time limit."""
