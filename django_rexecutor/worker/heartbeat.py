"""The heartbeat: tells the database the worker is alive, keeps the worker's clock in step with
the database's, and rescues the jobs of workers that are not alive.

Beats and rescue passes run in two threads, so a long rescue (many orphaned jobs) never delays
a beat: a worker must not look dead because it was busy rescuing. Rescue compares heartbeats
with the database's clock (``Backend.rescue_orphaned_jobs``) and heartbeats are stamped with it,
so a worker with a skewed clock can neither be rescued while alive nor rescue a live one.

After its own beats failed (the database was unreachable, or this process was stopped) a worker
rescues nothing until it has beaten again without a break for ``rescue_after``: every other
worker lost the database too, their heartbeats went stale during the outage although they are
alive, and they need that long to beat again before anyone may call them dead."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection
from datetime import timedelta

from ..backends.base import Backend
from .clock import WorkerClock
from .connections import drop_connection

logger = logging.getLogger("django_rexecutor.worker")

#: Wait before retrying a failed beat or rescue pass (at most the interval).
_RETRY_DELAY = 1.0


class Heartbeat:
    """Beats every ``interval`` for ``worker_id`` (with the job ids ``running()`` returns) and
    re-reads the database's time into ``clock``; runs a rescue pass every ``interval``."""

    def __init__(
        self,
        backend: Backend,
        worker_id: str,
        running: Callable[[], list[int]],
        clock: WorkerClock,
        *,
        executors: Collection[str],
        concurrency: int,
        interval: timedelta,
        rescue_after: timedelta,
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.running = running
        self.clock = clock
        self.executors = sorted(executors)
        self.concurrency = concurrency
        self.interval = interval.total_seconds()
        self.rescue_after = rescue_after
        #: ``time.monotonic()`` of the last beat that reached the database.
        self.last_beat = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._beat_loop, name="rexecutor-heartbeat", daemon=True),
            threading.Thread(target=self._rescue_loop, name="rexecutor-rescue", daemon=True),
        ]
        self._rescue_first = False
        #: ``time.monotonic()`` before which no rescue pass runs (see the module docstring);
        #: ``inf`` while our beats fail.
        self.rescue_allowed_at = 0.0

    def beat(self) -> None:
        """Record a heartbeat now and re-read the database's time (raises on database
        errors)."""
        started = time.monotonic()
        try:
            self.backend.record_heartbeat(
                self.worker_id,
                executors=self.executors,
                concurrency=self.concurrency,
                running=self.running(),
            )
        except BaseException:
            self.rescue_allowed_at = math.inf
            raise
        gap = started - self.last_beat if self.last_beat else 0.0
        if self.rescue_allowed_at == math.inf or gap > self.rescue_after.total_seconds():
            # Back after an outage (or a pause of this process): others may still look dead.
            self.rescue_allowed_at = started + self.rescue_after.total_seconds()
        self.last_beat = started
        self.clock.sync()

    def rescue(self) -> list[int]:
        """Rescue the jobs of dead workers, unless our own beats failed too recently to tell
        a dead worker from one that lost the database with us."""
        if time.monotonic() < self.rescue_allowed_at:
            logger.debug("Rescue deferred: this worker's heartbeat is back from an outage")
            return []
        rescued = self.backend.rescue_orphaned_jobs(self.rescue_after)
        if rescued:
            logger.warning(
                "Rescued %d job(s) left executing by dead workers: %s",
                len(rescued), ", ".join(map(str, rescued[:20])),
            )  # fmt: skip
        return rescued

    def start(self, *, rescue_now: bool = True) -> None:
        """Start beating (the first beat is due one interval from now: ``beat()`` it first)
        and rescuing, at once with ``rescue_now``, else after one interval."""
        self._rescue_first = rescue_now
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)

    def silent_for(self) -> float:
        """Seconds since the last successful beat."""
        return time.monotonic() - self.last_beat

    def _beat_loop(self) -> None:
        self._repeat(self.beat, "Heartbeat", first_delay=self.interval)

    def _rescue_loop(self) -> None:
        self._repeat(
            self.rescue, "Rescue", first_delay=0.0 if self._rescue_first else self.interval
        )

    def _repeat(self, operation: Callable[[], object], what: str, first_delay: float) -> None:
        delay = first_delay
        while not self._stop.wait(delay):
            try:
                operation()
                delay = self.interval
            except Exception as exc:  # noqa: BLE001 - these threads must outlive any failure
                logger.warning("%s failed (%s); retrying", what, str(exc).strip() or exc)
                drop_connection(self.backend)
                delay = min(self.interval, _RETRY_DELAY)
        drop_connection(self.backend)
