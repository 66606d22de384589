"""The table of running attempts: which jobs run, how many slots are free, and each attempt's
life from its start on a pool thread or the event loop to its end, a time-out or a cancel.

Owned by the worker's orchestrating thread: it starts attempts, reaps the ended ones and
enforces deadlines. The threads that run attempts only hand their result back (``_finish``);
the heartbeat thread only reads the running ids. Nothing here writes a result: what the table
decides (an ended attempt, a time-out) is returned to the caller, which queues it for writing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..backends.base import Backend
from ..executor import Executor
from ..job import Job
from ..logfields import job_fields
from ..progress import ProgressReporter
from .connections import atidy_connections, tidy_connections
from .execution import (
    INTERRUPTED_RESULT,
    AttemptResult,
    attempt_timeout,
    is_async_executor,
    result_of_exception,
    run_async,
    run_sync,
    send_started,
    timeout_result,
)
from .metrics import NO_METRICS, WorkerMetrics
from .threads import EventLoopThread, Interruptible, SyncPool

logger = logging.getLogger("django_rexecutor.worker")

#: How often the running jobs are checked for cancel requests (a notification checks at once).
CANCEL_POLL_INTERVAL = 0.5


class Attempt:
    """One running attempt of one job, owned by the orchestrating thread."""

    __slots__ = (
        "batch_refused",
        "cancel_at",
        "deadline",
        "executor_cls",
        "guard",
        "instance",
        "interrupt_requested",
        "is_async",
        "job",
        "limit",
        "result",
        "settled",
        "started",
        "task",
    )

    def __init__(self, job: Job, executor_cls: type[Executor]) -> None:
        self.job = job
        self.executor_cls = executor_cls
        self.instance: Executor | None = None
        self.is_async = False
        self.started = time.monotonic()
        self.limit: timedelta | None = None
        self.deadline: float | None = None
        self.guard: Interruptible | None = None
        self.task: Any = None
        self.interrupt_requested = False
        #: When a sync attempt asked to cancel is interrupted if it has not ended by itself.
        self.cancel_at: float | None = None
        #: Set once by the thread that ran it.
        self.result: AttemptResult | None = None
        #: The outcome was decided by the worker (timeout, release) before the job ended.
        self.settled = False
        #: The backend refused its batch of completions: its result is written alone.
        self.batch_refused = False


#: An attempt with the result to record for it.
Outcome = tuple[Attempt, AttemptResult]


class RunningAttempts:
    """The attempts running in one worker, within ``concurrency`` slots and each executor's
    ``max_concurrency``; ``wake`` is set whenever an attempt ends."""

    def __init__(
        self,
        backend: Backend,
        executors: Mapping[str, type[Executor]],
        concurrency: int,
        *,
        cancel_grace: float,
        wake: threading.Event,
    ) -> None:
        self.backend = backend
        self.executors = executors
        self.concurrency = concurrency
        self.cancel_grace = cancel_grace
        self.limits = {
            n: cls.max_concurrency
            for n, cls in executors.items()
            if cls.max_concurrency is not None
        }
        self._async_names = {n for n, cls in executors.items() if is_async_executor(cls)}
        #: Async attempts running on the event loop (touched by the loop's thread only).
        self._async_running = 0
        self._wake = wake
        self._active: set[Attempt] = set()
        self._per_executor: Counter[str] = Counter()
        self._finished: deque[Attempt] = deque()
        self._last_cancel_poll = 0.0
        self._pool: SyncPool | None = None
        self._loop: EventLoopThread | None = None
        #: Told of every attempt started (``worker.metrics``); set by the worker.
        self.metrics: WorkerMetrics = NO_METRICS

    # -- threads -----------------------------------------------------------------------------
    def start_threads(self) -> None:
        """Start the sync pool (and the event loop, if an executor is ``async def``)."""
        self._pool = SyncPool(self.concurrency)
        if self._async_names:
            self._loop = EventLoopThread()

    def stop_threads(self) -> None:
        """Let idle pool threads end and stop the event loop (busy threads are daemons)."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._loop is not None:
            self._loop.stop()

    # -- the table ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Attempts holding a slot, including settled ones whose thread has not ended yet."""
        return len(self._active)

    def running_ids(self) -> list[int]:
        """The jobs shown as running (heartbeats, ``Worker.running_jobs``); any thread."""
        return sorted(a.job.id for a in list(self._active) if not a.settled)

    def job_ids(self) -> set[int]:
        """Every job holding a slot, settled or not."""
        return {a.job.id for a in self._active}

    def capacity(self) -> tuple[dict[str, int], int]:
        """(free slots per executor, free slots in all): what the next claim may ask for."""
        free = self.concurrency - len(self._active)
        if free <= 0:
            return {}, 0
        capacity: dict[str, int] = {}
        for name in self.executors:
            limit = self.limits.get(name)
            room = free if limit is None else min(free, limit - self._per_executor[name])
            if room > 0:
                capacity[name] = room
        return capacity, free

    def next_deadline(self) -> float | None:
        """The soonest time-out or end of a cancel grace (``time.monotonic()``), if any."""
        deadlines = [
            at
            for a in self._active
            if not a.settled
            for at in (a.deadline, a.cancel_at)
            if at is not None
        ]
        return min(deadlines, default=None)

    # -- starting ----------------------------------------------------------------------------
    def start(self, job: Job) -> None:
        """Take a slot for ``job`` and start its attempt (a broken executor fails the job)."""
        executor_cls = self.executors[job.executor]
        attempt = Attempt(job, executor_cls)
        job._backend = self.backend  # what ``job.upstream_results()`` asks
        self._active.add(attempt)
        self._per_executor[job.executor] += 1
        try:
            attempt.instance = executor_cls()
            attempt.limit = attempt_timeout(attempt.instance, job)
        except Exception as exc:  # noqa: BLE001 - a broken executor fails its job, not the worker
            self._finish(attempt, result_of_exception(exc))
            return
        if attempt.limit is not None:
            attempt.deadline = attempt.started + attempt.limit.total_seconds()
        job._progress = ProgressReporter(self.backend, job)
        self.metrics.attempt_started(job)
        send_started(executor_cls, job)
        if job.executor in self._async_names:
            assert self._loop is not None
            attempt.is_async = True
            self._loop.submit(self._run_async(attempt))
        else:
            assert self._pool is not None
            attempt.guard = Interruptible()
            self._pool.submit(lambda: self._run_sync(attempt))

    def _run_sync(self, attempt: Attempt) -> None:
        guard = attempt.guard
        assert guard is not None and attempt.instance is not None
        result = INTERRUPTED_RESULT
        try:
            if guard.enter():
                try:
                    tidy_connections(self.backend)
                    result = run_sync(attempt.instance, attempt.job)
                finally:
                    guard.leave()
                if not attempt.settled:  # else the worker flushed it when it settled it
                    _flush_progress(attempt.job)
                tidy_connections(self.backend)
        except BaseException as exc:  # noqa: BLE001 - never let a job kill a pool thread
            result = result_of_exception(exc)
        self._finish(attempt, result)

    async def _run_async(self, attempt: Attempt) -> None:
        assert attempt.instance is not None
        result = INTERRUPTED_RESULT
        self._async_running += 1
        try:
            if not attempt.interrupt_requested:
                attempt.task = asyncio.current_task()
                # The async ORM's one thread needs the connection care the pool threads get
                # around each job. Each tidy-up is a hop to that thread (~0.1 ms), so the one
                # after a job, which only closes a connection past its CONN_MAX_AGE, is done
                # when the last running async job ends, not after every job.
                await atidy_connections(self.backend)
                result = await run_async(attempt.instance, attempt.job)
                if attempt.job._progress is not None and not attempt.settled:
                    await attempt.job._progress.aflush()
                if self._async_running == 1:
                    await atidy_connections(self.backend)
        except BaseException as exc:  # noqa: BLE001 - the attempt must end, whatever happens
            result = result_of_exception(exc)
        finally:
            self._async_running -= 1
        self._finish(attempt, result)

    def _finish(self, attempt: Attempt, result: AttemptResult) -> None:
        """Called from the thread that ran the attempt (and after its last progress write,
        so the result written next never races it)."""
        attempt.result = result
        self._finished.append(attempt)
        self._wake.set()

    # -- ending ------------------------------------------------------------------------------
    def interrupt(self, attempt: Attempt) -> None:
        """Stop ``attempt``: cancel its task, or raise ``JobInterrupted`` in its thread."""
        if attempt.is_async:
            assert self._loop is not None
            self._loop.loop.call_soon_threadsafe(self._cancel_task, attempt)
        elif attempt.guard is not None:
            attempt.guard.interrupt()

    @staticmethod
    def _cancel_task(attempt: Attempt) -> None:
        attempt.interrupt_requested = True
        if attempt.task is not None:
            attempt.task.cancel()

    def reap(self) -> list[Outcome]:
        """Free the slots of ended attempts; returns the results still to be recorded (those
        of attempts the worker had not settled already)."""
        ended: list[Outcome] = []
        while self._finished:
            attempt = self._finished.popleft()
            if attempt in self._active:
                self._active.discard(attempt)
                self._per_executor[attempt.job.executor] -= 1
            if not attempt.settled:
                attempt.settled = True
                assert attempt.result is not None
                ended.append((attempt, attempt.result))
        return ended

    def enforce_deadlines(self) -> list[Outcome]:
        """Interrupt attempts past their cancel grace; settle and interrupt those past their
        time-out, returning their ``timeout`` results."""
        timed_out: list[Outcome] = []
        now = time.monotonic()
        for attempt in list(self._active):
            if attempt.settled:
                continue
            if attempt.cancel_at is not None and attempt.cancel_at <= now:
                attempt.cancel_at = None
                logger.info(
                    "job %s %s: still running %gs after its cancel request, interrupting it",
                    attempt.job.id, attempt.job.executor, self.cancel_grace,
                    extra=job_fields(attempt.job),
                )  # fmt: skip
                self.interrupt(attempt)
            if attempt.deadline is None or attempt.deadline > now:
                continue
            # Recorded at the deadline whether or not the job can be interrupted; its slot
            # stays taken until its thread really ends.
            attempt.settled = True
            assert attempt.limit is not None
            # Its thread may write no more before the time-out is recorded: flush now.
            _flush_progress(attempt.job)
            timed_out.append((attempt, timeout_result(attempt.limit)))
            self.interrupt(attempt)
        return timed_out

    def settle_unfinished(self) -> list[Attempt]:
        """At shutdown: settle and interrupt every attempt still running; returns them (their
        jobs are to be released)."""
        unfinished = [a for a in self._active if not a.settled]
        for attempt in unfinished:
            attempt.settled = True
            self.interrupt(attempt)
            _flush_progress(attempt.job)  # before the job is released
        return unfinished

    # -- cancel requests ---------------------------------------------------------------------
    def check_cancels_now(self) -> None:
        """Make the next ``poll_cancels`` ask the backend (a cancel was announced); any
        thread."""
        self._last_cancel_poll = 0.0

    def poll_cancels(self) -> None:
        """At most every ``CANCEL_POLL_INTERVAL``: ask which running jobs have a cancel request
        and tell them (``job.cancel_requested``); async ones are cancelled at once, sync ones
        interrupted after ``cancel_grace`` unless they end first."""
        now = time.monotonic()
        if now - self._last_cancel_poll < CANCEL_POLL_INTERVAL:
            return
        self._last_cancel_poll = now
        running = {a.job.id: a for a in self._active if not a.settled}
        if not running:
            return
        for job_id in self.backend.cancel_requested(list(running)):
            attempt = running[job_id]
            if attempt.job.cancel_requested:
                continue
            attempt.job._cancel_event = threading.Event()
            attempt.job._cancel_event.set()
            # An async job is cancelled at once: CancelledError at its next await is its
            # chance to clean up. A sync job can only see the flag, so it gets a grace period
            # to stop by itself before it is interrupted.
            if attempt.is_async or self.cancel_grace <= 0:
                logger.info(
                    "job %s %s: cancel requested, stopping it", job_id, attempt.job.executor,
                    extra=job_fields(attempt.job),
                )  # fmt: skip
                self.interrupt(attempt)
            else:
                logger.info(
                    "job %s %s: cancel requested; interrupting it in %gs unless it ends first",
                    job_id, attempt.job.executor, self.cancel_grace,
                    extra=job_fields(attempt.job),
                )  # fmt: skip
                attempt.cancel_at = now + self.cancel_grace


def _flush_progress(job: Job) -> None:
    """Write the attempt's pending progress report, if any (never fails the attempt)."""
    if job._progress is not None:
        job._progress.flush()
