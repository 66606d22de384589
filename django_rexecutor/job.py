"""The job value handed to ``Executor.execute`` and returned by queries.

It is a plain dataclass, independent of the ORM model (``models.JobRecord``), so the in-memory
backend, the worker and user code share one type whatever stores the job."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .status import ERROR_TYPE_MAX_LENGTH, JobStatus

if TYPE_CHECKING:
    from .backends.base import Backend
    from .progress import ProgressReporter


class JobId(int):
    """The id of a job; ``inserted`` tells whether ``enqueue`` created it (``True``) or an
    existing job matched a uniqueness rule (``False``)."""

    inserted: bool

    def __new__(cls, value: int, inserted: bool = True) -> JobId:
        obj = super().__new__(cls, value)
        obj.inserted = inserted
        return obj

    def __repr__(self) -> str:
        return f"JobId({int(self)}, inserted={self.inserted})"

    def __str__(self) -> str:
        # Plain digits in messages, logs and f-strings (int's default str would use __repr__).
        return int.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (JobId, (int(self), self.inserted))


@dataclass(frozen=True)
class JobError:
    """One failed (or cancelled) attempt, oldest first in ``Job.errors``."""

    attempt: int
    error_type: str
    message: str
    traceback: str
    recorded_at: datetime


@dataclass(frozen=True)
class ErrorDetails:
    """An error to record in a job's history; the backend adds the attempt and the time.

    The values are made storable on creation, so that no backend can fail to write them:
    NUL characters (which PostgreSQL text cannot hold) and lone surrogates (which no database
    can encode) become visible escapes, a non-string becomes its ``str()``, and an
    ``error_type`` longer than its column is cut to ``ERROR_TYPE_MAX_LENGTH`` characters,
    ending with ``…``."""

    error_type: str
    message: str
    traceback: str = ""

    def __post_init__(self) -> None:
        error_type = storable_text(self.error_type)
        if len(error_type) > ERROR_TYPE_MAX_LENGTH:
            error_type = error_type[: ERROR_TYPE_MAX_LENGTH - len(TRUNCATED)] + TRUNCATED
        object.__setattr__(self, "error_type", error_type)
        object.__setattr__(self, "message", storable_text(self.message))
        object.__setattr__(self, "traceback", storable_text(self.traceback))


#: Ends an ``error_type`` that was cut to fit its column.
TRUNCATED = "…"


def storable_text(value: object) -> str:
    """``value`` as text every backend can store (see ``ErrorDetails``); never raises."""
    try:
        # A str subclass (e.g. a choices member) becomes a plain str too.
        text = value if type(value) is str else str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error
        text = f"<{type(value).__name__} object: str() failed>"
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(eq=False)
class Job:
    """A job as seen by executors, queries and tests."""

    id: int
    status: JobStatus
    executor: str
    data: Any
    metadata: Any
    attempt: int
    max_attempts: int
    priority: int
    tags: list[str]
    errors: list[JobError]
    inserted_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    discarded_at: datetime | None = None
    claimed_by: str | None = None
    cancel_requested_at: datetime | None = None
    #: What the completed attempt returned (``Done(result=...)``), as stored JSON.
    result: Any = None
    #: Fields whose stored value could not be read (a row written by hand or by a script),
    #: each with the problem and the raw value; such a field holds ``None`` (``[]`` for tags).
    #: Empty for every job the library wrote. A worker never runs such a job: it discards it.
    unreadable: dict[str, str] = field(default_factory=dict)
    _cancel_event: threading.Event | None = field(default=None, repr=False, compare=False)
    #: The last progress its attempt reported (``report_progress``): 0.0 to 1.0, or ``None``.
    progress: float | None = None
    #: The note reported with it (``""`` without one).
    progress_note: str = ""
    #: When it was stored (the store's clock).
    progress_at: datetime | None = None
    #: Set by the worker for the attempt it runs: where ``report_progress`` writes.
    _progress: ProgressReporter | None = field(default=None, repr=False, compare=False)
    #: The workflow this job is a step of (``Workflow.enqueue().workflow_id``), or ``None``.
    workflow_id: str | None = None
    #: The step's name in its workflow (``Workflow.add(..., name=...)``), or ``None``.
    step: str | None = None
    #: The backend running this job (set by the worker), which ``upstream_results`` asks.
    _backend: Backend | None = field(default=None, repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """``True`` once someone asked to cancel this running job; long sync jobs may poll it."""
        if self._cancel_event is not None and self._cancel_event.is_set():
            return True
        return self.cancel_requested_at is not None

    @property
    def finished_at(self) -> datetime | None:
        """When the job reached its final status: the first set of
        ``transitions.FINISHED_AT_FIELDS`` (the database backend's ``Coalesce`` reads the
        same fields in the same order)."""
        return self.completed_at or self.cancelled_at or self.discarded_at

    @property
    def is_last_attempt(self) -> bool:
        # ">=" rather than "==": a max_attempts lowered below the current attempt must not
        # make a failing job retry forever.
        return self.attempt >= self.max_attempts

    def upstream_results(self) -> dict[str, Any]:
        """The results of this workflow step's direct dependencies by step name: what each
        returned as ``Done(result=...)`` (``None`` for one that did not complete, or returned
        no result). ``{}`` for a job that is not a workflow step."""
        if self.workflow_id is None:
            return {}
        return self._store().upstream_results(self.id)

    async def aupstream_results(self) -> dict[str, Any]:
        """``upstream_results`` for ``async def execute``."""
        if self.workflow_id is None:
            return {}
        return await self._store().aupstream_results(self.id)

    def _store(self) -> Backend:
        if self._backend is not None:
            return self._backend
        from .backends import get_backend

        return get_backend()

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.id, self.status, self.executor, self.data, self.metadata, self.attempt,
            self.max_attempts, self.priority, self.tags, self.errors, self.inserted_at,
            self.scheduled_at, self.attempted_at, self.completed_at, self.cancelled_at,
            self.discarded_at, self.claimed_by, self.cancel_requested_at, self.result,
            self.unreadable, self.progress, self.progress_note, self.progress_at,
            self.workflow_id, self.step,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def report_progress(self, progress: float, note: str = "") -> None:
        """Record how far this attempt got (``0.0`` to ``1.0``) and an optional note, e.g.
        ``job.report_progress(0.42, note="page 42 of 100")``; call it from a sync ``execute``.

        Stored at most once a second per job: a value reported within a second of the last
        write is kept and written by the next report after that second, or when the attempt
        ends, so the latest value is never lost. Outside a worker's attempt it only updates
        this ``Job`` value. ``ValueError`` for a value outside 0..1."""
        reporter = self._progress
        if reporter is None:
            self._set_progress(progress, note)
            return
        reporter.report(self, progress, note)

    async def areport_progress(self, progress: float, note: str = "") -> None:
        """``report_progress`` for an ``async def execute``."""
        reporter = self._progress
        if reporter is None:
            self._set_progress(progress, note)
            return
        await reporter.areport(self, progress, note)

    def _set_progress(self, progress: float, note: str) -> None:
        from .progress import check_progress

        self.progress, self.progress_note = check_progress(progress, note)
