"""Claiming: one round trip that takes up to the free slots' worth of ready jobs and starts
them, and the rule for a claim whose reply was lost.

A claim can commit in the database and still fail in the worker (the connection dropped after
the commit, a row that cannot be loaded). Those jobs are executing under the worker's id but
never started; before the next claim they are given back, their attempt unused."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta

from ..backends.base import Backend
from ..exceptions import BackendError
from ..limits import Limits
from .acks import ResultQueue
from .attempts import RunningAttempts
from .connections import DB_ERRORS
from .execution import describe_exception
from .metrics import NO_METRICS, WorkerMetrics
from .wakeups import Wakeups

logger = logging.getLogger("django_rexecutor.worker")


class Claimer:
    """Claims jobs for ``worker_id`` into ``attempts``; tells ``wakeups`` whether slots are
    left free. Main thread only."""

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
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.attempts = attempts
        self.results = results
        self.wakeups = wakeups
        self.rescue_after = rescue_after
        #: Limited executors' limits, which the backend enforces as it claims.
        self.limits = dict(limits or {})
        #: A claim failed and may have committed unseen: give such jobs back before claiming.
        self.unseen = False
        #: Told of every claim round trip (``worker.metrics``); set by the worker.
        self.metrics: WorkerMetrics = NO_METRICS

    def claim(self, silent_for: float) -> tuple[int, int]:
        """Claim up to the free slots and start the jobs; returns (claimed, asked for).
        ``silent_for``: seconds since the worker's last heartbeat reached the backend."""
        capacity, free = self.attempts.capacity()
        if not capacity:
            self.wakeups.sated()
            return 0, 0
        if silent_for > self.rescue_after.total_seconds():
            # Our heartbeat may look dead to others by now: claim nothing until it is back.
            self.wakeups.sated()
            return 0, 0
        if self.unseen:
            self.release_unseen()
        limit = min(free, sum(capacity.values()))
        started = time.monotonic()
        try:
            if self.limits:
                jobs = self.backend.claim_jobs(self.worker_id, capacity, limit, limits=self.limits)
            else:
                jobs = self.backend.claim_jobs(self.worker_id, capacity, limit)
        except Exception as exc:
            # The claim may have committed without our seeing its rows: those jobs never
            # started, so before claiming again we give them back, their attempt unused.
            self.unseen = True
            if isinstance(exc, DB_ERRORS):
                raise
            logger.exception("Claiming jobs failed")
            raise BackendError(f"claim_jobs failed: {describe_exception(exc)}") from exc
        self.metrics.claimed(time.monotonic() - started, limit, len(jobs))
        for job in jobs:
            self.attempts.start(job)
        if len(jobs) < limit:
            self.wakeups.hungry(sorted(capacity))
        else:
            self.wakeups.sated()
        return len(jobs), limit

    def known_job_ids(self) -> set[int]:
        """Every job this process holds a claim on: running, or ended with its result still
        to be written."""
        return self.attempts.job_ids() | self.results.job_ids()

    def release_unseen(self) -> None:
        """Give back the jobs executing under our id that we never received."""
        released = self.backend.release_unseen_claims(self.worker_id, self.known_job_ids())
        self.unseen = False
        if released:
            logger.warning(
                "Gave back %d job(s) claimed in a round trip whose reply was lost: %s",
                len(released), ", ".join(map(str, released[:20])),
            )  # fmt: skip
