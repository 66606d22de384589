"""The single source of truth for how a job moves between statuses.

Which statuses allow a rerun, a cancel or an update; the fields each transition writes; what
a rescue decides; the errors the library records for a cancel and an orphan; which field says
when a job finished. Both backends, the ``JobRecord`` QuerySet and the admin derive from these
names, so a rule changes in one place. Pure: no database, no Django models."""

from __future__ import annotations

from typing import Any

from .exceptions import InvalidTransition
from .job import ErrorDetails
from .status import READY_STATUSES, TERMINAL_STATUSES, ErrorType, JobStatus

#: A rerun runs a finished or retryable job again; a scheduled job is already waiting and an
#: executing one is running.
RERUNNABLE: frozenset[JobStatus] = frozenset({JobStatus.RETRYABLE, *TERMINAL_STATUSES})
#: A cancel stops a waiting job at once and asks a running one to stop; a workflow step
#: still waiting for its dependencies is cancelled at once too.
CANCELLABLE: frozenset[JobStatus] = frozenset(
    {*READY_STATUSES, JobStatus.EXECUTING, JobStatus.WAITING}
)
#: Only a waiting job's fields can be changed.
UPDATABLE: frozenset[JobStatus] = READY_STATUSES

#: The field each final status sets, in the order "finished at" reads them.
FINISH_FIELD: dict[JobStatus, str] = {
    JobStatus.COMPLETE: "completed_at",
    JobStatus.CANCELLED: "cancelled_at",
    JobStatus.DISCARDED: "discarded_at",
}
FINISHED_AT_FIELDS: tuple[str, ...] = tuple(FINISH_FIELD.values())

#: The error message of a job cancelled while it ran, when the request gave no reason.
CANCELLED_WHILE_RUNNING = "cancelled while running"


def check_rerun(job_id: int, status: JobStatus) -> None:
    if status not in RERUNNABLE:
        raise InvalidTransition(
            job_id, status, "rerun", "Only finished or retryable jobs can be rerun."
        )


def check_cancel(job_id: int, status: JobStatus) -> None:
    if status not in CANCELLABLE:
        raise InvalidTransition(
            job_id, status, "cancel", "Only waiting or running jobs can be cancelled."
        )


def check_update(job_id: int, status: JobStatus) -> None:
    if status not in UPDATABLE:
        raise InvalidTransition(job_id, status, "update", "Only waiting jobs can be updated.")


def snoozed_status(attempt_after: int) -> JobStatus:
    """The status of a job given back to the queue with ``attempt_after`` attempts used."""
    return JobStatus.SCHEDULED if attempt_after <= 0 else JobStatus.RETRYABLE


def rerun_status(attempt: int) -> JobStatus:
    """The status of a rerun job that has used ``attempt`` attempts."""
    return JobStatus.SCHEDULED if attempt <= 1 else JobStatus.RETRYABLE


def rerun_changes(attempt: int, *, max_attempts: Any, now: Any) -> dict[str, Any]:
    """Every field a rerun writes: due ``now`` with one more attempt allowed
    (``max_attempts``: the new value, or an expression computing it), its finish and its
    cancel request forgotten. Values may be database expressions."""
    return {
        "status": rerun_status(attempt),
        "max_attempts": max_attempts,
        "scheduled_at": now,
        **dict.fromkeys(FINISHED_AT_FIELDS),
        "cancel_requested_at": None,
        "result": None,
    }


def finish_changes(status: JobStatus, at: Any) -> dict[str, Any]:
    """The fields a move to the final ``status`` at ``at`` (a time, or a database expression
    for its clock) writes."""
    return {"status": status, FINISH_FIELD[status]: at}


def rescue_outcome(attempt: int, max_attempts: int, cancel_requested: bool) -> JobStatus:
    """What a job whose worker went silent becomes: cancelled if someone asked, discarded on
    its last attempt, else retryable (due at once)."""
    if cancel_requested:
        return JobStatus.CANCELLED
    if attempt >= max_attempts:
        return JobStatus.DISCARDED
    return JobStatus.RETRYABLE


def cancel_error(reason: str) -> ErrorDetails:
    """The error a cancel of a waiting job records."""
    return ErrorDetails(ErrorType.CANCELLED, reason)


def running_cancel_error(reason: str | None) -> ErrorDetails:
    """The error recorded when a running job's cancel request takes effect (its result is
    written, or it is rescued): the request's reason, or ``CANCELLED_WHILE_RUNNING``."""
    return cancel_error(reason or CANCELLED_WHILE_RUNNING)


def orphaned_error(worker_id: str | None, attempt: int) -> ErrorDetails:
    """The error a rescue records on a job whose worker went silent."""
    return ErrorDetails(
        ErrorType.ORPHANED,
        f"worker {worker_id or '?'} stopped sending heartbeats while running attempt {attempt}",
    )


#: How the error of a job rescue gave back unstarted begins: a job is given back so at most
#: once per attempt (a job that kills its worker as it starts must still use up its attempts).
UNSTARTED_ORPHAN = "claimed ahead by worker"


def unstarted_orphan_error(worker_id: str | None, attempt: int) -> ErrorDetails:
    """The error a rescue records on a job its worker claimed ahead and never started."""
    return ErrorDetails(
        ErrorType.ORPHANED,
        f"{UNSTARTED_ORPHAN} {worker_id or '?'}, which stopped sending heartbeats before "
        f"starting it; given back with attempt {attempt} unused",
    )


def rescue_gives_back(claimed_ahead: bool, cancel_requested: bool, given_back_before: bool) -> bool:
    """Whether rescue gives a job back with its attempt unused instead of spending it: its
    worker listed it as claimed ahead and not started (``Backend.record_claimed_ahead``),
    no cancel is pending, and it was not given back so at this attempt already."""
    return claimed_ahead and not cancel_requested and not given_back_before


class SkipReason:
    """Why a bulk rerun or cancel left a job alone (stable strings; the admin translates them)."""

    RUNNING = "already running"
    WAITING = "already waiting"
    FINISHED = "already finished"
    NOT_FOUND = "not found"


def skip_reason(status: str) -> str:
    """The ``SkipReason`` for a job that an ``InvalidTransition`` reported in ``status``."""
    if status == JobStatus.EXECUTING:
        return SkipReason.RUNNING
    if status in TERMINAL_STATUSES:
        return SkipReason.FINISHED
    return SkipReason.WAITING


def upstream_failed_error(step: str | None, status: JobStatus) -> ErrorDetails:
    """The error of a workflow step cancelled because its dependency ``step`` ended
    ``status`` (cancelled or discarded) and the step runs only if all succeeded."""
    return ErrorDetails(
        ErrorType.UPSTREAM_FAILED,
        f"dependency {step or '?'!r} ended {status.value}; this step runs only if every "
        "dependency succeeds (run_if='succeeded')",
    )
