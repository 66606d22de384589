"""The one exception hierarchy of django-rexecutor: everything raised on purpose is a
:class:`RexecutorError`, so callers can catch the library's errors with a single clause."""

from __future__ import annotations


class RexecutorError(Exception):
    """Base class of every error raised by django-rexecutor."""


class ConfigurationError(RexecutorError):
    """An executor, a setting or a backend is declared wrongly."""


class JobNotFound(RexecutorError, LookupError):
    """No job with that id exists (or it belongs to another executor)."""

    def __init__(self, job_id: int, detail: str = "") -> None:
        self.job_id = job_id
        message = f"Job {job_id} does not exist"
        super().__init__(f"{message} {detail}".strip() if detail else message + ".")


class InvalidTransition(RexecutorError):
    """The requested change is not allowed from the job's current status."""

    def __init__(self, job_id: int, status: str, action: str, hint: str = "") -> None:
        self.job_id = job_id
        self.status = status
        self.action = action
        text = f"Cannot {action} job {job_id}: it is {status}."
        super().__init__(f"{text} {hint}".strip())


class EncodeDecodeError(RexecutorError, ValueError):
    """A value is not JSON-native (or stored JSON could not be decoded)."""


class PayloadTooLarge(EncodeDecodeError):
    """A new job's data, metadata or tags encode to more JSON than ``MAX_PAYLOAD_BYTES`` (or
    than the database accepts); ``.what``, ``.size`` and ``.limit`` say which and by how much."""

    def __init__(self, what: str, size: int, limit: int | None, detail: str = "") -> None:
        self.what = what
        self.size = size
        self.limit = limit
        bound = f'REXECUTOR["MAX_PAYLOAD_BYTES"] = {limit}' if limit else "what the database takes"
        text = f"The job's {what} is {size} bytes of JSON, more than {bound}."
        super().__init__(
            f"{text} {detail}".strip() + " Store large content elsewhere (a file, a table) "
            "and pass a reference to it."
        )


class BackendError(RexecutorError):
    """The storage behind a backend failed (database unreachable, unexpected state)."""


class UniquenessConflict(RexecutorError):
    """A unique enqueue inside the caller's ``REPEATABLE READ`` or ``SERIALIZABLE`` transaction
    met an enqueue for the same rule that committed after this transaction's snapshot was
    taken: the duplicate check cannot see that job, so nothing was inserted. Roll back and
    retry the whole transaction. ``__cause__`` is the database's serialization failure."""


class WorkflowError(RexecutorError, ValueError):
    """A workflow is built wrongly (a cycle, an unknown or foreign step, a duplicate name, a
    step with a uniqueness rule); nothing was stored."""
