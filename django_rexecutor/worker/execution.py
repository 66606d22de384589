"""Running one attempt of a job and turning its outcome into a fenced backend write.

Shared by the worker and ``drain_jobs`` so that both map outcomes the same way (SPEC §3):
``None``/``Done`` → complete, ``Cancel`` → cancelled, ``Snooze`` → waiting again without using
the attempt, ``ExecutionError`` → its type, any other exception → ``panic``, a time-out →
``timeout``. A failed last attempt is discarded, an earlier one retried after the executor's
backoff."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from django.utils import timezone

from ..backends.base import Backend, Claim, ErrorDetails
from ..backoff import DEFAULT_BACKOFF
from ..encoding import to_json_native
from ..exceptions import EncodeDecodeError
from ..outcomes import Cancel, Done, ExecutionError, Snooze
from ..status import ErrorType

if TYPE_CHECKING:
    from ..executor import Executor
    from ..job import Job

logger = logging.getLogger("django_rexecutor.worker")

#: Outcome names, as sent with ``job_finished`` and counted by ``drain_jobs``.
COMPLETE: Final = "complete"
RETRYABLE: Final = "retryable"
DISCARDED: Final = "discarded"
CANCELLED: Final = "cancelled"
SNOOZED: Final = "snoozed"
#: The write was refused: the job is no longer ours (rescued, released or gone).
STALE: Final = "stale"

_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


class JobInterrupted(BaseException):
    """Raised inside a sync job's thread to stop it (time-out, cancel or shutdown).

    A ``BaseException`` so that an executor's ``except Exception`` does not swallow it."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt produced, before anything is written.

    ``kind`` is ``"done"``, ``"cancel"``, ``"snooze"``, ``"error"`` or ``"interrupted"``;
    ``error`` is set for errors (a time-out is an error of type ``timeout``)."""

    kind: str
    error: ErrorDetails | None = None
    reason: str = ""
    delay: timedelta = timedelta(0)
    #: ``Done(result=...)``: a JSON-native value stored with the completed job.
    value: Any = None


DONE_RESULT: Final = AttemptResult("done")
INTERRUPTED_RESULT: Final = AttemptResult("interrupted")


def is_async_executor(executor_cls: type[Executor]) -> bool:
    return inspect.iscoroutinefunction(executor_cls.execute)


def result_of_value(value: object) -> AttemptResult:
    """Map what ``execute`` returned to a result; an unknown value is an error, not a crash."""
    if value is None:
        return DONE_RESULT
    if isinstance(value, Done):
        stored = getattr(value, "result", None)
        if stored is None:
            return DONE_RESULT
        try:
            # Checked here, so a bad value fails the attempt instead of the worker's write.
            stored = to_json_native(stored, what="Done(result=...)")
        except EncodeDecodeError as exc:
            return AttemptResult("error", ErrorDetails(ErrorType.PANIC, str(exc)))
        return AttemptResult("done", value=stored)
    if isinstance(value, Cancel):
        return AttemptResult("cancel", reason=value.reason)
    if isinstance(value, Snooze):
        return AttemptResult("snooze", delay=value.delay)
    return AttemptResult(
        "error",
        ErrorDetails(
            ErrorType.PANIC,
            f"execute() returned {value!r}; expected None, Done(), Cancel(...) or Snooze(...).",
        ),
    )


def result_of_exception(exc: BaseException) -> AttemptResult:
    if isinstance(exc, JobInterrupted):
        return INTERRUPTED_RESULT
    text = "".join(traceback.format_exception(exc))
    if isinstance(exc, ExecutionError):
        message = exc.message or str(exc) or type(exc).__name__
        return AttemptResult("error", ErrorDetails(str(exc.error_type), message, text))
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return AttemptResult("error", ErrorDetails(ErrorType.PANIC, message, text))


def timeout_result(limit: timedelta) -> AttemptResult:
    seconds = limit.total_seconds()
    return AttemptResult(
        "error", ErrorDetails(ErrorType.TIMEOUT, f"attempt exceeded its timeout of {seconds:g}s")
    )


def attempt_timeout(executor: Executor, job: Job) -> timedelta | None:
    """``executor.timeout(job)``; a broken hook is logged and means no limit."""
    try:
        limit = executor.timeout(job)
    except Exception:
        logger.exception(
            "%s.timeout() failed for job %s; running without a limit", job.executor, job.id
        )
        return None
    if limit is not None and not isinstance(limit, timedelta):
        limit = timedelta(seconds=float(limit))
    return limit


def run_sync(executor: Executor, job: Job) -> AttemptResult:
    """Call a sync ``execute`` and capture its outcome (never raises, except interrupts are
    turned into ``INTERRUPTED_RESULT``)."""
    try:
        return result_of_value(executor.execute(job))
    except BaseException as exc:  # noqa: BLE001 - a job's failure is data, not a worker crash
        return result_of_exception(exc)


async def run_async(executor: Executor, job: Job) -> AttemptResult:
    """Await an ``async def execute``; cancellation (time-out, cancel, shutdown) is reported as
    ``INTERRUPTED_RESULT``."""
    try:
        return result_of_value(await executor.execute(job))  # type: ignore[misc]
    except asyncio.CancelledError:
        return INTERRUPTED_RESULT
    except BaseException as exc:  # noqa: BLE001
        return result_of_exception(exc)


def _retry_at(executor: Executor, job: Job, now: datetime) -> datetime:
    try:
        delay = executor.backoff(job)
    except Exception:
        logger.exception(
            "%s.backoff() failed for job %s; using the default backoff", job.executor, job.id
        )
        delay = DEFAULT_BACKOFF.backoff(job.attempt)
    try:
        return max(now, now + delay)
    except OverflowError:
        # A huge backoff (e.g. exponential after many attempts) lands at the end of time.
        return _LATEST


def write_result(
    backend: Backend,
    executor: Executor | None,
    job: Job,
    result: AttemptResult,
    *,
    now: datetime | None = None,
) -> str:
    """Record ``result`` for ``job`` with a write fenced by its claim; return the outcome name
    (``STALE`` if the job was no longer ours). ``"done"`` is written here too, although the
    worker batches those with ``complete_jobs``."""
    now = now or timezone.now()
    claim = Claim.of(job)
    kind = result.kind
    if kind == "cancel" or job.cancel_requested:
        # A cancel request wins over whatever the attempt produced (the backend enforces it).
        reason = result.reason or "cancelled while running"
        error = ErrorDetails(ErrorType.CANCELLED, reason)
        return CANCELLED if backend.mark_job_cancelled(job.id, error, claim=claim) else STALE
    if kind == "done":
        if result.value is None:
            written = backend.mark_job_complete(job.id, claim=claim)
        else:
            written = backend.mark_job_complete(job.id, claim=claim, result=result.value)  # type: ignore[call-arg,unused-ignore]
        return COMPLETE if written else STALE
    if kind == "snooze":
        try:
            at = max(now, now + result.delay)
        except OverflowError:
            at = _LATEST
        return SNOOZED if backend.mark_job_snoozed(job.id, at, claim=claim) else STALE
    error = result.error or ErrorDetails(ErrorType.PANIC, "the attempt was interrupted")
    if job.is_last_attempt or executor is None:
        return DISCARDED if backend.mark_job_discarded(job.id, error, claim=claim) else STALE
    at = _retry_at(executor, job, now)
    return RETRYABLE if backend.mark_job_retryable(job.id, at, error, claim=claim) else STALE


def log_outcome(job: Job, outcome: str, duration: float, result: AttemptResult | None) -> None:
    """One line per attempt: id, executor, attempt, outcome and duration in the text itself."""
    if outcome in (COMPLETE, SNOOZED, CANCELLED):
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job %s %s attempt %s/%s %s in %.3fs",
                job.id, job.executor, job.attempt, job.max_attempts, outcome, duration,
            )  # fmt: skip
        return
    error = result.error if result is not None else None
    logger.warning(
        "job %s %s attempt %s/%s %s in %.3fs: %s: %s",
        job.id, job.executor, job.attempt, job.max_attempts, outcome, duration,
        error.error_type if error else "-", error.message if error else "-",
    )  # fmt: skip


def send_started(executor_cls: type[Executor], job: Job) -> None:
    from ..signals import job_started

    if job_started.receivers:
        job_started.send(sender=executor_cls, job=job)


def send_finished(executor_cls: type[Any], job: Job, outcome: str, duration: float) -> None:
    from ..signals import job_finished

    if job_finished.receivers:
        job_finished.send(sender=executor_cls, job=job, outcome=outcome, duration=duration)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
