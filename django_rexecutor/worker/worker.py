"""The worker: claims ready jobs, runs them, records their outcomes.

One orchestrating thread (the one calling ``run()``) does every claim and result write, so the
hot path is a loop of "claim up to the free slots → hand jobs to long-lived threads → batch the
acks". Around it: a fixed pool of daemon threads for sync executors, one event loop thread for
``async def`` executors, a heartbeat thread (alive + rescue), a waker thread that blocks on
``backend.wait_for_jobs`` while the worker is hungry, and a plugin thread (cron, pruner)."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from datetime import timedelta
from types import FrameType
from typing import Any

from django.utils import timezone

from .. import registry
from ..backends import get_backend
from ..backends.base import Backend, Claim
from ..conf import rexecutor_settings
from ..exceptions import BackendError, ConfigurationError
from ..executor import Executor
from ..job import Job
from ..query import IdIn
from ..status import JobStatus
from .clock import WorkerClock
from .connections import DB_ERRORS, drop_connection
from .execution import (
    CANCELLED,
    COMPLETE,
    DONE_RESULT,
    INTERRUPTED_RESULT,
    STALE,
    AttemptResult,
    atidy_connections,
    attempt_timeout,
    describe_exception,
    is_async_executor,
    log_outcome,
    record_result,
    result_of_exception,
    run_async,
    run_sync,
    send_finished,
    send_started,
    tidy_connections,
    timeout_result,
)
from .heartbeat import Heartbeat
from .plugins import PluginRunner, load_plugins
from .threads import EventLoopThread, Interruptible, SyncPool

logger = logging.getLogger("django_rexecutor.worker")

CANCEL_POLL_INTERVAL = 0.5
#: Longest extra delay before acking/claiming, to batch the round trips of short jobs.
COALESCE_WINDOW = 0.005
_MAX_RECONNECT_DELAY = 5.0
_BACKSTOP_INTERVAL = 5.0
#: How long the waker lets the main loop claim and start a just-announced job before it looks
#: up the next scheduled one: both need the GIL, and the job's start is what is waited for.
_RECHECK_DELAY = 0.01


#: Longest worker id the workers table and ``claimed_by`` hold.
_MAX_WORKER_ID = 255
_INCARNATION_CHARS = 8


def default_worker_name() -> str:
    """The label of a worker started without ``--name``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def incarnation_id(name: str) -> str:
    """A worker's identity: its name (a label, which restarts and other workers may share)
    plus a random part, so no two processes ever claim under the same id and a new process
    can never make an older one's jobs look alive."""
    if len(name) > _MAX_WORKER_ID - _INCARNATION_CHARS - 1:
        raise ConfigurationError(
            f"Worker name {name[:40]!r}... is {len(name)} characters long; use at most "
            f"{_MAX_WORKER_ID - _INCARNATION_CHARS - 1} (the worker adds "
            f"{_INCARNATION_CHARS + 1} to make its id unique)."
        )
    return f"{name}@{secrets.token_hex(_INCARNATION_CHARS // 2)}"


def resolve_executors(
    names: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, type[Executor]]:
    """The executors a worker runs: ``names`` (default: all registered) minus ``exclude``.
    Unknown names are a ``ConfigurationError`` listing the registered ones."""
    known = registry.all_executors()
    wanted = list(names or [])
    excluded = list(exclude)
    unknown = sorted({n for n in [*wanted, *excluded] if n not in known})
    if unknown:
        raise ConfigurationError(
            f"Unknown executor name(s): {', '.join(map(repr, unknown))}. Registered: "
            f"{', '.join(known) or 'none (define executors in the jobs.py of an installed app)'}."
        )
    chosen = {n: known[n] for n in (wanted or known) if n not in set(excluded)}
    if not chosen:
        raise ConfigurationError(
            "This worker would run no executor: register some in an app's jobs.py or adjust "
            "--executor/--exclude."
        )
    return chosen


class _StopRequested(Exception):
    """A signal arrived while the worker was still waiting for the database at start-up."""


class _Attempt:
    """One running attempt of one job, owned by the orchestrating thread."""

    __slots__ = (
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


class Worker:
    """Runs jobs of ``executors`` until stopped (signals, ``stop()``) or, with ``burst``, until
    no job is ready. ``run()`` returns the process exit code."""

    def __init__(
        self,
        executors: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        concurrency: int | None = None,
        shutdown_timeout: float | timedelta | None = None,
        burst: bool = False,
        name: str | None = None,
        backend: Backend | None = None,
        cron: bool = True,
        pruner: bool = True,
        handle_signals: bool = True,
    ) -> None:
        self.executors = resolve_executors(executors, exclude)
        self.concurrency = (
            concurrency if concurrency is not None else rexecutor_settings.CONCURRENCY
        )
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {self.concurrency}.")
        if shutdown_timeout is None:
            shutdown_timeout = rexecutor_settings.SHUTDOWN_TIMEOUT
        if isinstance(shutdown_timeout, timedelta):
            shutdown_timeout = shutdown_timeout.total_seconds()
        if shutdown_timeout < 0:
            raise ConfigurationError(f"shutdown timeout must be >= 0, got {shutdown_timeout}.")
        self.shutdown_timeout = float(shutdown_timeout)
        self.burst = burst
        #: A label (``--name``); ``worker_id`` is this process's own identity, for its life.
        self.name = name or default_worker_name()
        self.worker_id = incarnation_id(self.name)
        self.backend = backend if backend is not None else get_backend()
        #: Every time the worker writes or compares, in the database's clock.
        self.clock = WorkerClock(self.backend)
        self.cron = cron
        self.pruner = pruner
        self.handle_signals = handle_signals
        self.poll_interval = rexecutor_settings.POLL_INTERVAL.total_seconds()
        self.heartbeat_interval = rexecutor_settings.HEARTBEAT_INTERVAL
        self.rescue_after = rexecutor_settings.RESCUE_AFTER
        self.cancel_grace = rexecutor_settings.CANCEL_GRACE.total_seconds()
        self.limits = {
            n: cls.max_concurrency
            for n, cls in self.executors.items()
            if cls.max_concurrency is not None
        }
        self._async_names = {n for n, cls in self.executors.items() if is_async_executor(cls)}
        #: Async attempts running on the event loop (touched by the loop's thread only).
        self._async_running = 0
        #: Outcome → count, for the exit summary.
        self.stats: Counter[str] = Counter()
        self.started_at = timezone.now()

        self._active: set[_Attempt] = set()
        self._per_executor: Counter[str] = Counter()
        self._finished: deque[_Attempt] = deque()
        self._to_write: deque[tuple[_Attempt, AttemptResult]] = deque()
        self._wake = threading.Event()
        self._hungry = threading.Event()
        self._hungry_for: list[str] = []
        self._closing = threading.Event()
        self._signals = 0
        self._stop_deadline: float | None = None
        #: A claim failed and may have committed unseen: give such jobs back before claiming.
        self._unseen_claims = False
        self._last_cancel_poll = 0.0
        self._cycle_at = 0.0
        self._pool: SyncPool | None = None
        self._loop: EventLoopThread | None = None
        self._heartbeat: Heartbeat | None = None
        self._plugins: PluginRunner | None = None
        self._waker: threading.Thread | None = None
        #: Set by the listener on job notifications and reconnects while subscribed.
        self._recheck = threading.Event()
        self._subscribed = False
        self._previous_handlers: dict[int, Any] = {}

    # -- public controls -------------------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful shutdown (what the first SIGTERM/SIGINT does)."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.shutdown_timeout
        self._wake.set()

    @property
    def running_jobs(self) -> list[int]:
        return sorted(a.job.id for a in list(self._active) if not a.settled)

    def describe(self) -> dict[str, Any]:
        """The settings in force, for the startup banner."""
        alias = getattr(self.backend, "alias", None)
        vendor = getattr(self.backend, "vendor", None)
        return {
            "worker": self.worker_id,
            "executors": sorted(self.executors),
            "backend": type(self.backend).__name__,
            "database": f"{alias} ({vendor})" if alias else "-",
            "concurrency": self.concurrency,
            "poll_interval": self.poll_interval,
            "notifications": bool(self.backend.supports_notifications),
            "heartbeat_interval": self.heartbeat_interval.total_seconds(),
            "rescue_after": self.rescue_after.total_seconds(),
            "shutdown_timeout": self.shutdown_timeout,
            "cancel_grace": self.cancel_grace,
            "burst": self.burst,
            "cron": self.cron,
            "pruner": self.pruner,
        }

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped; returns 0 after a graceful stop or a finished burst, 1 after a
        second signal."""
        self._install_signal_handlers()
        try:
            self._start()
            self._loop_forever()
        except _StopRequested:
            logger.warning("Stopped while waiting for the database to start up")
        except BaseException:
            logger.exception("Worker %s failed; releasing its jobs", self.worker_id)
            self._shutdown()
            raise
        finally:
            self._restore_signal_handlers()
        return self._shutdown()

    def _start(self) -> None:
        self._pool = SyncPool(self.concurrency)
        if self._async_names:
            self._loop = EventLoopThread()
        self._heartbeat = Heartbeat(
            self.backend,
            self.worker_id,
            self._running_ids,
            self.clock,
            executors=self.executors,
            concurrency=self.concurrency,
            interval=self.heartbeat_interval,
            rescue_after=self.rescue_after,
        )
        # The first beat happens before the first claim, so no rescue pass can ever see our
        # claims without a live worker row; it also sets our clock to the database's.
        self._with_retry(self._heartbeat.beat)
        # Rescue passes run in their own thread, beside the beats. A burst rescues first, so
        # that what it rescues is run in this burst.
        self._heartbeat.start(rescue_now=not self.burst)
        if self.burst:
            self._with_retry(self._heartbeat.rescue)
        if self.backend.supports_notifications and not self.burst:
            notifier = self._notifier()
            if notifier is not None:
                notifier.start(wait=2.0)
                notifier.subscribe(self._on_notification)
                self._subscribed = True
        if not self.burst:
            self._waker = threading.Thread(
                target=self._wait_for_jobs, name="rexecutor-waker", daemon=True
            )
            self._waker.start()
            plugins = load_plugins(self.backend, cron=self.cron, pruner=self.pruner)
            self._plugins = PluginRunner(self.backend, plugins)
            self._plugins.start()
        logger.info(
            "Worker %s started: executors %s, concurrency %d",
            self.worker_id, ", ".join(sorted(self.executors)), self.concurrency,
        )  # fmt: skip

    def _notifier(self) -> Any:
        return self.backend.notifier()

    def _with_retry(self, operation: Any) -> Any:
        """Run a start-up database operation, retrying through connection loss."""
        delay = 0.1
        while True:
            try:
                return operation()
            except DB_ERRORS as exc:
                if "no such table" in str(exc):
                    raise
                if self._signals:
                    raise _StopRequested from exc
                logger.warning("Database unavailable (%s); retrying in %.1fs", exc, delay)
                drop_connection(self.backend)
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, _MAX_RECONNECT_DELAY)

    def _loop_forever(self) -> None:
        delay = 0.1
        while True:
            self._wake.clear()
            if self._signals >= 2:
                return
            try:
                self._reap()
                self._enforce_deadlines()
                if self._coalescing():
                    self._wake.wait(COALESCE_WINDOW)
                    continue
                self._flush_writes()
                if self._stop_deadline is not None:
                    self._poll_cancels()
                    if not self._active or time.monotonic() >= self._stop_deadline:
                        return
                else:
                    self._poll_cancels()
                    claimed, wanted = self._claim()
                    self._cycle_at = time.monotonic()
                    if claimed and claimed == wanted:
                        continue  # there may be more: claim again once slots free up
                    if self.burst and not self._active and not self._to_write and not claimed:
                        if self._nothing_ready():
                            return
                        continue
                delay = 0.1
            except DB_ERRORS as exc:
                logger.warning(
                    "Database error in worker %s (%s); reconnecting in %.1fs",
                    self.worker_id, str(exc).strip() or type(exc).__name__, delay,
                )  # fmt: skip
                drop_connection(self.backend)
                self._wake.wait(delay)
                delay = min(delay * 2, _MAX_RECONNECT_DELAY)
                continue
            self._wake.wait(self._wait_timeout())

    def _coalescing(self) -> bool:
        """Whether to wait a moment for more running jobs to end before the next round trip.

        Short jobs end one by one; acking and refilling each slot separately would cost two
        round trips per job. While jobs still run and the last round trip ended less than
        ``COALESCE_WINDOW`` ago, waiting lets acks and claims go out in batches."""
        if not self._active or self._stop_deadline is not None:
            return False
        return time.monotonic() - self._cycle_at < COALESCE_WINDOW

    def _wait_timeout(self) -> float:
        # Outside burst mode the waker thread polls (and listens) while we are hungry; our own
        # timeout is only a backstop.
        timeout = 1.0 if self.burst else max(self.poll_interval, _BACKSTOP_INTERVAL)
        if self._active:
            timeout = min(timeout, CANCEL_POLL_INTERVAL)
            deadlines = [
                at
                for a in self._active
                if not a.settled
                for at in (a.deadline, a.cancel_at)
                if at is not None
            ]
            if deadlines:
                timeout = min(timeout, max(0.0, min(deadlines) - time.monotonic()))
        if self._stop_deadline is not None:
            timeout = min(timeout, max(0.0, self._stop_deadline - time.monotonic()))
        return timeout

    def _nothing_ready(self) -> bool:
        due = self.backend.next_scheduled_at(list(self.executors))
        return due is None or due > self.clock.now()

    # -- claiming ----------------------------------------------------------------------------
    def _capacity(self) -> tuple[dict[str, int], int]:
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

    def _claim(self) -> tuple[int, int]:
        """Claim up to the free slots and start the jobs; returns (claimed, asked for)."""
        assert self._heartbeat is not None
        capacity, free = self._capacity()
        if not capacity:
            self._hungry.clear()
            return 0, 0
        if self._heartbeat.silent_for() > self.rescue_after.total_seconds():
            # Our heartbeat may look dead to others by now: claim nothing until it is back.
            self._hungry.clear()
            return 0, 0
        if self._unseen_claims:
            self._release_unseen_claims()
        limit = min(free, sum(capacity.values()))
        try:
            jobs = self.backend.claim_jobs(self.worker_id, capacity, limit)
        except Exception as exc:
            # The claim may have committed without our seeing its rows (the connection dropped
            # after the commit, a row that cannot be loaded): those jobs never started, so
            # before claiming again we give them back, their attempt unused.
            self._unseen_claims = True
            if isinstance(exc, DB_ERRORS):
                raise
            logger.exception("Claiming jobs failed")
            raise BackendError(f"claim_jobs failed: {describe_exception(exc)}") from exc
        for job in jobs:
            self._start_attempt(job)
        if len(jobs) < limit:
            self._hungry_for = sorted(capacity)
            self._hungry.set()
        else:
            self._hungry.clear()
        return len(jobs), limit

    def _wait_for_jobs(self) -> None:
        """Waker thread: while the worker has free slots and nothing to claim, block on the
        backend until a job may be ready (NOTIFY, the next scheduled job, or the poll
        interval), then wake the main loop."""
        while not self._closing.is_set():
            if not self._hungry.wait(0.5):
                continue
            names = self._hungry_for or list(self.executors)
            try:
                timeout = self.poll_interval
                self._recheck.clear()
                due = self.backend.next_scheduled_at(names)
                if due is not None:
                    timeout = min(timeout, (due - self.clock.now()).total_seconds())
                if self._subscribed:
                    # The listener wakes the main loop itself; a notification only means the
                    # next scheduled job may have changed. Look it up once the main loop has
                    # had the announced job started, not while it claims it.
                    if self._recheck.wait(max(0.01, timeout)):
                        self._closing.wait(_RECHECK_DELAY)
                        continue
                else:
                    self.backend.wait_for_jobs(names, max(0.01, timeout))
            except Exception as exc:  # noqa: BLE001 - the waker must outlive any failure
                logger.debug("Waiting for jobs failed: %s", exc)
                drop_connection(self.backend)
                self._closing.wait(1.0)
            self._wake.set()
        drop_connection(self.backend)

    def _on_notification(self, channel: str, payload: str) -> None:
        from ..models import CANCEL_CHANNEL, JOBS_CHANNEL

        if channel == CANCEL_CHANNEL:
            self._last_cancel_poll = 0.0
            self._wake.set()
        elif (channel == JOBS_CHANNEL and payload in self.executors) or not channel:
            # A job became ready, or the listener reconnected (notifications may have been
            # missed). Wake the main loop straight from the listener thread: one thread
            # hand-off less than through the waker, and no notification lost while the waker
            # is between two waits.
            self._recheck.set()
            if self._hungry.is_set():
                self._wake.set()

    # -- running -----------------------------------------------------------------------------
    def _start_attempt(self, job: Job) -> None:
        executor_cls = self.executors[job.executor]
        attempt = _Attempt(job, executor_cls)
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
        send_started(executor_cls, job)
        if job.executor in self._async_names:
            assert self._loop is not None
            attempt.is_async = True
            self._loop.submit(self._run_async(attempt))
        else:
            assert self._pool is not None
            attempt.guard = Interruptible()
            self._pool.submit(lambda: self._run_sync(attempt))

    def _run_sync(self, attempt: _Attempt) -> None:
        guard = attempt.guard
        assert guard is not None and attempt.instance is not None
        result = INTERRUPTED_RESULT
        try:
            if guard.enter():
                try:
                    tidy_connections()
                    result = run_sync(attempt.instance, attempt.job)
                finally:
                    guard.leave()
                tidy_connections()
        except BaseException as exc:  # noqa: BLE001 - never let a job kill a pool thread
            result = result_of_exception(exc)
        self._finish(attempt, result)

    async def _run_async(self, attempt: _Attempt) -> None:
        import asyncio

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
                await atidy_connections()
                result = await run_async(attempt.instance, attempt.job)
                if self._async_running == 1:
                    await atidy_connections()
        except BaseException as exc:  # noqa: BLE001 - the attempt must end, whatever happens
            result = result_of_exception(exc)
        finally:
            self._async_running -= 1
        self._finish(attempt, result)

    def _finish(self, attempt: _Attempt, result: AttemptResult) -> None:
        """Called from the thread that ran the attempt."""
        attempt.result = result
        self._finished.append(attempt)
        self._wake.set()

    def _interrupt(self, attempt: _Attempt) -> None:
        if attempt.is_async:
            assert self._loop is not None
            self._loop.loop.call_soon_threadsafe(self._cancel_task, attempt)
        elif attempt.guard is not None:
            attempt.guard.interrupt()

    @staticmethod
    def _cancel_task(attempt: _Attempt) -> None:
        attempt.interrupt_requested = True
        if attempt.task is not None:
            attempt.task.cancel()

    def _reap(self) -> None:
        """Free the slots of ended attempts and queue their results for writing."""
        while self._finished:
            attempt = self._finished.popleft()
            if attempt in self._active:
                self._active.discard(attempt)
                self._per_executor[attempt.job.executor] -= 1
            if not attempt.settled:
                attempt.settled = True
                assert attempt.result is not None
                self._to_write.append((attempt, attempt.result))

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for attempt in list(self._active):
            if attempt.settled:
                continue
            if attempt.cancel_at is not None and attempt.cancel_at <= now:
                attempt.cancel_at = None
                logger.info(
                    "job %s %s: still running %gs after its cancel request, interrupting it",
                    attempt.job.id, attempt.job.executor, self.cancel_grace,
                )  # fmt: skip
                self._interrupt(attempt)
            if attempt.deadline is None or attempt.deadline > now:
                continue
            # Recorded at the deadline whether or not the job can be interrupted; its slot
            # stays taken until its thread really ends.
            attempt.settled = True
            assert attempt.limit is not None
            self._to_write.append((attempt, timeout_result(attempt.limit)))
            self._interrupt(attempt)

    def _poll_cancels(self) -> None:
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
                    "job %s %s: cancel requested, stopping it", job_id, attempt.job.executor
                )
                self._interrupt(attempt)
            else:
                logger.info(
                    "job %s %s: cancel requested; interrupting it in %gs unless it ends first",
                    job_id, attempt.job.executor, self.cancel_grace,
                )  # fmt: skip
                attempt.cancel_at = now + self.cancel_grace

    # -- writing results ---------------------------------------------------------------------
    def _flush_writes(self) -> None:
        """Write queued results: completions in one batch, the rest one by one. A result leaves
        the queue only once written, so a database error just retries it later."""
        if not self._to_write:
            return
        done = [
            (a, r) for a, r in self._to_write if r is DONE_RESULT and not a.job.cancel_requested
        ]
        if done and self._complete(done):
            finished = {id(a) for a, _ in done}
            self._to_write = deque((a, r) for a, r in self._to_write if id(a) not in finished)
        while self._to_write:
            attempt, result = self._to_write[0]
            outcome, recorded = record_result(
                self.backend, attempt.instance, attempt.job, result, now=self.clock.now()
            )
            self._to_write.popleft()
            self._report(attempt, outcome, recorded)

    def _complete(self, done: list[tuple[_Attempt, AttemptResult]]) -> bool:
        """Acknowledge completions in one batch and report them; ``False`` if the backend
        refused the batch for good, leaving them to be written (and reported) one by one."""
        try:
            written = self.backend.complete_jobs([Claim.of(a.job) for a, _ in done])
        except DB_ERRORS:
            raise
        except Exception as exc:  # one bad row must not block the others
            logger.error(
                "Acknowledging %d completed job(s) at once failed (%s); writing them one by one",
                len(done), describe_exception(exc), exc_info=exc,
            )  # fmt: skip
            return False
        outcomes = [COMPLETE] * len(done)
        if written != len(done):
            outcomes = self._settled_outcomes([a for a, _ in done])
        for (attempt, result), outcome in zip(done, outcomes, strict=True):
            self._report(attempt, outcome, result)
        return True

    def _settled_outcomes(self, attempts: list[_Attempt]) -> list[str]:
        """After a partly refused batch of completions, find out what each job became: complete
        (by us), cancelled (a cancel request won) or stale (no longer ours)."""
        try:
            found = self.backend.query(IdIn(tuple(a.job.id for a in attempts)))
        except DB_ERRORS:
            raise
        except Exception as exc:  # the writes are done; only the report is unsure
            logger.error(
                "Reading back %d acknowledged job(s) failed (%s); reporting them as stale",
                len(attempts), describe_exception(exc), exc_info=exc,
            )  # fmt: skip
            found = []
        jobs = {j.id: j for j in found}
        outcomes = []
        for attempt in attempts:
            job = jobs.get(attempt.job.id)
            ours = job is not None and job.attempt == attempt.job.attempt
            if ours and job is not None and job.status == JobStatus.COMPLETE:
                outcomes.append(COMPLETE)
            elif ours and job is not None and job.status == JobStatus.CANCELLED:
                outcomes.append(CANCELLED)
            else:
                outcomes.append(STALE)
        return outcomes

    def _report(self, attempt: _Attempt, outcome: str, result: AttemptResult) -> None:
        duration = time.monotonic() - attempt.started
        self.stats[outcome] += 1
        log_outcome(attempt.job, outcome, duration, result)
        if outcome != STALE:
            send_finished(attempt.executor_cls, attempt.job, outcome, duration)

    # -- identity and heartbeats ---------------------------------------------------------------
    def _running_ids(self) -> list[int]:
        """The jobs shown as running in our heartbeat (called from the heartbeat thread)."""
        return sorted(a.job.id for a in list(self._active) if not a.settled)

    def _known_job_ids(self) -> set[int]:
        """Every job this process holds a claim on: running, or ended with its result still
        to be written. Main thread only."""
        return {a.job.id for a in self._active} | {a.job.id for a, _ in self._to_write}

    def _release_unseen_claims(self) -> None:
        """Give back the jobs executing under our id that we never received."""
        released = self.backend.release_unseen_claims(self.worker_id, self._known_job_ids())
        self._unseen_claims = False
        if released:
            logger.warning(
                "Gave back %d job(s) claimed in a round trip whose reply was lost: %s",
                len(released), ", ".join(map(str, released[:20])),
            )  # fmt: skip

    # -- shutdown ----------------------------------------------------------------------------
    def _shutdown(self) -> int:
        """Release what is still running, forget this worker, stop the threads."""
        self._closing.set()
        self._hungry.set()
        self._recheck.set()
        code = 1 if self._signals >= 2 else 0
        # Every step below runs whatever the previous one raised: the worker must always end up
        # releasing its jobs and removing its row.
        try:
            self._reap()
            self._flush_writes()
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "Could not record %d result(s): %s", len(self._to_write), describe_exception(exc)
            )
        # Something claimed under our id still executing in the database (neither written nor
        # released) keeps our row: it must go stale for rescue to take those jobs over.
        left_executing = False
        unfinished = [a for a in self._active if not a.settled]
        if unfinished:
            for attempt in unfinished:
                attempt.settled = True
                self._interrupt(attempt)
            claims = [Claim.of(a.job) for a in unfinished]
            try:
                released = self.backend.release_jobs(claims)
            except Exception as exc:  # noqa: BLE001
                released = 0
                left_executing = True
                logger.warning(
                    "Could not release jobs (%s); they will be rescued", describe_exception(exc)
                )
            self.stats["released"] += released
            logger.warning(
                "Released %d unfinished job(s) back to the queue: %s",
                released, ", ".join(str(a.job.id) for a in unfinished),
            )  # fmt: skip
        if self._unseen_claims:
            try:
                self._release_unseen_claims()
            except Exception as exc:  # noqa: BLE001
                left_executing = True
                logger.warning(
                    "Could not give back unseen claims (%s); they will be rescued",
                    describe_exception(exc),
                )
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._plugins is not None:
            self._plugins.stop()
        if self._to_write or left_executing:
            logger.warning(
                "Worker %s leaves jobs executing (%d result(s) unwritten); they will be rescued "
                "once its heartbeat is %gs old",
                self.worker_id, len(self._to_write), self.rescue_after.total_seconds(),
            )  # fmt: skip
        else:
            try:
                self.backend.remove_worker(self.worker_id)
            except Exception as exc:  # noqa: BLE001
                logger.warning(
                    "Could not unregister worker %s: %s", self.worker_id, describe_exception(exc)
                )
        if self._pool is not None:
            self._pool.shutdown()
        if self._loop is not None:
            self._loop.stop()
        notifier = self._notifier() if self.backend.supports_notifications else None
        if notifier is not None:
            notifier.unsubscribe(self._on_notification)
            notifier.stop(wait=2.0)
        if self._waker is not None:
            self._waker.join(timeout=2)
        logger.info("Worker %s stopped", self.worker_id)
        return code

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.warning(
                "Received %s: finishing running jobs (up to %.0fs), send it again to exit now",
                signal.Signals(signum).name, self.shutdown_timeout,
            )  # fmt: skip
            self.stop()
        else:
            logger.warning("Received %s again: exiting now", signal.Signals(signum).name)
        self._wake.set()
