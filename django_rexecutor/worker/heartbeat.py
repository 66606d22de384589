"""The heartbeat thread: tells the database the worker is alive and rescues the jobs of workers
that are not.

Rescue compares heartbeats with the database's clock (``Backend.rescue_orphaned_jobs``), so a
worker with a skewed clock can neither be rescued while alive nor rescue a live one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import timedelta

from ..backends.base import Backend
from .connections import drop_connection

logger = logging.getLogger("django_rexecutor.worker")


class Heartbeat:
    """Beats every ``interval`` for the ids returned by ``identities()`` (worker id → running
    job ids) and runs a rescue pass after each beat."""

    def __init__(
        self,
        backend: Backend,
        identities: Callable[[], dict[str, list[int]]],
        *,
        executors: Collection[str],
        concurrency: int,
        interval: timedelta,
        rescue_after: timedelta,
    ) -> None:
        self.backend = backend
        self.identities = identities
        self.executors = sorted(executors)
        self.concurrency = concurrency
        self.interval = interval.total_seconds()
        self.rescue_after = rescue_after
        #: ``time.monotonic()`` of the last beat that reached the database.
        self.last_beat = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rexecutor-heartbeat", daemon=True)

    def beat(self) -> None:
        """Record a heartbeat for every identity now (raises on database errors)."""
        started = time.monotonic()
        for worker_id, running in self.identities().items():
            self.backend.record_heartbeat(
                worker_id, executors=self.executors, concurrency=self.concurrency, running=running
            )
        self.last_beat = started

    def rescue(self) -> list[int]:
        rescued = self.backend.rescue_orphaned_jobs(self.rescue_after)
        if rescued:
            logger.warning(
                "Rescued %d job(s) left executing by dead workers: %s",
                len(rescued), ", ".join(map(str, rescued[:20])),
            )  # fmt: skip
        return rescued

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def silent_for(self) -> float:
        """Seconds since the last successful beat."""
        return time.monotonic() - self.last_beat

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                self.beat()
                self.rescue()
                delay = self.interval
            except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive any failure
                logger.warning("Heartbeat failed (%s); retrying", str(exc).strip() or exc)
                drop_connection(self.backend)
                delay = min(self.interval, 1.0)
        drop_connection(self.backend)
