"""A notifier for one process: announcements reach the waiters and subscribers of this
process only (the in-memory backend; SQLite, which has no cross-process notifications)."""

from __future__ import annotations

from .base import AnnouncingNotifier


class LocalNotifier(AnnouncingNotifier):
    """In-process announcements (``notify``); nothing to connect, so it listens until it is
    stopped."""

    cross_process = False

    def start(self, wait: float = 0.0) -> bool:
        return not self._stopped

    def stop(self, wait: float = 0.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def listening(self) -> bool:
        return not self._stopped
