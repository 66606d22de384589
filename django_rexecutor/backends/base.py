"""The backend contract.

``Backend`` mirrors rexecutor's ``Backend`` trait operation for operation (same names), plus
what our extra features need: bulk enqueue, batched claiming, fenced result writes, cancel
requests, heartbeats and rescue. Every operation is synchronous; each has an ``a``-prefixed
async twin that runs it in a worker thread. A third-party backend subclasses ``Backend`` and
proves itself with ``django_rexecutor.testing.BackendConformanceTests``.

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
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from ..job import Job, JobId
from ..query import Query
from ..status import ERROR_TYPE_MAX_LENGTH, TERMINAL_STATUSES, JobStatus
from ..uniqueness import UniquenessCriteria


@dataclass(frozen=True)
class EnqueuableJob:
    """Everything needed to insert a job; built and validated by ``JobBuilder``."""

    executor: str
    data: Any
    metadata: Any
    max_attempts: int
    scheduled_at: datetime
    tags: tuple[str, ...] = ()
    priority: int = 0
    uniqueness: UniquenessCriteria | None = None

    @property
    def unique_key(self) -> str | None:
        """The stable hash stored with the job when its uniqueness rule has a key."""
        rule = self.uniqueness
        return rule.key_hash if rule is not None and not rule.disabled else None


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


@dataclass(frozen=True)
class Claim:
    """Proof that a worker owns one attempt of a job: the fence for its result writes."""

    job_id: int
    attempt: int
    worker_id: str

    @classmethod
    def of(cls, job: Job) -> Claim:
        if job.claimed_by is None:
            raise ValueError(f"Job {job.id} is not claimed by a worker.")
        return cls(job.id, job.attempt, job.claimed_by)


#: The statuses a prune rule may name: never ``executing``, whose job a worker is running.
PRUNABLE_STATUSES: frozenset[JobStatus] = frozenset(
    {*TERMINAL_STATUSES, JobStatus.SCHEDULED, JobStatus.RETRYABLE}
)


@dataclass(frozen=True)
class PruneRule:
    """Delete jobs in ``status``: older than ``max_age`` (terminal jobs by the time they
    finished, others by ``scheduled_at``), or all but the newest ``max_length``; for every
    executor, ``only`` some, or all ``except_`` some. Never running jobs."""

    status: JobStatus
    max_age: timedelta | None = None
    max_length: int | None = None
    only: frozenset[str] | None = None
    except_: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.status not in PRUNABLE_STATUSES:
            raise ValueError(
                f"Running jobs are never pruned; got a rule for {self.status.value!r}."
            )
        if (self.max_age is None) == (self.max_length is None):
            raise ValueError("A prune rule needs exactly one of max_age and max_length.")
        if self.max_length is not None and self.max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {self.max_length}.")
        if self.only is not None and self.except_ is not None:
            raise ValueError("A prune rule takes `only` or `except`, not both.")

    def covers_executor(self, executor: str) -> bool:
        if self.only is not None:
            return executor in self.only
        if self.except_ is not None:
            return executor not in self.except_
        return True


@dataclass(frozen=True)
class PruneSpec:
    rules: tuple[PruneRule, ...]
    batch_size: int = 10_000


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker as recorded by its heartbeats."""

    worker_id: str
    hostname: str
    pid: int
    executors: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: list[int] = field(default_factory=list)


class SkipReason:
    """Why a bulk rerun or cancel left a job alone (stable strings; the admin translates them)."""

    RUNNING = "already running"
    WAITING = "already waiting"
    FINISHED = "already finished"
    NOT_FOUND = "not found"


@dataclass(frozen=True)
class BulkResult:
    """What a bulk rerun or cancel did. ``done`` holds the ids changed, in request order;
    ``requested`` the ids among them that were running, so they only got a cancel request and
    become cancelled when their attempt ends; ``skipped`` maps every other id to a
    ``SkipReason``."""

    done: tuple[int, ...] = ()
    skipped: Mapping[int, str] = field(default_factory=dict)
    requested: tuple[int, ...] = ()


def skip_reason(status: str) -> str:
    """The ``SkipReason`` for a job that an ``InvalidTransition`` reported in ``status``."""
    if status == JobStatus.EXECUTING:
        return SkipReason.RUNNING
    if status in (JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED):
        return SkipReason.FINISHED
    return SkipReason.WAITING


class Backend(ABC):
    """Where jobs live and how they are claimed."""

    #: Enqueue joins the caller's open database transaction.
    supports_transactions: bool = False
    #: ``wait_for_jobs`` is woken by enqueues from other processes (e.g. LISTEN/NOTIFY).
    supports_notifications: bool = False

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
    def claim_jobs(self, worker_id: str, capacity: Mapping[str, int], limit: int) -> list[Job]:
        """Atomically move up to ``limit`` ready jobs to ``executing`` for ``worker_id`` and
        return them: at most ``capacity[name]`` jobs of each executor named there, most urgent
        first (priority, then ``scheduled_at``, then id). No job is ever handed to two
        claimers. Each claimed job has ``attempt`` + 1, ``attempted_at`` and ``claimed_by``."""

    @abstractmethod
    def next_scheduled_at(self, executors: Collection[str]) -> datetime | None:
        """When the earliest waiting (scheduled or retryable) job of ``executors`` is due."""

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
    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        """Jobs executing under a worker whose last heartbeat is older than ``after`` (or that
        has none) become retryable, or discarded on their last attempt, with an ``orphaned``
        error (``cancelled`` if a cancel was requested). Uses the backend's clock. Returns
        the ids rescued."""

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


def orphaned_error(worker_id: str | None, attempt: int) -> ErrorDetails:
    """The error a rescue records on a job whose worker went silent."""
    from ..status import ErrorType

    return ErrorDetails(
        ErrorType.ORPHANED,
        f"worker {worker_id or '?'} stopped sending heartbeats while running attempt {attempt}",
    )


def snoozed_status(attempt_after: int) -> JobStatus:
    """The status of a job given back to the queue with ``attempt_after`` attempts used."""
    return JobStatus.SCHEDULED if attempt_after <= 0 else JobStatus.RETRYABLE


def rerun_status(attempt: int) -> JobStatus:
    return JobStatus.SCHEDULED if attempt <= 1 else JobStatus.RETRYABLE
