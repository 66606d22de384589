"""An in-process backend for tests and examples: same rules as the database backend, no
database. Thread-safe; ``wait_for_jobs`` wakes as soon as a job is enqueued or given back.

Longer than our modules usually are, on purpose: it is one class implementing the whole
``Backend`` contract over one dict under one lock, and it reads best in one place. The rules it
applies come from ``transitions``; only their bookkeeping is here."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import socket
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..conf import rexecutor_settings
from ..encoding import to_json_native
from ..exceptions import JobNotFound
from ..job import ErrorDetails, Job, JobError, JobId, storable_text
from ..limits import Limits
from ..notifiers.base import CANCEL_CHANNEL, JOBS_CHANNEL
from ..query import Query
from ..status import READY_STATUSES, TERMINAL_STATUSES, ErrorType, JobStatus
from ..steps import check_steps
from ..transitions import (
    FINISH_FIELD,
    UNSTARTED_ORPHAN,
    cancel_error,
    check_cancel,
    check_rerun,
    check_update,
    orphaned_error,
    rerun_changes,
    rescue_gives_back,
    rescue_outcome,
    running_cancel_error,
    snoozed_status,
    unstarted_orphan_error,
    upstream_failed_error,
)
from ..uniqueness import UniquenessCriteria
from ..validation import (
    check_aware,
    check_max_attempts,
    check_payloads,
    check_priority,
    check_tags,
)
from .base import Backend
from .values import (
    BulkResult,
    Claim,
    EnqueuableJob,
    JobCounts,
    PruneRule,
    PruneSpec,
    WorkerInfo,
    WorkflowStep,
)


@dataclass
class _Step:
    """A workflow step's bookkeeping: when it runs, how many dependencies are unfinished,
    which jobs it waits for and which wait for it."""

    run_if: str
    pending: int
    after: list[int]
    dependents: list[int] = field(default_factory=list)


_FAILED = frozenset({JobStatus.CANCELLED, JobStatus.DISCARDED})


class InMemoryBackend(Backend):
    """Keeps jobs in a dict; for tests (see ``django_rexecutor.testing``)."""

    store = "memory"

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._unique_keys: dict[int, str | None] = {}
        self._partitions: dict[int, str] = {}
        #: (executor, partition) → start times of rate-limited executors' jobs.
        self._starts: dict[tuple[str, str], list[datetime]] = {}
        self._paused: set[str] = set()
        self._cancel_reasons: dict[int, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        #: worker → the jobs it last said it claimed ahead (``record_claimed_ahead``).
        self._ahead: dict[str, frozenset[int]] = {}
        #: Cron ticks taken: (entry name, tick time) → job id.
        self._ticks: dict[tuple[str, datetime], int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        #: Workflow steps: job id → what the release needs (``_Step``).
        self._steps: dict[int, _Step] = {}

    def __repr__(self) -> str:
        return f"<InMemoryBackend: {len(self._jobs)} jobs>"

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._unique_keys.clear()
            self._partitions.clear()
            self._starts.clear()
            self._paused.clear()
            self._workers.clear()
            self._ticks.clear()
            self._steps.clear()

    def _get(self, job_id: int, executor: str | None = None) -> Job:
        job = self._jobs.get(job_id)
        if job is None or (executor is not None and job.executor != executor):
            raise JobNotFound(job_id, f"for executor {executor!r}." if executor else "")
        return job

    @staticmethod
    def _copy(job: Job, *, tracebacks: bool = True) -> Job:
        return replace(
            job,
            data=copy.deepcopy(job.data),
            metadata=copy.deepcopy(job.metadata),
            tags=list(job.tags),
            errors=list(job.errors)
            if tracebacks
            else [replace(e, traceback="") for e in job.errors],
        )

    def _notify(self, job: Job | None = None) -> None:
        """Wake ``wait_for_jobs``, and announce ``job`` on the notifier if it is now ready
        (or, running, was asked to cancel)."""
        self._changed.notify_all()
        if job is None:
            return
        if job.status in READY_STATUSES:
            self.notifier().notify(JOBS_CHANNEL, job.executor)
        elif job.status == JobStatus.EXECUTING and job.cancel_requested_at is not None:
            self.notifier().notify(CANCEL_CHANNEL, str(job.id))

    # -- enqueue -------------------------------------------------------------------------
    def enqueue(self, job: EnqueuableJob) -> JobId:
        check_payloads(job, rexecutor_settings.MAX_PAYLOAD_BYTES)
        with self._lock:
            criteria = job.uniqueness
            if criteria is not None and not criteria.disabled:
                existing = self._find_duplicate(job, criteria)
                if existing is not None:
                    replace_ = criteria.on_conflict_replace
                    if replace_ is not None and existing.status in replace_.statuses:
                        for name in replace_.fields:
                            setattr(existing, name, copy.deepcopy(getattr(job, name)))
                        self._notify(existing)
                    return JobId(existing.id, inserted=False)
            job_id = next(self._ids)
            stored = self._jobs[job_id] = Job(
                id=job_id,
                status=JobStatus.SCHEDULED,
                executor=job.executor,
                data=copy.deepcopy(job.data),
                metadata=copy.deepcopy(job.metadata),
                attempt=0,
                max_attempts=job.max_attempts,
                priority=job.priority,
                tags=list(job.tags),
                errors=[],
                inserted_at=timezone.now(),
                scheduled_at=job.scheduled_at,
            )
            self._unique_keys[job_id] = job.unique_key
            self._partitions[job_id] = job.partition_key
            self._notify(stored)
            return JobId(job_id)

    def _find_duplicate(self, job: EnqueuableJob, criteria: UniquenessCriteria) -> Job | None:
        for existing in self._jobs.values():
            if existing.status not in criteria.statuses:
                continue
            if criteria.has_key and self._unique_keys.get(existing.id) != criteria.key_hash:
                continue
            if criteria.executor and existing.executor != job.executor:
                continue
            if criteria.window is not None and (
                abs(existing.scheduled_at - job.scheduled_at) > criteria.window
            ):
                continue
            return existing
        return None

    def enqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        limit = rexecutor_settings.MAX_PAYLOAD_BYTES
        for job in jobs:  # all checked before anything is stored
            check_payloads(job, limit)
        with self._lock:
            return [self.enqueue(j) for j in jobs]

    # -- claiming ------------------------------------------------------------------------
    def claim_jobs(
        self,
        worker_id: str,
        capacity: Mapping[str, int],
        limit: int,
        *,
        limits: Mapping[str, Limits] | None = None,
    ) -> list[Job]:
        now = timezone.now()
        limits = {n: lim for n, lim in (limits or {}).items() if lim.active}
        with self._lock:
            ready = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.status in READY_STATUSES
                    and j.scheduled_at <= now
                    and capacity.get(j.executor, 0) > 0
                    and j.executor not in self._paused
                ),
                key=lambda j: (j.priority, j.scheduled_at, j.id),
            )
            room = self._limit_room(limits, now)
            taken: dict[str, int] = {}
            claimed: list[Job] = []
            for job in ready:
                if len(claimed) >= limit:
                    break
                if taken.get(job.executor, 0) >= capacity[job.executor]:
                    continue
                lim = limits.get(job.executor)
                if lim is not None:
                    slot = (
                        job.executor,
                        self._partitions.get(job.id, "") if lim.partition_by else "",
                    )
                    if room.setdefault(slot, lim.per_partition()) <= 0:
                        continue
                    room[slot] -= 1
                    if lim.rate_limit is not None:
                        self._starts.setdefault(slot, []).append(now)
                taken[job.executor] = taken.get(job.executor, 0) + 1
                job.status = JobStatus.EXECUTING
                job.attempt += 1
                job.attempted_at = now
                job.claimed_by = worker_id
                job.cancel_requested_at = None
                claimed.append(self._copy(job))
            return claimed

    def _limit_room(
        self, limits: Mapping[str, Limits], now: datetime
    ) -> dict[tuple[str, str], int]:
        """How many more jobs each (executor, partition) with running jobs or recent starts
        may start now; the others may start ``Limits.per_partition()``."""
        room: dict[tuple[str, str], int] = {}

        def key(job: Job, lim: Limits) -> tuple[str, str]:
            return (job.executor, self._partitions.get(job.id, "") if lim.partition_by else "")

        running: dict[tuple[str, str], int] = {}
        for j in self._jobs.values():
            lim = limits.get(j.executor)
            if lim is not None and j.status == JobStatus.EXECUTING:
                running[key(j, lim)] = running.get(key(j, lim), 0) + 1
        for slot, n in running.items():
            lim = limits[slot[0]]
            if lim.global_concurrency is not None:
                room[slot] = min(lim.per_partition(), lim.global_concurrency - n)
        for slot, times in list(self._starts.items()):
            lim = limits.get(slot[0])
            if lim is None or lim.rate_limit is None:
                continue
            times[:] = [t for t in times if t > now - lim.rate_limit.period]
            left = lim.rate_limit.allowed - len(times)
            room[slot] = min(room.get(slot, lim.per_partition()), left)
        return room

    def next_scheduled_at(self, executors: Collection[str]) -> datetime | None:
        with self._lock:
            times = [
                j.scheduled_at
                for j in self._jobs.values()
                if j.status in READY_STATUSES
                and j.executor in executors
                and j.executor not in self._paused
            ]
        return min(times, default=None)

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        with self._changed:
            self._changed.wait(max(0.0, timeout))

    # -- results -------------------------------------------------------------------------
    def _write_result(self, job_id: int, claim: Claim | None) -> Job | None:
        """The job if a result may be written under ``claim``, else ``None``."""
        job = self._get(job_id)
        if job.status != JobStatus.EXECUTING:
            return None
        if claim is not None and (job.attempt, job.claimed_by) != (claim.attempt, claim.worker_id):
            return None
        return job

    def _settle(
        self,
        job_id: int,
        claim: Claim | None,
        status: JobStatus,
        error: ErrorDetails | None,
        scheduled_at: datetime | None = None,
        result: Any = None,
    ) -> bool:
        with self._lock:
            job = self._write_result(job_id, claim)
            if job is None:
                return False
            now = timezone.now()
            if job.cancel_requested_at is not None:
                status = JobStatus.CANCELLED
                error = running_cancel_error(self._cancel_reasons.pop(job_id, ""))
            job.status = status
            if status in FINISH_FIELD:
                setattr(job, FINISH_FIELD[status], now)
            if status == JobStatus.COMPLETE:
                job.result = copy.deepcopy(result)
            if scheduled_at is not None and status in READY_STATUSES:
                job.scheduled_at = scheduled_at
            if error is not None:
                job.errors.append(
                    JobError(job.attempt, error.error_type, error.message, error.traceback, now)
                )
            self._notify(job)
            if job.workflow_id is not None and status in TERMINAL_STATUSES:
                self._release({job_id: status})
            return True

    def mark_job_complete(
        self, job_id: int, *, claim: Claim | None = None, result: Any = None
    ) -> bool:
        return self._settle(job_id, claim, JobStatus.COMPLETE, None, result=result)

    def mark_job_retryable(
        self,
        job_id: int,
        next_scheduled_at: datetime,
        error: ErrorDetails,
        *,
        claim: Claim | None = None,
    ) -> bool:
        return self._settle(job_id, claim, JobStatus.RETRYABLE, error, next_scheduled_at)

    def mark_job_discarded(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        return self._settle(job_id, claim, JobStatus.DISCARDED, error)

    def mark_job_cancelled(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        return self._settle(job_id, claim, JobStatus.CANCELLED, error)

    def mark_job_snoozed(
        self, job_id: int, next_scheduled_at: datetime, *, claim: Claim | None = None
    ) -> bool:
        with self._lock:
            job = self._write_result(job_id, claim)
            if job is None:
                return False
            if job.cancel_requested_at is not None:
                return self._settle(job_id, claim, JobStatus.CANCELLED, None)
            job.attempt -= 1
            status = snoozed_status(job.attempt)
            return self._settle(job_id, None, status, None, next_scheduled_at)

    def release_jobs(self, claims: Sequence[Claim]) -> int:
        now = timezone.now()
        released = 0
        for c in claims:
            with contextlib.suppress(JobNotFound):
                released += self.mark_job_snoozed(c.job_id, now, claim=c)
        return released

    # -- management ----------------------------------------------------------------------
    def cancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        reason = storable_text(reason)
        with self._lock:
            job = self._get(job_id, executor)
            now = timezone.now()
            check_cancel(job_id, job.status)
            if job.status == JobStatus.EXECUTING:
                if job.cancel_requested_at is None:
                    job.cancel_requested_at = now
                    self._cancel_reasons[job_id] = reason
            else:
                job.status = JobStatus.CANCELLED
                job.cancelled_at = now
                error = cancel_error(reason)
                job.errors.append(
                    JobError(job.attempt, error.error_type, error.message, error.traceback, now)
                )
                if job.workflow_id is not None:
                    self._release({job_id: JobStatus.CANCELLED})
            self._notify(job)
            return self._copy(job)

    def rerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        with self._lock:
            job = self._get(job_id, executor)
            check_rerun(job_id, job.status)
            was_finished = job.status in TERMINAL_STATUSES
            changes = rerun_changes(
                job.attempt, max_attempts=job.max_attempts + 1, now=timezone.now()
            )
            for name, value in changes.items():
                setattr(job, name, value)
            if job.workflow_id is not None and was_finished:
                self._reopen([job_id])
            self._notify(job)
            return self._copy(job)

    def update_job(self, job: Job, *, executor: str | None = None) -> Job:
        data = to_json_native(job.data, what="data")
        metadata = to_json_native(job.metadata, what="metadata")
        max_attempts = check_max_attempts(job.max_attempts)
        priority = check_priority(job.priority)
        tags = check_tags(job.tags)
        scheduled_at = check_aware(job.scheduled_at, name="scheduled_at")
        with self._lock:
            stored = self._get(job.id, executor)
            check_update(job.id, stored.status)
            stored.data, stored.metadata, stored.tags = data, metadata, tags
            stored.max_attempts, stored.priority = max_attempts, priority
            stored.scheduled_at = scheduled_at
            self._notify(stored)
            return self._copy(stored)

    def query(
        self,
        query: Query,
        *,
        limit: int | None = None,
        after_id: int | None = None,
        tracebacks: bool = True,
    ) -> list[Job]:
        found: list[Job] = []
        with self._lock:
            for job_id in sorted(self._jobs):
                if limit is not None and len(found) >= limit:
                    break
                job = self._jobs[job_id]
                if (after_id is None or job_id > after_id) and query.matches(job):
                    found.append(self._copy(job, tracebacks=tracebacks))
        return found

    # -- pruning -------------------------------------------------------------------------
    def prune_jobs(self, spec: PruneSpec) -> int:
        with self._lock:
            deleted = 0
            for rule in spec.rules:
                for job in self._prunable(rule):
                    del self._jobs[job.id]
                    self._unique_keys.pop(job.id, None)
                    self._steps.pop(job.id, None)
                    deleted += 1
            return deleted

    def count_prunable(self, rule: PruneRule) -> int:
        with self._lock:
            return len(self._prunable(rule))

    def _prunable(self, rule: PruneRule) -> list[Job]:
        """The jobs ``rule`` deletes now."""

        def aged_at(job: Job) -> datetime:
            if rule.status in TERMINAL_STATUSES:
                return job.finished_at or job.scheduled_at
            return job.scheduled_at

        cutoff = None if rule.max_age is None else timezone.now() - rule.max_age
        still_open = self._open_workflows(cutoff)
        covered = [
            j
            for j in self._jobs.values()
            if j.status == rule.status
            and rule.covers_executor(j.executor)
            and (j.workflow_id is None or j.workflow_id not in still_open)
        ]
        if cutoff is not None:
            return [j for j in covered if aged_at(j) < cutoff]
        newest_first = sorted(covered, key=lambda j: (aged_at(j), j.id), reverse=True)
        return newest_first[rule.max_length or 0 :]

    # -- periodic work -------------------------------------------------------------------
    def enqueue_cron_job(self, name: str, tick_at: datetime, job: EnqueuableJob) -> JobId | None:
        with self._lock:
            if (name, tick_at) in self._ticks:
                return None
            job_id = self.enqueue(job)
            self._ticks[(name, tick_at)] = int(job_id)
            return job_id

    def prune_cron_ticks(self, before: datetime) -> int:
        with self._lock:
            old = [key for key in self._ticks if key[1] < before]
            for key in old:
                del self._ticks[key]
            return len(old)

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()

    # -- workers -------------------------------------------------------------------------
    def record_heartbeat(
        self,
        worker_id: str,
        *,
        executors: Collection[str],
        concurrency: int,
        running: Collection[int] = (),
    ) -> None:
        now = timezone.now()
        with self._lock:
            known = self._workers.get(worker_id)
            self._workers[worker_id] = WorkerInfo(
                worker_id=worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                executors=sorted(executors),
                concurrency=concurrency,
                started_at=known.started_at if known else now,
                heartbeat_at=now,
                running=sorted(running),
            )

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)
            self._ahead.pop(worker_id, None)

    def record_claimed_ahead(self, worker_id: str, job_ids: Collection[int]) -> None:
        with self._lock:
            if worker_id in self._workers:
                self._ahead[worker_id] = frozenset(job_ids)

    def live_workers(self) -> list[WorkerInfo]:
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: w.heartbeat_at, reverse=True)

    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        now = timezone.now()
        rescued: list[int] = []
        with self._lock:
            alive = {w for w, info in self._workers.items() if info.heartbeat_at >= now - after}
            for job in list(self._jobs.values()):
                if job.status != JobStatus.EXECUTING or job.claimed_by in alive:
                    continue
                claim = Claim(job.id, job.attempt, job.claimed_by) if job.claimed_by else None
                error = orphaned_error(job.claimed_by, job.attempt)
                cancel = job.cancel_requested_at is not None
                outcome = rescue_outcome(job.attempt, job.max_attempts, cancel)
                ahead = job.claimed_by is not None and job.id in self._ahead.get(job.claimed_by, ())
                before = any(
                    e.attempt == job.attempt
                    and e.error_type == ErrorType.ORPHANED
                    and e.message.startswith(UNSTARTED_ORPHAN)
                    for e in job.errors
                )
                # A cancel request makes either write record the cancel (``_settle``).
                if rescue_gives_back(ahead, cancel, before):
                    attempt = job.attempt
                    written = self.mark_job_snoozed(job.id, now, claim=claim)
                    if written:
                        back = unstarted_orphan_error(job.claimed_by, attempt)
                        job.errors.append(JobError(attempt, back.error_type, back.message, "", now))
                elif outcome == JobStatus.DISCARDED:
                    written = self.mark_job_discarded(job.id, error, claim=claim)
                else:
                    written = self.mark_job_retryable(job.id, now, error, claim=claim)
                if written:
                    rescued.append(job.id)
            for worker_id in [w for w in self._workers if w not in alive]:
                del self._workers[worker_id]
                self._ahead.pop(worker_id, None)
        return rescued

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        with self._lock:
            return {
                i
                for i in job_ids
                if i in self._jobs and self._jobs[i].cancel_requested_at is not None
            }

    # -- observability -------------------------------------------------------------------
    def report_progress(self, claim: Claim, progress: float, note: str = "") -> bool:
        with self._lock:
            job = self._jobs.get(claim.job_id)
            if job is None or self._write_result(claim.job_id, claim) is None:
                return False
            job.progress, job.progress_note, job.progress_at = progress, note, timezone.now()
            return True

    def job_counts(self) -> JobCounts:
        with self._lock:
            counts = Counter((j.executor, j.status.value) for j in self._jobs.values())
        return JobCounts(dict(counts))

    def oldest_ready_at(self) -> dict[str, datetime]:
        now = timezone.now()
        oldest: dict[str, datetime] = {}
        with self._lock:
            for job in self._jobs.values():
                if job.status in READY_STATUSES and job.scheduled_at <= now:
                    at = oldest.get(job.executor)
                    if at is None or job.scheduled_at < at:
                        oldest[job.executor] = job.scheduled_at
        return oldest

    def finished_since(self, since: datetime) -> dict[tuple[str, str], int]:
        with self._lock:
            counts = Counter(
                (j.executor, j.status.value)
                for j in self._jobs.values()
                if j.status in FINISH_FIELD
                and (at := getattr(j, FINISH_FIELD[j.status])) is not None
                and at >= since
            )
        return dict(counts)

    # -- workflows -------------------------------------------------------------------------
    def enqueue_workflow(self, workflow_id: str, steps: Sequence[WorkflowStep]) -> list[JobId]:
        check_steps(steps)
        limit = rexecutor_settings.MAX_PAYLOAD_BYTES
        for step in steps:  # all checked before anything is stored
            check_payloads(step.job, limit)
        with self._lock:
            ids = [self.enqueue(step.job) for step in steps]
            id_of = {step.name: int(job_id) for step, job_id in zip(steps, ids, strict=True)}
            for step, job_id in zip(steps, ids, strict=True):
                after = [id_of[name] for name in dict.fromkeys(step.after)]
                self._steps[job_id] = _Step(step.run_if, len(after), after)
                for dep in after:
                    self._steps[dep].dependents.append(job_id)
                job = self._jobs[job_id]
                job.workflow_id, job.step = workflow_id, step.name
                if after:
                    job.status = JobStatus.WAITING
            return [JobId(i) for i in ids]

    def upstream_results(self, job_id: int) -> dict[str, Any]:
        with self._lock:
            state = self._steps.get(job_id)
            deps = [self._jobs[d] for d in state.after if d in self._jobs] if state else []
            return {
                str(d.step): copy.deepcopy(d.result) if d.status == JobStatus.COMPLETE else None
                for d in deps
            }

    def cancel_workflow(self, workflow_id: str, reason: str) -> BulkResult:
        with self._lock:  # one atomic step
            return super().cancel_workflow(workflow_id, reason)

    def _release(self, finished: dict[int, JobStatus]) -> None:
        """``dependencies.release`` of the Django backend, over ``_steps`` (under the lock)."""
        frontier = finished
        while frontier:
            waits: dict[int, list[int]] = {}
            for dep in frontier:
                for dependent in self._steps[dep].dependents:
                    waits.setdefault(dependent, []).append(dep)
            cancelled: dict[int, JobStatus] = {}
            now = timezone.now()
            for pk in sorted(waits):
                job = self._jobs.get(pk)
                if job is None or job.status != JobStatus.WAITING:
                    continue
                state = self._steps[pk]
                failed = [d for d in waits[pk] if frontier[d] in _FAILED]
                if failed and state.run_if != "finished":
                    job.status, job.cancelled_at, state.pending = JobStatus.CANCELLED, now, 0
                    failed_job = self._jobs.get(failed[0])
                    error = upstream_failed_error(
                        failed_job.step if failed_job else None, frontier[failed[0]]
                    )
                    job.errors.append(
                        JobError(job.attempt, error.error_type, error.message, "", now)
                    )
                    cancelled[pk] = JobStatus.CANCELLED
                    continue
                state.pending -= len(waits[pk])
                if state.pending <= 0:
                    state.pending = 0
                    job.status = snoozed_status(job.attempt)
                    self._notify(job)
            frontier = cancelled

    def _reopen(self, rerun: list[int]) -> None:
        """``dependencies.reopen`` of the Django backend, over ``_steps`` (under the lock)."""
        frontier = rerun
        while frontier:
            waits: dict[int, int] = {}
            for dep in frontier:
                for dependent in self._steps[dep].dependents:
                    waits[dependent] = waits.get(dependent, 0) + 1
            reopened: list[int] = []
            for pk in sorted(waits):
                job = self._jobs.get(pk)
                if job is None:
                    continue
                state = self._steps[pk]
                if job.status == JobStatus.WAITING:
                    state.pending += waits[pk]
                    continue
                deps = [self._jobs[d] for d in state.after if d in self._jobs]
                if job.status == JobStatus.SCHEDULED and not job.attempt:
                    # Due but not started: it waits for the rerun dependency again.
                    job.status = JobStatus.WAITING
                    state.pending = sum(1 for d in deps if d.status not in TERMINAL_STATUSES)
                    continue
                upstream = job.errors and job.errors[-1].error_type == ErrorType.UPSTREAM_FAILED
                if job.status != JobStatus.CANCELLED or not upstream:
                    continue
                if any(d.status in _FAILED for d in deps):
                    continue
                job.status, job.cancelled_at = JobStatus.WAITING, None
                state.pending = sum(1 for d in deps if d.status not in TERMINAL_STATUSES)
                reopened.append(pk)
            frontier = reopened

    def _open_workflows(self, cutoff: datetime | None) -> set[str]:
        """Workflows with an unfinished step (or, with ``cutoff``, one finished at or after
        it): none of their steps is pruned."""
        return {
            str(j.workflow_id)
            for j in self._jobs.values()
            if j.workflow_id is not None
            and (
                j.status not in TERMINAL_STATUSES
                or (cutoff is not None and (j.finished_at or cutoff) >= cutoff)
            )
        }

    # -- flow control ----------------------------------------------------------------------
    def pause_executors(self, names: Collection[str]) -> None:
        with self._lock:
            self._paused.update(names)

    def resume_executors(self, names: Collection[str]) -> None:
        with self._lock:
            self._paused.difference_update(names)
            self._changed.notify_all()

    def paused_executors(self) -> set[str]:
        with self._lock:
            return set(self._paused)
