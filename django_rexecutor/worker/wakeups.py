"""Wake-ups: when a worker with free slots found nothing to claim, what wakes its main loop.

A waker thread blocks while the worker is hungry: until the next scheduled job is due or the
poll interval passes, and, where the backend announces new jobs to other processes
(``supports_notifications``), until its notifier announces one. The notifier's callbacks wake
the main loop straight from the listener thread; a cancel announcement makes the running jobs
be checked for cancel requests at once. Notifications only accelerate: the poll interval is
the guarantee."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from ..backends.base import Backend
from ..notifiers.base import CANCEL_CHANNEL, JOBS_CHANNEL, Notifier
from .clock import WorkerClock
from .connections import drop_connection

logger = logging.getLogger("django_rexecutor.worker")

#: How long the waker lets the main loop claim and start a just-announced job before it looks
#: up the next scheduled one: both need the GIL, and the job's start is what is waited for.
_RECHECK_DELAY = 0.01


class Wakeups:
    """Sets ``wake`` (the main loop's event) when a job of ``executors`` may be ready while the
    worker is hungry; calls ``on_cancel`` when a cancel request is announced."""

    def __init__(
        self,
        backend: Backend,
        executors: Collection[str],
        clock: WorkerClock,
        *,
        poll_interval: float,
        wake: threading.Event,
        on_cancel: Callable[[], None],
        limited: Collection[str] = (),
    ) -> None:
        self.backend = backend
        self.executors = list(executors)
        self._announced = frozenset(executors)
        self.clock = clock
        self.poll_interval = poll_interval
        self._wake = wake
        self._on_cancel = on_cancel
        #: Executors whose due jobs may be held back by a limit: their due times cannot
        #: bring the next wake-up forward (that would spin while the limit holds), so a
        #: freed slot or window is seen at the next poll.
        self.limited = frozenset(limited)
        self._hungry = threading.Event()
        self._hungry_for: list[str] = []
        self._closing = threading.Event()
        #: Set by the listener on job notifications and reconnects while subscribed.
        self._recheck = threading.Event()
        self._subscribed = False
        self._thread: threading.Thread | None = None

    # -- what the main loop tells us -------------------------------------------------------
    def hungry(self, executors: list[str]) -> None:
        """The last claim left slots of ``executors`` free: wake the main loop when one of
        their jobs may be ready."""
        self._hungry_for = executors
        self._hungry.set()

    def sated(self) -> None:
        """No slot is free (or claiming is paused): nothing to wake up for."""
        self._hungry.clear()

    @property
    def is_hungry(self) -> bool:
        return self._hungry.is_set()

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe to the backend's notifier (if it announces jobs across processes) and start
        the waker thread."""
        if self.backend.supports_notifications:
            notifier = self._notifier()
            notifier.start(wait=2.0)
            notifier.subscribe(self.on_notification)
            self._subscribed = True
        self._thread = threading.Thread(target=self._run, name="rexecutor-waker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop waiting (the worker is shutting down): the waker makes no more round trips."""
        self._closing.set()  # first: see _run
        self._hungry.set()
        self._recheck.set()

    def stop(self) -> None:
        """``close``, unsubscribe and stop the notifier, and let the waker thread end."""
        self.close()
        if self.backend.supports_notifications:
            notifier = self._notifier()
            notifier.unsubscribe(self.on_notification)
            notifier.stop(wait=2.0)
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _notifier(self) -> Notifier:
        return self.backend.notifier()

    # -- the waker thread ------------------------------------------------------------------
    def _run(self) -> None:
        """While the worker has free slots and nothing to claim, block on the backend until a
        job may be ready (a notification, the next scheduled job, or the poll interval), then
        wake the main loop."""
        while not self._closing.is_set():
            if not self._hungry.wait(0.5):
                continue
            names = self._hungry_for or self.executors
            try:
                timeout = self.poll_interval
                self._recheck.clear()
                if self._closing.is_set():
                    # ``close`` sets ``_closing`` before ``_recheck``: whichever of the two the
                    # clear above missed, no wait starts once the worker shuts down.
                    break
                unlimited = [n for n in names if n not in self.limited]
                due = self.backend.next_scheduled_at(unlimited) if unlimited else None
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

    def on_notification(self, channel: str, payload: str) -> None:
        """The notifier's callback (its listener thread): ``("", "")`` after a reconnect."""
        if channel == CANCEL_CHANNEL:
            self._on_cancel()
            self._wake.set()
        elif (channel == JOBS_CHANNEL and payload in self._announced) or not channel:
            # A job became ready, or the listener reconnected (notifications may have been
            # missed). Wake the main loop straight from the listener thread: one thread
            # hand-off less than through the waker, and no notification lost while the waker
            # is between two waits.
            self._recheck.set()
            if self._hungry.is_set():
                self._wake.set()
