"""Workflow dependencies in the Django backend: inserting a workflow, releasing the dependents
of a step that reached a final status, reopening the ones a rerun step had cancelled, and
reading a step's upstream results.

``release`` and ``reopen`` run inside the transaction of the write that finished (or
reran) the step, whatever path made it: the worker's result writes, a cancel, a rerun, the
rescue pass. Each locks the dependents it changes (``select_for_update``, in id order) before
reading their count of unfinished dependencies, so two transactions finishing the last two
dependencies of a step at once are serialised on its row: the second one reads the count the
first one wrote, and exactly one of them makes the step due. A locking read sees the latest
committed row on every database (also under MariaDB's ``REPEATABLE READ``); on SQLite the
first write holds the database's write lock until the transaction ends."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db.models.functions import Now

from ...models import JobDependencyRecord
from ...status import TERMINAL_STATUSES, ErrorType, JobStatus
from ...transitions import finish_changes, snoozed_status, upstream_failed_error
from .base import DjangoBase, error_record

#: Ids per ``IN (…)`` list (well under SQLite's variable limit).
CHUNK = 500
FAILED = frozenset({JobStatus.CANCELLED, JobStatus.DISCARDED})
TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def _edges_from(backend: DjangoBase, depends_on: Sequence[int]) -> dict[int, list[int]]:
    """The dependents of ``depends_on``: dependent id → the ones among them it waits for."""
    edges = JobDependencyRecord.objects.using(backend.alias)
    out: dict[int, list[int]] = {}
    for ids in _chunks(sorted(depends_on)):
        for job_id, dep in edges.filter(depends_on_id__in=ids).values_list(
            "job_id", "depends_on_id"
        ):
            out.setdefault(job_id, []).append(dep)
    return out


def _edges_to(backend: DjangoBase, jobs: Sequence[int]) -> dict[int, list[int]]:
    """The dependencies of ``jobs``: job id → the ids it waits for."""
    edges = JobDependencyRecord.objects.using(backend.alias)
    out: dict[int, list[int]] = {}
    for ids in _chunks(sorted(jobs)):
        for job_id, dep in edges.filter(job_id__in=ids).values_list("job_id", "depends_on_id"):
            out.setdefault(job_id, []).append(dep)
    return out


def _locked(backend: DjangoBase, ids: Sequence[int], statuses: Sequence[str], *fields: str) -> Any:
    """``fields`` of the jobs among ``ids`` in ``statuses``, locked until the transaction
    ends, in id order (so concurrent releases lock shared dependents in the same order)."""
    rows: list[Any] = []
    for chunk in _chunks(sorted(ids)):
        rows += (
            backend.jobs.select_for_update()
            .filter(pk__in=chunk, status__in=list(statuses))
            .order_by("pk")
            .values_list("pk", *fields)
        )
    return rows


def release(backend: DjangoBase, finished: Mapping[int, JobStatus]) -> None:
    """The jobs of ``finished`` (id → final status) just reached it, in the caller's
    transaction: count them done for their waiting dependents; a dependent with none left
    becomes due, one that needed a failed dependency to succeed is cancelled with an
    ``upstream_failed`` error, and its own dependents are released in turn."""
    frontier = dict(finished)
    while frontier:
        waits_for = _edges_from(backend, list(frontier))
        if not waits_for:
            return
        rows = _locked(
            backend, list(waits_for), [JobStatus.WAITING], "pending", "run_if", "attempt"
        )
        cancelled: dict[int, tuple[int, int]] = {}  # id → (attempt, the failed dependency)
        due: dict[JobStatus, list[int]] = {}
        counts: dict[int, list[int]] = {}
        for pk, pending, run_if, attempt in rows:
            deps = waits_for[pk]
            failed = [d for d in deps if frontier[d] in FAILED]
            if failed and run_if != "finished":
                cancelled[pk] = (attempt, failed[0])
                continue
            left = pending - len(deps)
            if left <= 0:
                due.setdefault(snoozed_status(attempt), []).append(pk)
            else:
                counts.setdefault(left, []).append(pk)
        for status, ids in due.items():
            # Due as its builder scheduled it (at enqueue, or later): the claim takes it now.
            backend.jobs.filter(pk__in=ids).update(status=status, pending=0)
        for left, ids in counts.items():
            backend.jobs.filter(pk__in=ids).update(pending=left)
        if cancelled:
            _cancel_upstream_failed(backend, cancelled, frontier)
        frontier = dict.fromkeys(cancelled, JobStatus.CANCELLED)


def _cancel_upstream_failed(
    backend: DjangoBase, cancelled: Mapping[int, tuple[int, int]], statuses: Mapping[int, JobStatus]
) -> None:
    failed_ids = sorted({dep for _, dep in cancelled.values()})
    names = dict(backend.jobs.filter(pk__in=failed_ids).values_list("pk", "step"))
    now = Now()
    for ids in _chunks(sorted(cancelled)):
        backend.jobs.filter(pk__in=ids).update(
            **finish_changes(JobStatus.CANCELLED, now), pending=0
        )
    backend.errors.bulk_create(
        error_record(pk, attempt, upstream_failed_error(names.get(dep), statuses[dep]), now)
        for pk, (attempt, dep) in cancelled.items()
    )


def reopen(backend: DjangoBase, rerun: Sequence[int]) -> None:
    """The finished steps ``rerun`` were just rerun (they are unfinished again), in the
    caller's transaction: each waiting dependent waits for them again, one that was due but
    has not started yet goes back to waiting, and each dependent they had cancelled
    (``upstream_failed``) goes back to ``waiting`` unless another of its dependencies still
    failed; the dependents of those are reopened in turn."""
    frontier = list(rerun)
    while frontier:
        waits_for = _edges_from(backend, frontier)
        if not waits_for:
            return
        statuses = [JobStatus.WAITING, JobStatus.CANCELLED, JobStatus.SCHEDULED]
        rows = _locked(backend, list(waits_for), statuses, "status", "pending", "attempt")
        upstream_failed = _cancelled_by_upstream(
            backend, [pk for pk, status, *_ in rows if status == JobStatus.CANCELLED]
        )
        not_started = [
            pk for pk, status, _, attempt in rows if status == "scheduled" and not attempt
        ]
        counts: dict[int, list[int]] = {}
        for pk, status, pending, _ in rows:
            if status == JobStatus.WAITING:
                counts.setdefault(pending + len(waits_for[pk]), []).append(pk)
        reopened = _reopenable(backend, upstream_failed)
        held_back = _reopenable(backend, not_started, failures_block=False)
        for pending, ids in _group({**reopened, **held_back}).items():
            backend.jobs.filter(pk__in=ids).update(
                status=JobStatus.WAITING, pending=pending, cancelled_at=None
            )
        for pending, ids in counts.items():
            backend.jobs.filter(pk__in=ids).update(pending=pending)
        frontier = sorted(reopened)


def _group(pending_of: Mapping[int, int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for pk, pending in pending_of.items():
        out.setdefault(pending, []).append(pk)
    return out


def _cancelled_by_upstream(backend: DjangoBase, ids: Sequence[int]) -> list[int]:
    """Those of the cancelled jobs ``ids`` whose cancel was a dependency's failure (their
    newest error is ``upstream_failed``)."""
    newest: dict[int, str] = {}
    for chunk in _chunks(sorted(ids)):
        rows = (
            backend.errors.filter(job_id__in=chunk)
            .order_by("job_id", "-recorded_at", "-id")
            .values_list("job_id", "error_type")
        )
        for job_id, error_type in rows:
            newest.setdefault(job_id, error_type)
    return [pk for pk in ids if newest.get(pk) == ErrorType.UPSTREAM_FAILED]


def _reopenable(
    backend: DjangoBase, ids: Sequence[int], *, failures_block: bool = True
) -> dict[int, int]:
    """Of the steps ``ids``, those none of whose dependencies failed (all of them, without
    ``failures_block``), with how many of their dependencies are unfinished."""
    if not ids:
        return {}
    deps_of = _edges_to(backend, ids)
    all_deps = sorted({d for deps in deps_of.values() for d in deps})
    # Locked too: a dependency finishing at this moment is serialised with this reopen.
    status_of: dict[int, str] = {}
    for chunk in _chunks(all_deps):
        status_of.update(
            backend.jobs.select_for_update()
            .filter(pk__in=chunk)
            .order_by("pk")
            .values_list("pk", "status")
        )
    out: dict[int, int] = {}
    for pk in ids:
        statuses = [status_of.get(d) for d in deps_of.get(pk, [])]
        if failures_block and any(s in FAILED for s in statuses):
            continue
        # A dependency deleted meanwhile counts as finished.
        out[pk] = sum(1 for s in statuses if s is not None and s not in TERMINAL)
    return out
