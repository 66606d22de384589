"""The notifier interface and its two channels."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection

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
