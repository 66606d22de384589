"""The worker: claims ready jobs, runs them, records their outcomes.

One orchestrating thread (the one calling ``run()``) decides every claim and owns every running
attempt, so the hot path is a loop of "start buffered jobs in freed slots → hand the batched
acks to the completion writer → ask the claim thread for more (free slots plus the prefetch
buffer)"; where the database takes one writer at a time, the claim and the acks run on this
thread itself. ``Worker`` keeps that loop, the life cycle (start-up retry, graceful shutdown) and the
signals, and wires its parts together:

- ``attempts``: the table of running attempts (capacity, the sync pool and the event loop,
  time-outs, cancel requests);
- ``claims``: the claim round trip (on ``claimthread``), the prefetch buffer (``prefetch``)
  and the jobs of a claim whose reply was lost;
- ``acks``: the result queue (batched fenced completions, written by ``completions``; the
  other outcomes one by one);
- ``wakeups``: the waker thread and the backend's notifier;
- ``heartbeat`` (alive + rescue), ``plugins`` (cron, pruner) and ``identity``."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ..backends import get_backend
from ..backends.base import Backend, Claim
from ..conf import rexecutor_settings
from ..exceptions import ConfigurationError
from ..limits import limits_of
from ..logfields import set_process_worker
from ..middleware import chain as middleware_chain
from .acks import ResultQueue
from .attempts import CANCEL_POLL_INTERVAL, RunningAttempts
from .claims import Claimer
from .clock import WorkerClock
from .connections import DB_ERRORS, drop_connection
from .execution import describe_exception
from .heartbeat import Heartbeat
from .identity import default_worker_name, incarnation_id, resolve_executors
from .metrics import NO_METRICS, WorkerMetrics
from .plugins import PluginRunner, load_plugins
from .wakeups import Wakeups

__all__ = ["Worker", "default_worker_name", "incarnation_id", "resolve_executors"]

logger = logging.getLogger("django_rexecutor.worker")

#: Longest extra delay before acking/claiming, to batch the round trips of short jobs.
COALESCE_WINDOW = 0.005
_MAX_RECONNECT_DELAY = 5.0
_BACKSTOP_INTERVAL = 5.0


class _StopRequested(Exception):
    """A signal arrived while the worker was still waiting for the database at start-up."""


class Worker:
    """Runs jobs of ``executors`` until stopped (signals, ``stop()``) or, with ``burst``, until
    no job is ready. ``run()`` returns the process exit code."""

    def __init__(
        self,
        executors: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        concurrency: int | None = None,
        prefetch: int | None = None,
        shutdown_timeout: float | timedelta | None = None,
        burst: bool = False,
        name: str | None = None,
        backend: Backend | None = None,
        cron: bool = True,
        pruner: bool = True,
        handle_signals: bool = True,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.executors = resolve_executors(executors, exclude)
        try:
            middleware_chain()  # a MIDDLEWARE entry that cannot be loaded fails here, not per job
        except ImproperlyConfigured as exc:
            raise ConfigurationError(str(exc)) from exc
        self.concurrency = (
            concurrency if concurrency is not None else rexecutor_settings.CONCURRENCY
        )
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {self.concurrency}.")
        if prefetch is None:
            prefetch = rexecutor_settings.PREFETCH
        #: Most jobs claimed ahead of free slots (see ``worker.prefetch``).
        self.prefetch = 4 * self.concurrency if prefetch is None else prefetch
        if self.prefetch < 0:
            raise ConfigurationError(f"prefetch must be at least 0, got {self.prefetch}.")
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
        #: Outcome → count, for the exit summary.
        self.stats: Counter[str] = Counter()
        self.started_at = timezone.now()

        #: Set to make the main loop look around now (an attempt ended, a job may be ready, a
        #: signal arrived).
        self._wake = threading.Event()
        self.attempts = RunningAttempts(
            self.backend,
            self.executors,
            self.concurrency,
            cancel_grace=self.cancel_grace,
            wake=self._wake,
        )
        self.results = ResultQueue(self.backend, self.clock, self.stats)
        #: The executors whose claims count (``global_concurrency``, ``rate_limit``).
        self.flow_limits = {
            name: lim for name, cls in self.executors.items() if (lim := limits_of(cls)).active
        }
        self.wakeups = Wakeups(
            self.backend,
            self.executors,
            self.clock,
            poll_interval=self.poll_interval,
            wake=self._wake,
            on_cancel=self.attempts.check_cancels_now,
            limited=self.flow_limits,
        )
        self.claims = Claimer(
            self.backend,
            self.worker_id,
            self.attempts,
            self.results,
            self.wakeups,
            rescue_after=self.rescue_after,
            limits=self.flow_limits,
            prefetch=self.prefetch,
        )
        #: Completions waiting for the writer's thread beyond which nothing more is claimed.
        self._writer_backlog = 4 * (self.concurrency + self.prefetch)
        self._signals = 0
        self._stop_deadline: float | None = None
        self._cycle_at = 0.0
        self._heartbeat: Heartbeat | None = None
        self._plugins: PluginRunner | None = None
        self._previous_handlers: dict[int, Any] = {}
        #: Where the parts report attempts, outcomes and claims (``--metrics-port``).
        self.metrics = metrics if metrics is not None else NO_METRICS
        self.attempts.metrics = self.results.metrics = self.claims.metrics = self.metrics
        self.metrics.watch_running(lambda: len(self.attempts.running_ids()))

    # -- public controls -------------------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful shutdown (what the first SIGTERM/SIGINT does)."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.shutdown_timeout
        self._wake.set()

    @property
    def running_jobs(self) -> list[int]:
        return self.attempts.running_ids()

    @property
    def limits(self) -> dict[str, int]:
        """``max_concurrency`` of the executors that have one."""
        return self.attempts.limits

    def describe(self) -> dict[str, Any]:
        """The settings in force, for the startup banner."""
        return {
            "worker": self.worker_id,
            "executors": sorted(self.executors),
            "backend": type(self.backend).__name__,
            "database": self.backend.store,
            "concurrency": self.concurrency,
            "prefetch": self.prefetch,
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

    # -- life cycle --------------------------------------------------------------------------
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
        set_process_worker(self.worker_id)
        self.attempts.start_threads()
        if self.backend.supports_parallel_writes:
            # Acknowledgements and claims on connections of their own, in flight together.
            self.results.start_writer()
            self.claims.start_thread(self._wake)
        self._heartbeat = Heartbeat(
            self.backend,
            self.worker_id,
            self.attempts.running_ids,
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
        else:
            self.wakeups.start()
            plugins = load_plugins(self.backend, cron=self.cron, pruner=self.pruner)
            self._plugins = PluginRunner(self.backend, plugins)
            self._plugins.start()
        logger.info(
            "Worker %s started: executors %s, concurrency %d",
            self.worker_id, ", ".join(sorted(self.executors)), self.concurrency,
        )  # fmt: skip

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

    # -- main loop ---------------------------------------------------------------------------
    def _loop_forever(self) -> None:
        delay = 0.1
        while True:
            self._wake.clear()
            if self._signals >= 2:
                return
            try:
                self.results.extend(self.attempts.reap())
                self.results.extend(self.attempts.enforce_deadlines())
                if self._stop_deadline is None:
                    # Freed slots take buffered jobs at once, without a round trip.
                    assert self._heartbeat is not None
                    self.claims.start_ahead(self._heartbeat.silent_for())
                else:
                    self.claims.stop_thread()  # a claim still out joins the buffer
                    self.claims.release_ahead("the worker is stopping")
                if self._coalescing():
                    self._wake.wait(COALESCE_WINDOW)
                    continue
                self.results.flush()
                if self._stop_deadline is not None:
                    self.attempts.poll_cancels()
                    if not self.attempts or time.monotonic() >= self._stop_deadline:
                        return
                else:
                    self.attempts.poll_cancels()
                    assert self._heartbeat is not None
                    if self.results.writing_behind(self._writer_backlog):
                        # The completions are not keeping up: claim again once they do.
                        self._wake.wait(COALESCE_WINDOW)
                        continue
                    claimed, wanted = self.claims.claim(self._heartbeat.silent_for())
                    self._cycle_at = time.monotonic()
                    if claimed and claimed == wanted:
                        continue  # there may be more: claim again once slots free up
                    idle = not (
                        self.attempts or self.results or self.claims.ahead or self.claims.busy
                    )
                    idle = idle and not claimed
                    if self.burst and idle:
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
        if not self.attempts or self._stop_deadline is not None:
            return False
        return time.monotonic() - self._cycle_at < COALESCE_WINDOW

    def _wait_timeout(self) -> float:
        # Outside burst mode the waker thread polls (and listens) while we are hungry; our own
        # timeout is only a backstop.
        timeout = 1.0 if self.burst else max(self.poll_interval, _BACKSTOP_INTERVAL)
        if self.results:
            timeout = COALESCE_WINDOW  # completions being written: look again soon
        if self.attempts:
            timeout = min(timeout, CANCEL_POLL_INTERVAL)
            deadline = self.attempts.next_deadline()
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        if self._stop_deadline is not None:
            timeout = min(timeout, max(0.0, self._stop_deadline - time.monotonic()))
        return timeout

    def _nothing_ready(self) -> bool:
        due = self.backend.next_scheduled_at(list(self.executors))
        return due is None or due > self.clock.now()

    # -- shutdown ----------------------------------------------------------------------------
    def _shutdown(self) -> int:
        """Release what is still running, forget this worker, stop the threads."""
        self.wakeups.close()
        code = 1 if self._signals >= 2 else 0
        # Every step below runs whatever the previous one raised: the worker must always end up
        # releasing its jobs and removing its row.
        try:
            self.results.extend(self.attempts.reap())
            self.results.stop_writer()
            self.results.flush()
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "Could not record %d result(s): %s", len(self.results), describe_exception(exc)
            )
        try:
            self.claims.stop_thread()
            self.claims.release_ahead("the worker is stopping")
        except Exception as exc:  # noqa: BLE001 - ``unseen`` is set: retried below
            logger.warning("Could not give back the jobs claimed ahead: %s", exc)
        # Something claimed under our id still executing in the database (neither written nor
        # released) keeps our row: it must go stale for rescue to take those jobs over.
        left_executing = not self._release_unfinished()
        if self.claims.unseen:
            try:
                self.claims.release_unseen()
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
        if self.results or left_executing:
            logger.warning(
                "Worker %s leaves jobs executing (%d result(s) unwritten); they will be rescued "
                "once its heartbeat is %gs old",
                self.worker_id, len(self.results), self.rescue_after.total_seconds(),
            )  # fmt: skip
        else:
            try:
                self.backend.remove_worker(self.worker_id)
            except Exception as exc:  # noqa: BLE001
                logger.warning(
                    "Could not unregister worker %s: %s", self.worker_id, describe_exception(exc)
                )
        self.attempts.stop_threads()
        self.wakeups.stop()
        logger.info("Worker %s stopped", self.worker_id)
        return code

    def _release_unfinished(self) -> bool:
        """Interrupt the attempts still running and give their jobs back to the queue, their
        attempt unused; ``False`` if the backend refused (the jobs stay executing)."""
        unfinished = self.attempts.settle_unfinished()
        if not unfinished:
            return True
        claims = [Claim.of(a.job) for a in unfinished]
        released_all = True
        try:
            released = self.backend.release_jobs(claims)
        except Exception as exc:  # noqa: BLE001
            released = 0
            released_all = False
            logger.warning(
                "Could not release jobs (%s); they will be rescued", describe_exception(exc)
            )
        self.stats["released"] += released
        logger.warning(
            "Released %d unfinished job(s) back to the queue: %s",
            released, ", ".join(str(a.job.id) for a in unfinished),
        )  # fmt: skip
        return released_all

    # -- signals -----------------------------------------------------------------------------
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
