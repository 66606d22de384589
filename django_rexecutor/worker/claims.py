"""Claiming: one round trip that takes ready jobs for the free slots and the prefetch buffer
(``prefetch``), starting jobs from that buffer as slots free, and the rule for a claim whose
reply was lost.

A claim can commit in the database and still fail in the worker (the connection dropped after
the commit, a row that cannot be loaded). Those jobs are executing under the worker's id but
never started; before the next claim they are given back, their attempt unused. Jobs waiting
in the buffer are given back the same way when the worker stops, when a cancel is requested
for them, or when the worker's heartbeat went silent for too long to start anything."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta

from ..backends.base import Backend, Claim
from ..exceptions import BackendError
from ..job import Job
from ..limits import Limits
from .acks import ResultQueue
from .attempts import CANCEL_POLL_INTERVAL, RunningAttempts
from .connections import DB_ERRORS
from .execution import describe_exception
from .metrics import NO_METRICS, WorkerMetrics
from .prefetch import Prefetch
from .wakeups import Wakeups

logger = logging.getLogger("django_rexecutor.worker")


class Claimer:
    """Claims jobs for ``worker_id`` into ``attempts`` and the ``prefetch`` buffer; tells
    ``wakeups`` whether slots are left free. Main thread only."""

    def __init__(
        self,
        backend: Backend,
        worker_id: str,
        attempts: RunningAttempts,
        results: ResultQueue,
        wakeups: Wakeups,
        *,
        rescue_after: timedelta,
        limits: Mapping[str, Limits] | None = None,
        prefetch: int = 0,
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.attempts = attempts
        self.results = results
        self.wakeups = wakeups
        self.rescue_after = rescue_after
        #: Limited executors' limits, which the backend enforces as it claims.
        self.limits = dict(limits or {})
        #: Jobs claimed ahead of free slots (up to ``prefetch``), waiting to start.
        self.ahead = Prefetch(prefetch, attempts.concurrency)
        #: The executors whose jobs may be claimed ahead: no per-worker or cluster-wide limit
        #: to count them against.
        self._prefetchable = {
            name for name in attempts.executors if name not in attempts.limits
        } - set(self.limits)
        #: A claim failed and may have committed unseen: give such jobs back before claiming.
        self.unseen = False
        self._last_cancel_poll = 0.0
        #: Told of every claim round trip (``worker.metrics``); set by the worker.
        self.metrics: WorkerMetrics = NO_METRICS

    def may_start(self, silent_for: float) -> bool:
        """Whether jobs may start: not once our heartbeat may look dead to others (they could
        rescue the job and run it too)."""
        return silent_for <= self.rescue_after.total_seconds()

    def start_ahead(self, silent_for: float) -> int:
        """Start buffered jobs in the free slots; how many started. With the heartbeat silent
        too long, the buffer is given back instead."""
        if not self.ahead:
            return 0
        if not self.may_start(silent_for):
            self.release_ahead("this worker's heartbeat is overdue")
            return 0
        capacity, free = self.attempts.capacity()
        jobs = self.ahead.take(capacity, free)
        for job in jobs:
            self.attempts.start(job)
        return len(jobs)

    def claim(self, silent_for: float) -> tuple[int, int]:
        """Claim for the free slots and the buffer, start what fits; returns (claimed, asked
        for). ``silent_for``: seconds since the worker's last heartbeat reached the backend."""
        if not self.may_start(silent_for):
            # Our heartbeat may look dead to others by now: claim nothing until it is back.
            self.release_ahead("this worker's heartbeat is overdue")
            self.wakeups.sated()
            return 0, 0
        self._poll_ahead_cancels()
        self.start_ahead(silent_for)
        capacity, free = self.attempts.capacity()
        if free and self.ahead:
            room = 0  # buffered jobs wait for their executors' slots: claim for the others
        else:
            room = self.ahead.room()  # slots wait for jobs, or the buffer ran dry: fill it
        wanted = dict(capacity)
        if room:
            for name in self._prefetchable:
                wanted[name] = wanted.get(name, 0) + room
        if not wanted:
            self.wakeups.sated()
            return 0, 0
        if self.unseen:
            self.release_unseen()
        limit = min(free + room, sum(wanted.values()))
        started = time.monotonic()
        try:
            if self.limits:
                jobs = self.backend.claim_jobs(self.worker_id, wanted, limit, limits=self.limits)
            else:
                jobs = self.backend.claim_jobs(self.worker_id, wanted, limit)
        except Exception as exc:
            # The claim may have committed without our seeing its rows: those jobs never
            # started, so before claiming again we give them back, their attempt unused.
            self.unseen = True
            if isinstance(exc, DB_ERRORS):
                raise
            logger.exception("Claiming jobs failed")
            raise BackendError(f"claim_jobs failed: {describe_exception(exc)}") from exc
        self.metrics.claimed(time.monotonic() - started, limit, len(jobs))
        full = len(jobs) >= limit
        if full and free:
            self.ahead.backlog_seen()  # slots were waiting for jobs: hold more ahead
        elif not full:
            self.ahead.backlog_gone()
        self.ahead.add(jobs)
        capacity, free = self.attempts.capacity()
        starting = self.ahead.take(capacity, free)
        try:
            ids = self.ahead.job_ids()
            if ids - self.ahead.recorded:
                # Before any of them starts: what rescue gives back, attempt unused, if this
                # worker dies.
                self.backend.record_claimed_ahead(self.worker_id, ids)
                self.ahead.recorded = frozenset(ids)
        finally:
            for job in starting:
                self.attempts.start(job)
        if not full:
            self.wakeups.hungry(sorted(wanted))
        else:
            self.wakeups.sated()
        return len(jobs), limit

    def release_ahead(self, why: str) -> None:
        """Give every buffered job back to the queue, its attempt unused."""
        jobs = self.ahead.take_all()
        if not jobs:
            return
        self._give_back(jobs, why)

    def _give_back(self, jobs: list[Job], why: str) -> None:
        try:
            released = self.backend.release_jobs([Claim.of(job) for job in jobs])
        except Exception as exc:
            # Still executing under our id: the next claim gives them back, or rescue does.
            self.unseen = True
            logger.warning(
                "Could not give back %d job(s) claimed ahead (%s); retrying before the next "
                "claim", len(jobs), describe_exception(exc),
            )  # fmt: skip
            if isinstance(exc, DB_ERRORS):
                raise
            return
        logger.info(
            "Gave back %d job(s) claimed ahead, not started (%s): %s",
            released, why, ", ".join(str(job.id) for job in jobs[:20]),
        )  # fmt: skip

    def _poll_ahead_cancels(self) -> None:
        """At most every ``CANCEL_POLL_INTERVAL``: buffered jobs with a cancel request are
        given back, which cancels them (the write sees the request)."""
        now = time.monotonic()
        if not self.ahead or now - self._last_cancel_poll < CANCEL_POLL_INTERVAL:
            return
        self._last_cancel_poll = now
        cancelled = self.backend.cancel_requested(self.ahead.job_ids())
        if cancelled:
            self._give_back(self.ahead.remove(cancelled), "cancel requested")

    def known_job_ids(self) -> set[int]:
        """Every job this process holds a claim on: running, or ended with its result still
        to be written."""
        return self.attempts.job_ids() | self.results.job_ids() | self.ahead.job_ids()

    def release_unseen(self) -> None:
        """Give back the jobs executing under our id that we never received."""
        released = self.backend.release_unseen_claims(self.worker_id, self.known_job_ids())
        self.unseen = False
        if released:
            logger.warning(
                "Gave back %d job(s) claimed in a round trip whose reply was lost: %s",
                len(released), ", ".join(map(str, released[:20])),
            )  # fmt: skip
