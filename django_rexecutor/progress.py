"""Progress reports from inside ``execute``: validation and the once-a-second throttle.

``Job.report_progress`` hands each report to the attempt's ``ProgressReporter``, which writes
it with the fenced ``Backend.report_progress`` at most once per ``INTERVAL`` seconds. A report
within the interval is kept as pending: the next report after the interval writes the newest
value, and the worker flushes it when the attempt ends (before its result is written), so the
last value reported is always the one stored. A write refused because the job is no longer
this attempt's (rescued, cancelled, timed out) is dropped silently; a failing write is logged
and never fails the job."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Final

from asgiref.sync import sync_to_async

from .job import storable_text

if TYPE_CHECKING:
    from .backends.base import Backend
    from .job import Job

logger = logging.getLogger("django_rexecutor.worker")

#: Seconds between two progress writes of one job.
INTERVAL: Final = 1.0
#: Characters of a note that are stored; a longer note is cut.
MAX_NOTE_LENGTH: Final = 1000


def check_progress(progress: object, note: object = "") -> tuple[float, str]:
    """``(progress, note)`` as stored; ``ValueError`` naming the value if it is not a number
    from 0 to 1."""
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        raise ValueError(
            f"report_progress() takes a number from 0.0 to 1.0, not {progress!r} "
            "(e.g. job.report_progress(done / total))."
        )
    value = float(progress)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"report_progress() takes a number from 0.0 to 1.0, not {progress!r} "
            "(e.g. job.report_progress(done / total))."
        )
    text = storable_text(note if note is not None else "")
    return value, text[:MAX_NOTE_LENGTH]


class ProgressReporter:
    """The throttled writer of one attempt's progress (a worker makes one per attempt)."""

    def __init__(self, backend: Backend, job: Job, *, interval: float = INTERVAL) -> None:
        from .backends.values import Claim

        self.backend = backend
        self.claim = Claim.of(job)
        self.interval = interval
        self._lock = threading.Lock()
        self._last_write = -math.inf
        self._pending: tuple[float, str] | None = None

    def _take(self, job: Job, progress: object, note: object) -> tuple[float, str] | None:
        """Validate and record the report; the value to write now, if the throttle allows."""
        value = check_progress(progress, note)
        job.progress, job.progress_note = value
        with self._lock:
            now = time.monotonic()
            if now - self._last_write < self.interval:
                self._pending = value
                return None
            self._last_write = now
            self._pending = None
            return value

    def _pending_value(self) -> tuple[float, str] | None:
        with self._lock:
            value, self._pending = self._pending, None
            if value is not None:
                self._last_write = time.monotonic()
            return value

    def report(self, job: Job, progress: object, note: object = "") -> None:
        value = self._take(job, progress, note)
        if value is not None:
            self._write(value)

    async def areport(self, job: Job, progress: object, note: object = "") -> None:
        value = self._take(job, progress, note)
        if value is not None:
            await sync_to_async(self._write, thread_sensitive=True)(value)

    def flush(self) -> None:
        """Write the pending value, if any (the attempt ended)."""
        value = self._pending_value()
        if value is not None:
            self._write(value)

    async def aflush(self) -> None:
        value = self._pending_value()
        if value is not None:
            await sync_to_async(self._write, thread_sensitive=True)(value)

    def _write(self, value: tuple[float, str]) -> None:
        try:
            self.backend.report_progress(self.claim, value[0], value[1])
        except Exception as exc:  # noqa: BLE001 - a progress write never fails the job
            logger.warning(
                "job %s: recording its progress failed: %s",
                self.claim.job_id, exc,
                extra={
                    "rexecutor_job_id": self.claim.job_id,
                    "rexecutor_attempt": self.claim.attempt,
                    "rexecutor_worker": self.claim.worker_id,
                },
            )  # fmt: skip
