"""The notifier interface and its two channels."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection

logger = logging.getLogger("django_rexecutor.notify")

#: A job became ready; the payload is its executor's name. (Also PostgreSQL's NOTIFY channel,
#: which the job table's triggers use: changing it needs a migration.)
JOBS_CHANNEL = "rexecutor_jobs_v1"
#: A running job got a cancel request; the payload is its id.
CANCEL_CHANNEL = "rexecutor_cancel_v1"

#: ``callback(channel, payload)``; ``("", "")`` means notifications may have been missed.
Callback = Callable[[str, str], None]


class Notifier(ABC):
    """Wakes waiters and calls subscribers when the store announces something."""

    #: Whether it hears what other processes do (enqueues, cancel requests).
    cross_process: bool = False

    @abstractmethod
    def start(self, wait: float = 0.0) -> bool:
        """Start listening (once); wait up to ``wait`` seconds until it listens. Returns
        whether it does."""

    @abstractmethod
    def stop(self, wait: float = 0.0) -> None:
        """Stop listening; wait up to ``wait`` seconds for its resources to be released."""

    @property
    @abstractmethod
    def listening(self) -> bool: ...

    @property
    @abstractmethod
    def stopped(self) -> bool: ...

    @abstractmethod
    def subscribe(self, callback: Callback) -> None:
        """Call ``callback(channel, payload)`` on every notification (from the notifier's
        own thread or the announcing one: it must be quick and must not block), and with
        ``("", "")`` after a reconnect."""

    @abstractmethod
    def unsubscribe(self, callback: Callback) -> None: ...

    @abstractmethod
    def wait(self, executors: Collection[str], timeout: float) -> bool:
        """Block until a job of ``executors`` is announced (or notifications may have been
        missed), or ``timeout`` seconds pass. Returns ``True`` when woken early."""

    @abstractmethod
    def notify(self, channel: str, payload: str) -> None:
        """Announce ``payload`` on ``channel`` to this notifier's waiters and subscribers."""


class AnnouncingNotifier(Notifier):
    """The bookkeeping every notifier shares: waiters woken per executor, subscribers called
    outside the lock, and a generation that moves on when notifications may have been missed
    (which wakes every waiter). Subclasses say how announcements arrive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: Sequence number of the latest announcement, and of the latest per executor.
        self._seq = 0
        self._latest: dict[str, int] = {}
        self._generation = 0
        self._stopped = False
        self._callbacks: list[Callback] = []

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
        """Block until a job of ``executors`` is announced, notifications may have been
        missed, the notifier stops, or ``timeout`` seconds pass. Returns ``True`` when woken
        early."""
        self.start()
        names = list(executors)
        with self._cond:
            seq, generation = self._seq, self._generation

            def woken() -> bool:
                if self._generation != generation or self._stopped:
                    return True
                return any(self._latest.get(name, 0) > seq for name in names)

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

    def _missed(self) -> None:
        """Notifications may have been missed: wake every waiter. Call it holding
        ``self._cond``."""
        self._generation += 1
        self._cond.notify_all()
