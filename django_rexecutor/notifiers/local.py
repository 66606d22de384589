"""A notifier for one process: announcements reach the waiters and subscribers of this
process only (the in-memory backend; SQLite, which has no cross-process notifications)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection

from .base import JOBS_CHANNEL, Callback, Notifier

logger = logging.getLogger("django_rexecutor.notify")


class LocalNotifier(Notifier):
    """In-process announcements; nothing to connect, so it always listens until stopped."""

    cross_process = False

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: Sequence number of the latest announcement, and of the latest per executor.
        self._seq = 0
        self._latest: dict[str, int] = {}
        self._stopped = False
        self._callbacks: list[Callback] = []

    def start(self, wait: float = 0.0) -> bool:
        with self._cond:
            return not self._stopped

    def stop(self, wait: float = 0.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def listening(self) -> bool:
        return not self._stopped

    @property
    def stopped(self) -> bool:
        return self._stopped

    def subscribe(self, callback: Callback) -> None:
        with self._cond:
            self._callbacks.append(callback)

    def unsubscribe(self, callback: Callback) -> None:
        with self._cond:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def wait(self, executors: Collection[str], timeout: float) -> bool:
        names = list(executors)
        with self._cond:
            seq = self._seq

            def woken() -> bool:
                return self._stopped or any(self._latest.get(n, 0) > seq for n in names)

            return self._cond.wait_for(woken, max(0.0, timeout))

    def notify(self, channel: str, payload: str) -> None:
        with self._cond:
            if channel == JOBS_CHANNEL:
                self._seq += 1
                self._latest[payload] = self._seq
                self._cond.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(channel, payload)
            except Exception:
                logger.exception("A notification callback failed")
