"""The backend contract.

``Backend`` mirrors rexecutor's ``Backend`` trait operation for operation (same names), plus
what our extra features need: bulk enqueue, batched claiming, fenced result writes, cancel
requests, heartbeats and rescue. Every operation is synchronous; each has an ``a``-prefixed
async twin that runs it in a worker thread. A third-party backend subclasses ``Backend`` and
proves itself with ``django_rexecutor.testing.BackendConformanceTests``.

The values it passes are in ``values``, the transition rules in ``django_rexecutor.transitions``;
this module is the one class of the contract, documented operation by operation, which is why
it is longer than most.

State-change rules every backend enforces (see SPEC §4):

* result writes (``mark_job_*``) apply only to a job that is ``executing``; with a ``claim`` they
  apply only if the job is still executing under that claim (same attempt, same worker). A stale
  or duplicate write changes nothing and returns ``False``. A missing job raises ``JobNotFound``.
* a result written for a job whose cancellation was requested makes it ``cancelled``, whatever
  the result was: a late result never overwrites a cancel.
* the last attempt is ``attempt >= max_attempts``.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from ..job import TRUNCATED, ErrorDetails, Job, JobId, storable_text
from ..limits import Limits
from ..query import Query
from ..status import JobStatus
from ..transitions import (
    SkipReason,
    orphaned_error,
    rerun_status,
    skip_reason,
    snoozed_status,
)
from .values import (
    PRUNABLE_STATUSES,
    BulkResult,
    Claim,
    EnqueuableJob,
    JobCounts,
    PruneRule,
    PruneSpec,
    WorkerInfo,
    WorkflowStep,
)

if TYPE_CHECKING:
    from ..notifiers.base import Notifier

#: Names this module defined before the values and the transition rules got their own
#: modules; they stay importable from here.
__all__ = [
    "PRUNABLE_STATUSES",
    "TRUNCATED",
    "Backend",
    "BulkResult",
    "Claim",
    "EnqueuableJob",
    "ErrorDetails",
    "JobCounts",
    "PruneRule",
    "PruneSpec",
    "SkipReason",
    "WorkerInfo",
    "orphaned_error",
    "rerun_status",
    "skip_reason",
    "snoozed_status",
    "storable_text",
]


class Backend(ABC):
    """Where jobs live and how they are claimed."""

    #: ``wait_for_jobs`` is woken by enqueues from other processes (e.g. LISTEN/NOTIFY).
    supports_notifications: bool = False
    #: Writes from two threads of one process (each on its own connection) go on side by side,
    #: so the worker may acknowledge completions in a thread of its own while it claims.
    #: ``False`` where the store takes one writer at a time (SQLite).
    supports_parallel_writes: bool = True
    #: The Django database alias holding this backend's jobs in the package's models (what
    #: the admin shows), or ``None`` for a store outside Django's databases.
    database: str | None = None

    @property
    def store(self) -> str:
        """Where the jobs live, for banners and logs (e.g. ``default (postgresql)``)."""
        return type(self).__name__

    def using(self, alias: str) -> Backend:
        """The same backend bound to another database alias (database backends only)."""
        return self

    # -- enqueue -------------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, job: EnqueuableJob) -> JobId:
        """Insert ``job`` (or apply its uniqueness rule) and return its id."""

    def enqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        """Insert many jobs at once; ids come back in order. Backends override this to use
        few statements."""
        return [self.enqueue(job) for job in jobs]

    # -- claiming (the worker side of rexecutor's subscribe_ready_jobs) --------------------
    @abstractmethod
    def claim_jobs(
        self,
        worker_id: str,
        capacity: Mapping[str, int],
        limit: int,
        *,
        limits: Mapping[str, Limits] | None = None,
    ) -> list[Job]:
        """Atomically move up to ``limit`` ready jobs to ``executing`` for ``worker_id`` and
        return them: at most ``capacity[name]`` jobs of each executor named there, most urgent
        first (priority, then ``scheduled_at``, then id). No job is ever handed to two
        claimers. Each claimed job has ``attempt`` + 1, ``attempted_at`` and ``claimed_by``.

        Paused executors' jobs are never claimed. An executor in ``limits`` (``Limits``) gets
        no more jobs than its ``global_concurrency`` minus its jobs executing anywhere, nor
        than its ``rate_limit`` allows after the starts within its period, both per partition
        (``EnqueuableJob.partition_key``) when it has ``partition_by``; however many claimers
        race. Its jobs over a limit stay ready, their attempt unspent."""

    @abstractmethod
    def next_scheduled_at(self, executors: Collection[str]) -> datetime | None:
        """When the earliest waiting (scheduled or retryable) job of ``executors`` is due
        (paused executors' jobs left out: they are not due until resumed)."""

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        """Block up to ``timeout`` seconds or until a job of ``executors`` may be ready.
        Returning early without a job is allowed; the default simply sleeps."""
        time.sleep(max(0.0, timeout))

    async def subscribe_ready_jobs(
        self,
        executor: str,
        *,
        worker_id: str = "subscriber",
        poll_interval: float = 1.0,
    ) -> AsyncIterator[Job]:
        """Yield this executor's jobs as they become ready, each claimed for ``worker_id``
        (rexecutor's stream, built on ``claim_jobs`` and ``wait_for_jobs``)."""
        while True:
            jobs = await sync_to_async(self.claim_jobs, thread_sensitive=False)(
                worker_id, {executor: 1}, 1
            )
            if jobs:
                yield jobs[0]
                continue
            due = await sync_to_async(self.next_scheduled_at, thread_sensitive=False)([executor])
            timeout = poll_interval
            if due is not None:
                from django.utils import timezone

                timeout = min(poll_interval, max(0.0, (due - timezone.now()).total_seconds()))
            await sync_to_async(self.wait_for_jobs, thread_sensitive=False)([executor], timeout)

    # -- results, written by the worker (fenced) --------------------------------------------
    @abstractmethod
    def mark_job_complete(
        self, job_id: int, *, claim: Claim | None = None, result: Any = None
    ) -> bool:
        """executing → complete, storing ``result`` (JSON-native, e.g. a task's return
        value) in the same fenced write."""

    @abstractmethod
    def mark_job_retryable(
        self,
        job_id: int,
        next_scheduled_at: datetime,
        error: ErrorDetails,
        *,
        claim: Claim | None = None,
    ) -> bool:
        """executing → retryable at ``next_scheduled_at``, recording ``error``."""

    @abstractmethod
    def mark_job_discarded(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        """executing → discarded (failed on its last attempt), recording ``error``."""

    @abstractmethod
    def mark_job_cancelled(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        """executing → cancelled (the job returned ``Cancel``), recording ``error``."""

    @abstractmethod
    def mark_job_snoozed(
        self, job_id: int, next_scheduled_at: datetime, *, claim: Claim | None = None
    ) -> bool:
        """executing → waiting again at ``next_scheduled_at``; the attempt is given back
        (scheduled when that leaves attempt 0, retryable otherwise)."""

    def complete_jobs(self, claims: Sequence[Claim]) -> int:
        """Mark many claimed jobs complete at once (the worker batches its acks); returns how
        many were written (a job deleted meanwhile is not). Backends override this to use one
        statement."""
        from ..exceptions import JobNotFound

        written = 0
        for c in claims:
            with contextlib.suppress(JobNotFound):
                written += self.mark_job_complete(c.job_id, claim=c)
        return written

    @abstractmethod
    def release_jobs(self, claims: Sequence[Claim]) -> int:
        """Give claimed jobs back to the queue, due now, without consuming their attempt
        (graceful shutdown). Returns how many were released."""

    # -- management -------------------------------------------------------------------------
    @abstractmethod
    def cancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        """Cancel a waiting job at once, or request cancellation of a running one (it becomes
        cancelled when its attempt ends). ``InvalidTransition`` for a finished job."""

    @abstractmethod
    def rerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        """Run a finished or retryable job again, due now, with one more attempt allowed.
        ``InvalidTransition`` for an executing or scheduled job."""

    def rerun_jobs(self, job_ids: Iterable[int], *, executor: str | None = None) -> BulkResult:
        """``rerun_job`` for many jobs: the eligible ones are rerun, the others reported in
        ``skipped``. Backends override this to use few statements."""
        return self._each(job_ids, lambda job_id: self.rerun_job(job_id, executor=executor))

    def cancel_jobs(
        self, job_ids: Iterable[int], reason: str, *, executor: str | None = None
    ) -> BulkResult:
        """``cancel_job`` for many jobs: waiting ones are cancelled, running ones get a cancel
        request (listed in ``requested`` too), finished ones are skipped."""
        return self._each(
            job_ids, lambda job_id: self.cancel_job(job_id, reason, executor=executor)
        )

    @staticmethod
    def _each(job_ids: Iterable[int], operation: Callable[[int], Job]) -> BulkResult:
        """Apply a single-job ``operation`` to each id once, sorting the outcomes."""
        from ..exceptions import InvalidTransition, JobNotFound

        done: list[int] = []
        requested: list[int] = []
        skipped: dict[int, str] = {}
        for job_id in dict.fromkeys(job_ids):
            try:
                job = operation(job_id)
            except JobNotFound:
                skipped[job_id] = SkipReason.NOT_FOUND
            except InvalidTransition as exc:
                skipped[job_id] = skip_reason(exc.status)
            else:
                done.append(job_id)
                if job.status == JobStatus.EXECUTING:
                    requested.append(job_id)
        return BulkResult(tuple(done), skipped, tuple(requested))

    @abstractmethod
    def update_job(self, job: Job, *, executor: str | None = None) -> Job:
        """Write data, metadata, max_attempts, scheduled_at, priority and tags of a waiting
        job. ``InvalidTransition`` for an executing or finished job."""

    @abstractmethod
    def query(
        self,
        query: Query,
        *,
        limit: int | None = None,
        after_id: int | None = None,
        tracebacks: bool = True,
    ) -> list[Job]:
        """Up to ``limit`` jobs matching ``query`` (all if ``None``), by id, with their error
        history. ``after_id`` pages: only jobs with a greater id (pass the last id of the
        previous page). Without ``tracebacks`` the errors' traceback texts are left empty,
        which is much less to read for a long listing. A row whose stored values cannot be
        read comes back with those fields named in ``Job.unreadable``; it never fails the
        query."""

    def get_job(self, job_id: int, *, executor: str | None = None) -> Job:
        """One job by id; ``JobNotFound`` if it does not exist (or is another executor's)."""
        from ..exceptions import JobNotFound
        from ..query import ExecutorEqual, IdEquals

        query: Query = IdEquals(job_id)
        if executor is not None:
            query = query & ExecutorEqual(executor)
        jobs = self.query(query)
        if not jobs:
            raise JobNotFound(job_id, f"for executor {executor!r}." if executor else "")
        return jobs[0]

    @abstractmethod
    def prune_jobs(self, spec: PruneSpec) -> int:
        """Delete jobs (with their errors) as the rules say; returns how many."""

    @abstractmethod
    def count_prunable(self, rule: PruneRule) -> int:
        """How many jobs ``rule`` would delete now (``prune_jobs`` with that rule alone),
        deleting nothing."""

    # -- periodic work: cron ticks and leadership ------------------------------------------
    @abstractmethod
    def enqueue_cron_job(self, name: str, tick_at: datetime, job: EnqueuableJob) -> JobId | None:
        """Enqueue ``job`` as the one job of cron entry ``name``'s tick at ``tick_at``, and
        record the tick in the same atomic step; ``None`` (nothing enqueued) if any scheduler
        sharing this store took that tick already. Every worker may run a scheduler: this is
        what makes each tick yield exactly one job."""

    @abstractmethod
    def prune_cron_ticks(self, before: datetime) -> int:
        """Forget the ticks recorded earlier than ``before``; returns how many."""

    @abstractmethod
    def try_lock(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """A context manager: whether the caller now holds the lock ``name`` (``True``) or
        someone else does (``False``), for periodic work one process at a time should do
        (the pruner). Never waits. The lock is released when the block ends, or when its
        holder's process or connection dies."""

    # -- notifications and connections -----------------------------------------------------
    def notifier(self) -> Notifier:
        """The notifier that announces this store's newly ready jobs and cancel requests
        (see ``django_rexecutor.notifiers``). The default hears nothing from other processes:
        waiters are woken by their timeout, so polling is the guarantee."""
        notifier = self.__dict__.get("_local_notifier")
        if notifier is None or notifier.stopped:  # a worker stops it when it shuts down
            from ..notifiers.local import LocalNotifier

            notifier = self.__dict__["_local_notifier"] = LocalNotifier()
        return notifier

    def tidy_connections(self) -> None:
        """Called in a thread around every job it runs, as Django does around a request:
        closes this thread's database connections that are past their ``CONN_MAX_AGE`` or
        broken, so the job's queries and ours reconnect. A failure here is not the job's."""
        from django.db import close_old_connections

        close_old_connections()

    def drop_connection(self) -> None:
        """After a connection error: close the calling thread's connection to the store, so
        the next operation opens a new one. The default has nothing to close."""
        return None

    # -- workers: clock, heartbeats, rescue, cancel requests -----------------------------------
    def current_time(self) -> datetime:
        """The backend's clock (aware): the one its own timestamps, heartbeats and rescue use.
        Workers take every time they write or compare from it, so a host whose clock is off
        cannot make jobs run early, late or twice. A database backend reads the database's
        clock; the default is this process's."""
        from django.utils import timezone

        return timezone.now()

    @abstractmethod
    def record_heartbeat(
        self,
        worker_id: str,
        *,
        executors: Collection[str],
        concurrency: int,
        running: Collection[int] = (),
    ) -> None:
        """Record that ``worker_id`` is alive now, in the backend's clock (creating its row on
        the first beat, started now)."""

    @abstractmethod
    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that shut down cleanly."""

    @abstractmethod
    def live_workers(self) -> list[WorkerInfo]:
        """Workers with a recorded heartbeat, most recent first."""

    def release_unseen_claims(self, worker_id: str, known: Collection[int]) -> list[int]:
        """Give back to the queue every job executing under ``worker_id`` whose id is not in
        ``known``, as ``release_jobs`` does (due now, attempt given back, no error); returns
        their ids. For a worker whose claim committed but whose reply it never received (the
        connection dropped mid-claim): those jobs never started. Each write is fenced by the
        (id, attempt, worker) read, so a job that changed meanwhile is left alone. Backends
        override this to look the jobs up by worker."""
        from ..query import StatusEqual

        keep = set(known)
        unseen = [
            Claim.of(job)
            for job in self.query(StatusEqual(JobStatus.EXECUTING))
            if job.claimed_by == worker_id and job.id not in keep
        ]
        return [claim.job_id for claim in unseen if self.release_jobs([claim])]

    @abstractmethod
    def record_claimed_ahead(self, worker_id: str, job_ids: Collection[int]) -> None:
        """Remember, with ``worker_id``'s heartbeat row, the jobs it claimed ahead of its free
        slots and has not started (replacing the previous list). Called before any of them
        starts, so that if the worker dies, rescue gives them back unused."""

    @abstractmethod
    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        """Jobs executing under a worker whose last heartbeat is older than ``after`` (or that
        has none) become retryable, or discarded on their last attempt, with an ``orphaned``
        error (``cancelled`` if a cancel was requested). A job in the worker's last
        ``record_claimed_ahead`` list is instead given back due now with its attempt unused
        (still with an ``orphaned`` error) — once per attempt: the second time it is rescued
        at the same attempt, the attempt counts, as it may have started after the list was
        written. Uses the backend's clock. Returns the ids rescued."""

    @abstractmethod
    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        """Which of these running jobs someone asked to cancel."""

    # -- async twins ---------------------------------------------------------------------------
    async def aenqueue(self, job: EnqueuableJob) -> JobId:
        return await sync_to_async(self.enqueue)(job)

    async def aenqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        return await sync_to_async(self.enqueue_many)(jobs)

    async def acancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        return await sync_to_async(self.cancel_job)(job_id, reason, executor=executor)

    async def arerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        return await sync_to_async(self.rerun_job)(job_id, executor=executor)

    async def arerun_jobs(
        self, job_ids: Iterable[int], *, executor: str | None = None
    ) -> BulkResult:
        return await sync_to_async(self.rerun_jobs)(job_ids, executor=executor)

    async def acancel_jobs(
        self, job_ids: Iterable[int], reason: str, *, executor: str | None = None
    ) -> BulkResult:
        return await sync_to_async(self.cancel_jobs)(job_ids, reason, executor=executor)

    async def aupdate_job(self, job: Job, *, executor: str | None = None) -> Job:
        return await sync_to_async(self.update_job)(job, executor=executor)

    async def aquery(
        self,
        query: Query,
        *,
        limit: int | None = None,
        after_id: int | None = None,
        tracebacks: bool = True,
    ) -> list[Job]:
        return await sync_to_async(self.query)(
            query, limit=limit, after_id=after_id, tracebacks=tracebacks
        )

    async def aget_job(self, job_id: int, *, executor: str | None = None) -> Job:
        return await sync_to_async(self.get_job)(job_id, executor=executor)

    async def aprune_jobs(self, spec: PruneSpec) -> int:
        return await sync_to_async(self.prune_jobs)(spec)

    # -- observability: progress, counts, lag ----------------------------------------------
    @abstractmethod
    def report_progress(self, claim: Claim, progress: float, note: str = "") -> bool:
        """Store the progress (0.0 to 1.0, validated by the caller) and note the attempt of
        ``claim`` reported, with the time in the backend's clock; fenced like a result write:
        ``False`` (nothing written) unless the job is still executing under ``claim``. A
        missing job is ``False`` too (progress is best effort)."""

    @abstractmethod
    def job_counts(self) -> JobCounts:
        """Jobs per (executor, status), cheap on a big table: a backend may estimate the
        finished statuses' counts (naming them in ``JobCounts.estimated``); waiting and
        running jobs are always counted exactly. Executors without jobs are absent."""

    @abstractmethod
    def oldest_ready_at(self) -> dict[str, datetime]:
        """For each executor with a ready job that is due, when its oldest such job became
        due (its ``scheduled_at``); the queue lag is ``current_time()`` minus that."""

    @abstractmethod
    def finished_since(self, since: datetime) -> dict[tuple[str, str], int]:
        """Jobs per (executor, final status) that reached that status at ``since`` or later
        (complete, cancelled or discarded), e.g. the discarded jobs of the last hour."""

    async def areport_progress(self, claim: Claim, progress: float, note: str = "") -> bool:
        return await sync_to_async(self.report_progress)(claim, progress, note)

    async def ajob_counts(self) -> JobCounts:
        return await sync_to_async(self.job_counts)()

    async def aoldest_ready_at(self) -> dict[str, datetime]:
        return await sync_to_async(self.oldest_ready_at)()

    async def afinished_since(self, since: datetime) -> dict[tuple[str, str], int]:
        return await sync_to_async(self.finished_since)(since)

    # -- workflows (``django_rexecutor.workflows``) -------------------------------------------
    @abstractmethod
    def enqueue_workflow(self, workflow_id: str, steps: Sequence[WorkflowStep]) -> list[JobId]:
        """Insert a workflow's steps and their dependencies atomically (in the caller's
        transaction on database backends), after ``steps.check_steps`` (a ``WorkflowError``
        stores nothing); their ids, in order. A step with dependencies is ``waiting`` until
        they reach a final status; the others are due as their job says. From then on, every
        write that moves a step to a final status updates its dependents in the same atomic
        step (see ``docs/workflows.md``): due once none is left, cancelled with an
        ``upstream_failed`` error if one failed and the dependent has ``run_if="succeeded"``
        (transitively); a rerun of a finished step makes its dependents wait for it again
        and reopens those it had cancelled."""

    @abstractmethod
    def upstream_results(self, job_id: int) -> dict[str, Any]:
        """The ``Done(result=...)`` values of the direct dependencies of the step
        ``job_id``, by step name (``None`` for a dependency that did not complete)."""

    def workflow_jobs(self, workflow_id: str) -> list[Job]:
        """The steps of a workflow, by id."""
        from ..query import WorkflowEqual

        return self.query(WorkflowEqual(workflow_id))

    def cancel_workflow(self, workflow_id: str, reason: str) -> BulkResult:
        """``cancel_jobs`` for every unfinished step of a workflow (running ones get a cancel
        request); backends override this to do it in one atomic step."""
        from ..status import TERMINAL_STATUSES

        steps = self.workflow_jobs(workflow_id)
        return self.cancel_jobs([j.id for j in steps if j.status not in TERMINAL_STATUSES], reason)

    async def aenqueue_workflow(
        self, workflow_id: str, steps: Sequence[WorkflowStep]
    ) -> list[JobId]:
        return await sync_to_async(self.enqueue_workflow)(workflow_id, steps)

    async def aupstream_results(self, job_id: int) -> dict[str, Any]:
        return await sync_to_async(self.upstream_results)(job_id)

    async def aworkflow_jobs(self, workflow_id: str) -> list[Job]:
        return await sync_to_async(self.workflow_jobs)(workflow_id)

    async def acancel_workflow(self, workflow_id: str, reason: str) -> BulkResult:
        return await sync_to_async(self.cancel_workflow)(workflow_id, reason)

    # -- flow control: pause and resume (cluster-wide, stored) ------------------------------
    @abstractmethod
    def pause_executors(self, names: Collection[str]) -> None:
        """Pause ``names``: from the next claim on, no claimer takes their jobs (running ones
        finish). Pausing a paused executor changes nothing."""

    @abstractmethod
    def resume_executors(self, names: Collection[str]) -> None:
        """Resume ``names``; resuming one that is not paused changes nothing."""

    @abstractmethod
    def paused_executors(self) -> set[str]:
        """The names of the paused executors."""

    async def apause_executors(self, names: Collection[str]) -> None:
        await sync_to_async(self.pause_executors)(names)

    async def aresume_executors(self, names: Collection[str]) -> None:
        await sync_to_async(self.resume_executors)(names)

    async def apaused_executors(self) -> set[str]:
        return await sync_to_async(self.paused_executors)()
