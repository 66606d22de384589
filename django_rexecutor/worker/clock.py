"""The worker's clock: the backend's (database's) time, never the host's.

Rescue, the claim's "due" cut-off and the backend's own timestamps use the database's clock; a
worker that wrote or compared times by its host's clock would, running 60 s behind, look dead
the moment it writes a heartbeat, or, running ahead, claim jobs before they are due. So the
worker reads the backend's time at start and at every heartbeat, and between two reads
advances it on the monotonic clock, which measures durations only."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.utils import timezone

from ..backends.base import Backend

logger = logging.getLogger("django_rexecutor.worker")

#: A host clock this far from the database's is worth a warning (it is harmless to the worker,
#: but other programs on that host write times too).
SKEW_WARNING = timedelta(seconds=2)


class WorkerClock:
    """``now()`` in the backend's clock, thread-safe; ``sync()`` re-reads the backend's time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: (backend time, ``time.monotonic()`` at which it was read); replaced whole, so
        #: readers in other threads always see a consistent pair.
        self._anchor: tuple[datetime, float] | None = None
        self._warned = False

    def sync(self) -> None:
        """Read the backend's time (raises on database errors)."""
        before = time.monotonic()
        backend_now = self.backend.current_time()
        after = time.monotonic()
        # The time was read somewhere during the round trip: assume its middle.
        self._anchor = (backend_now, (before + after) / 2)
        skew = timezone.now() - backend_now
        if abs(skew) > SKEW_WARNING and not self._warned:
            self._warned = True
            logger.warning(
                "This host's clock is %.1fs %s the database's; the worker keeps to the "
                "database's clock",
                abs(skew.total_seconds()), "ahead of" if skew > timedelta(0) else "behind",
            )  # fmt: skip

    def now(self) -> datetime:
        """The backend's current time (read from it first if it never was)."""
        anchor = self._anchor
        if anchor is None:
            self.sync()
            anchor = self._anchor
            assert anchor is not None
        at, read_at = anchor
        return at + timedelta(seconds=time.monotonic() - read_at)
