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

from ..backends.base import Backend, Claim, ErrorDetails, storable_text
from ..backoff import DEFAULT_BACKOFF, to_timedelta
from ..encoding import to_json_native
from ..exceptions import EncodeDecodeError, JobNotFound
from ..logfields import install, job_fields
from ..middleware import acall_execute, call_execute
from ..outcomes import Cancel, Done, ExecutionError, Snooze
from ..status import ErrorType
from .connections import DB_ERRORS

if TYPE_CHECKING:
    from django.dispatch import Signal

    from ..executor import Executor
    from ..job import Job

logger = install(logging.getLogger("django_rexecutor.worker"))

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
            f"execute() returned {_safe_repr(value)}; expected None, Done(), Cancel(...) or "
            "Snooze(...).",
        ),
    )


def result_of_exception(exc: BaseException) -> AttemptResult:
    """The failure ``exc`` stands for. Never raises, even for an exception whose ``__str__``
    (or ``error_type``) is broken: the attempt must end whatever it raised."""
    if isinstance(exc, JobInterrupted | asyncio.CancelledError):
        return INTERRUPTED_RESULT
    text = _safe_traceback(exc)
    if isinstance(exc, ExecutionError):
        message = storable_text(exc.message) or _safe_str(exc) or type(exc).__name__
        return AttemptResult("error", ErrorDetails(storable_text(exc.error_type), message, text))
    return AttemptResult("error", ErrorDetails(ErrorType.PANIC, describe_exception(exc), text))


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: message"`` (or just the type's name), safe for any exception."""
    message = _safe_str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ is the job's bug, not the worker's
        return f"<{type(exc).__name__}.__str__() failed>"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__} object: repr() failed>"


def _safe_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - e.g. a __str__ that fails in a way traceback misses
        return f"{type(exc).__name__} (its traceback could not be formatted)"


def timeout_result(limit: timedelta) -> AttemptResult:
    seconds = limit.total_seconds()
    return AttemptResult(
        "error", ErrorDetails(ErrorType.TIMEOUT, f"attempt exceeded its timeout of {seconds:g}s")
    )


def attempt_timeout(executor: Executor, job: Job) -> timedelta | None:
    """``executor.timeout(job)``; a broken hook is logged and means no limit."""
    try:
        limit = executor.timeout(job)
        return None if limit is None else to_timedelta(limit, name=f"{job.executor}.timeout()")
    except Exception:
        logger.exception(
            "%s.timeout() failed for job %s; running without a limit", job.executor, job.id,
            extra=job_fields(job),
        )  # fmt: skip
        return None


def run_sync(executor: Executor, job: Job) -> AttemptResult:
    """Call a sync ``execute`` and capture its outcome (never raises, except interrupts are
    turned into ``INTERRUPTED_RESULT``)."""
    try:
        return result_of_value(call_execute(executor, job))
    except BaseException as exc:  # noqa: BLE001 - a job's failure is data, not a worker crash
        return result_of_exception(exc)


async def run_async(executor: Executor, job: Job) -> AttemptResult:
    """Await an ``async def execute``; cancellation (time-out, cancel, shutdown) is reported as
    ``INTERRUPTED_RESULT``."""
    try:
        return result_of_value(await acall_execute(executor, job))
    except asyncio.CancelledError:
        return INTERRUPTED_RESULT
    except BaseException as exc:  # noqa: BLE001
        return result_of_exception(exc)


def _retry_at(executor: Executor, job: Job, now: datetime) -> datetime:
    try:
        # Like every duration in the library: a timedelta or a number of seconds.
        delay = to_timedelta(executor.backoff(job), name=f"{job.executor}.backoff()")
    except Exception:
        logger.exception(
            "%s.backoff() failed for job %s; using the default backoff", job.executor, job.id,
            extra=job_fields(job),
        )  # fmt: skip
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
    (``STALE`` if the job was no longer ours, or was deleted while it ran). ``"done"`` is
    written here too, although the worker batches those with ``complete_jobs``."""
    try:
        return _write(backend, executor, job, result, now or timezone.now())
    except JobNotFound:
        logger.warning(
            "job %s %s attempt %s: deleted while it ran; its %s result is not recorded",
            job.id, job.executor, job.attempt, result.kind,
            extra=job_fields(job, outcome=STALE),
        )  # fmt: skip
        return STALE


def _write(
    backend: Backend, executor: Executor | None, job: Job, result: AttemptResult, now: datetime
) -> str:
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


#: Recorded when even the failure explaining a refused write cannot be written.
_MINIMAL_FAILURE: Final = AttemptResult(
    "error",
    ErrorDetails(ErrorType.PANIC, "the worker could not record this attempt's result; see its log"),
)


def record_result(
    backend: Backend,
    executor: Executor | None,
    job: Job,
    result: AttemptResult,
    *,
    now: datetime | None = None,
) -> tuple[str, AttemptResult]:
    """``write_result``, surviving a write the backend refuses for good: returns the outcome
    and the result actually recorded.

    A transient database error (``DB_ERRORS``) propagates, so the caller retries the write
    once the database is back. Any other error means this job's result cannot be written as
    it is: the attempt is then recorded as a failure explaining why (the job is discarded,
    or cancelled if that was requested), and failing that with a minimal fixed error. If
    even that is refused, nothing is recorded; the job stays executing until this worker
    stops and another one rescues it."""
    try:
        return write_result(backend, executor, job, result, now=now), result
    except DB_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - one job's write must not stop the worker
        _log_refused(job, result, exc)
        explained = AttemptResult(
            "error",
            ErrorDetails(
                ErrorType.PANIC,
                f"the worker could not record this attempt's {result.kind} result: "
                f"{describe_exception(exc)}",
            ),
        )
    for fallback in (explained, _MINIMAL_FAILURE):
        try:
            # No executor: a failure made up by the worker is not retried.
            return write_result(backend, None, job, fallback, now=now), fallback
        except DB_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001
            _log_refused(job, fallback, exc)
    logger.error(
        "job %s %s attempt %s: nothing could be recorded; it stays executing until this worker "
        "stops and it is rescued",
        job.id, job.executor, job.attempt,
        extra=job_fields(job, outcome=STALE),
    )  # fmt: skip
    return STALE, result


def _log_refused(job: Job, result: AttemptResult, exc: Exception) -> None:
    logger.error(
        "job %s %s attempt %s: recording its %s result failed: %s",
        job.id, job.executor, job.attempt, result.kind, describe_exception(exc),
        exc_info=exc, extra=job_fields(job),
    )  # fmt: skip


def log_outcome(job: Job, outcome: str, duration: float, result: AttemptResult | None) -> None:
    """One line per attempt: id, executor, attempt, outcome and duration in the text itself,
    and as ``extra=`` fields (``logfields``)."""
    if outcome in (COMPLETE, SNOOZED, CANCELLED):
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job %s %s attempt %s/%s %s in %.3fs",
                job.id, job.executor, job.attempt, job.max_attempts, outcome, duration,
                extra=job_fields(job, outcome=outcome, duration=duration),
            )  # fmt: skip
        return
    error = result.error if result is not None else None
    logger.warning(
        "job %s %s attempt %s/%s %s in %.3fs: %s: %s",
        job.id, job.executor, job.attempt, job.max_attempts, outcome, duration,
        error.error_type if error else "-", error.message if error else "-",
        extra=job_fields(job, outcome=outcome, duration=duration),
    )  # fmt: skip


def send_started(executor_cls: type[Executor], job: Job) -> None:
    from ..signals import job_started

    if job_started.receivers:
        _send_robust(job_started, "job_started", executor_cls, job)


def send_finished(executor_cls: type[Any], job: Job, outcome: str, duration: float) -> None:
    from ..signals import job_finished

    if job_finished.receivers:
        _send_robust(
            job_finished, "job_finished", executor_cls, job, outcome=outcome, duration=duration
        )


def _send_robust(signal: Signal, name: str, sender: type[Any], job: Job, **kwargs: Any) -> None:
    """Send ``signal``; a receiver that raises is logged and skipped, so it cannot stop the
    worker (or leave the job it was told about unrecorded)."""
    for receiver, response in signal.send_robust(sender=sender, job=job, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "%s receiver %s failed for job %s %s: %s",
                name, _receiver_name(receiver), job.id, job.executor,
                describe_exception(response),
                exc_info=response, extra=job_fields(job),
            )  # fmt: skip


def _receiver_name(receiver: object) -> str:
    module = getattr(receiver, "__module__", None)
    qualname = getattr(receiver, "__qualname__", None) or _safe_repr(receiver)
    return f"{module}.{qualname}" if module else str(qualname)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
