"""``LimitConformance``: flow control in ``claim_jobs`` (global concurrency, rate limits,
partitions, racing claimers, no starvation) and pausing executors."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.utils import timezone

from ...backends.base import Backend, Claim, EnqueuableJob
from ...limits import Limits, RateLimit, partition_key
from ...query import ExecutorEqual, Query
from ...status import JobStatus
from .base import ALPHA, BETA, ConformanceBase

#: The partition path of the suite's partitioned limits.
ACCOUNT = ("data.account",)


class LimitConformance(ConformanceBase):
    """Limits and pausing; adoptable alone with ``ConformanceBase``."""

    def enqueue_limited(
        self, backend: Backend, executor: str = ALPHA, *, account: Any = None, priority: int = 0
    ) -> int:
        data = {"account": account}
        job = EnqueuableJob(
            executor,
            data,
            None,
            max_attempts=5,
            scheduled_at=timezone.now(),
            priority=priority,
            partition_key=partition_key(ACCOUNT, data, None) if account else "",
        )
        return int(backend.enqueue(job))

    # -- global concurrency --------------------------------------------------------------------
    def test_global_concurrency_caps_executing_jobs_across_claimers(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=2)}
        for _ in range(5):
            self.enqueue_limited(backend)
        first = backend.claim_jobs("worker-1", {ALPHA: 5}, 5, limits=limits)
        assert len(first) == 2
        assert backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits) == []
        assert backend.mark_job_complete(first[0].id, claim=Claim.of(first[0]))
        again = backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits)
        assert len(again) == 1
        waiting = [j for j in backend.query(_all(ALPHA)) if j.status == JobStatus.SCHEDULED]
        assert len(waiting) == 2 and all(j.attempt == 0 for j in waiting)

    def test_global_concurrency_holds_with_racing_claimers(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=3)}
        for _ in range(20):
            self.enqueue_limited(backend)
        start = threading.Barrier(6)

        def claim(n: int) -> int:
            start.wait(timeout=10)
            return len(backend.claim_jobs(f"worker-{n}", {ALPHA: 10}, 10, limits=limits))

        with self.thread_pool(6) as pool:
            claimed = sum(pool.map(claim, range(6)))
        assert claimed == 3
        executing = [j for j in backend.query(_all(ALPHA)) if j.status == JobStatus.EXECUTING]
        assert len(executing) == 3

    def test_global_concurrency_holds_round_after_round_of_racing_claimers(
        self, backend: Backend
    ) -> None:
        # Claimers race from their very first claim (when the store may still be setting up
        # the executor's bookkeeping) and then claim, run and complete over and over: at no
        # moment may more jobs run than the limit.
        limits = {ALPHA: Limits(global_concurrency=1, partition_by=ACCOUNT)}
        for n in range(24):
            self.enqueue_limited(backend, account="a" if n % 2 else "b")
        start = threading.Barrier(4)
        guard = threading.Lock()
        running: dict[str, int] = {"a": 0, "b": 0}
        most = {"a": 0, "b": 0}

        def claimer(n: int) -> int:
            start.wait(timeout=10)
            done = 0
            for _ in range(8):
                for job in backend.claim_jobs(f"worker-{n}", {ALPHA: 2}, 2, limits=limits):
                    account = job.data["account"]
                    with guard:
                        running[account] += 1
                        most[account] = max(most[account], running[account])
                    time.sleep(0.01)
                    with guard:
                        running[account] -= 1
                    assert backend.mark_job_complete(job.id, claim=Claim.of(job))
                    done += 1
            return done

        with self.thread_pool(4) as pool:
            done = sum(pool.map(claimer, range(4)))
        assert done > 0
        assert most == {"a": 1, "b": 1}

    def test_a_slot_comes_back_when_its_job_stops_executing(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=1)}
        for _ in range(2):
            self.enqueue_limited(backend)
        [job] = backend.claim_jobs("worker-1", {ALPHA: 5}, 5, limits=limits)
        assert backend.release_jobs([Claim.of(job)]) == 1
        assert len(backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits)) == 1

    # -- rate limits ---------------------------------------------------------------------------
    def test_rate_limit_caps_starts_within_its_period(self, backend: Backend) -> None:
        period = 2.0
        limits = {ALPHA: Limits(rate_limit=RateLimit(allowed=2, period=period))}
        for _ in range(5):
            self.enqueue_limited(backend)
        began = time.monotonic()
        first = backend.claim_jobs("worker-1", {ALPHA: 5}, 5, limits=limits)
        assert len(first) == 2
        for job in first:  # finished jobs still count as starts within the period
            assert backend.mark_job_complete(job.id, claim=Claim.of(job))
        assert backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits) == []
        assert time.monotonic() - began < period, "too slow to test the window"
        time.sleep(max(0.0, began + period + 0.1 - time.monotonic()))
        assert len(backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits)) == 2

    # -- partitions ----------------------------------------------------------------------------
    def test_limits_apply_per_partition(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=1, partition_by=ACCOUNT)}
        for account in ("a", "a", "a", "b", "b"):
            self.enqueue_limited(backend, account=account)
        jobs = backend.claim_jobs("worker-1", {ALPHA: 5}, 5, limits=limits)
        assert sorted(j.data["account"] for j in jobs) == ["a", "b"]
        assert backend.claim_jobs("worker-2", {ALPHA: 5}, 5, limits=limits) == []

    def test_a_busy_partition_does_not_hide_the_others(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=1, partition_by=ACCOUNT)}
        for _ in range(40):
            self.enqueue_limited(backend, account="busy")
        quiet = [self.enqueue_limited(backend, account=f"quiet-{n}") for n in range(3)]
        jobs = backend.claim_jobs("worker-1", {ALPHA: 4}, 4, limits=limits)
        assert sorted(j.data["account"] for j in jobs) == ["busy", "quiet-0", "quiet-1", "quiet-2"]
        assert set(quiet) <= {j.id for j in jobs}

    # -- no starvation -------------------------------------------------------------------------
    def test_a_limited_backlog_never_holds_back_other_executors(self, backend: Backend) -> None:
        limits = {ALPHA: Limits(global_concurrency=1)}
        for _ in range(30):
            self.enqueue_limited(backend, ALPHA, priority=0)
        others = [self.enqueue_limited(backend, BETA, priority=9) for _ in range(3)]
        jobs = backend.claim_jobs("worker-1", {ALPHA: 10, BETA: 10}, 10, limits=limits)
        assert sorted(j.executor for j in jobs) == [ALPHA, BETA, BETA, BETA]
        assert set(others) <= {j.id for j in jobs}
        later = self.enqueue_limited(backend, BETA, priority=9)
        jobs = backend.claim_jobs("worker-2", {ALPHA: 10, BETA: 10}, 10, limits=limits)
        assert [j.id for j in jobs] == [later]

    def test_executors_without_limits_ignore_the_limits_of_others(self, backend: Backend) -> None:
        for _ in range(4):
            self.enqueue_limited(backend, BETA)
        limits = {ALPHA: Limits(global_concurrency=1)}
        assert len(backend.claim_jobs("worker-1", {BETA: 4}, 4, limits=limits)) == 4

    # -- pause and resume ----------------------------------------------------------------------
    def test_a_paused_executor_is_not_claimed_until_resumed(self, backend: Backend) -> None:
        backend.pause_executors([ALPHA])
        job_id = self.enqueue(backend, ALPHA)
        other = self.enqueue(backend, BETA)
        assert backend.paused_executors() == {ALPHA}
        jobs = backend.claim_jobs("worker-1", {ALPHA: 5, BETA: 5}, 5)
        assert [j.id for j in jobs] == [other]
        assert backend.next_scheduled_at([ALPHA]) is None
        backend.resume_executors([ALPHA])
        assert backend.paused_executors() == set()
        assert [j.id for j in backend.claim_jobs("worker-1", {ALPHA: 5}, 5)] == [job_id]

    def test_pause_also_holds_for_limited_executors(self, backend: Backend) -> None:
        self.enqueue_limited(backend)
        backend.pause_executors([ALPHA])
        limits = {ALPHA: Limits(global_concurrency=5)}
        assert backend.claim_jobs("worker-1", {ALPHA: 5}, 5, limits=limits) == []

    def test_pause_and_resume_are_idempotent(self, backend: Backend) -> None:
        backend.pause_executors([ALPHA, BETA])
        backend.pause_executors([ALPHA])
        assert backend.paused_executors() == {ALPHA, BETA}
        backend.resume_executors([ALPHA, "never-paused"])
        backend.resume_executors([ALPHA])
        assert backend.paused_executors() == {BETA}


def _all(executor: str) -> Query:
    return ExecutorEqual(executor)
