"""``ClaimConformance``: ``claim_jobs`` (order, capacity per executor, the limit, never one
job to two claimers), ``next_scheduled_at`` and ``release_jobs``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.utils import timezone

from ...backends.base import Backend, Claim
from ...status import JobStatus
from .base import ALPHA, BETA, MISSING_ID, ConformanceBase

GAMMA = "conformance_gamma"


class ClaimConformance(ConformanceBase):
    """Claiming and giving claims back; adoptable alone with ``ConformanceBase``."""

    def test_claim_marks_the_job_executing_for_the_worker(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        [job] = backend.claim_jobs("worker-9", {ALPHA: 5}, 5)
        stored = backend.get_job(job_id)
        for seen in (job, stored):
            assert (seen.id, seen.status, seen.attempt) == (job_id, JobStatus.EXECUTING, 1)
            assert seen.claimed_by == "worker-9"
            self.assert_recent(seen.attempted_at)
        assert backend.claim_jobs("worker-9", {ALPHA: 5}, 5) == []

    def test_claim_order_is_priority_then_scheduled_at_then_id(self, backend: Backend) -> None:
        now = timezone.now()
        t1, t2 = now - timedelta(minutes=2), now - timedelta(minutes=1)
        later_p0 = self.enqueue(backend, priority=0, scheduled_at=t2)
        p1 = self.enqueue(backend, priority=1, scheduled_at=t1 - timedelta(hours=1))
        tie_a = self.enqueue(backend, priority=0, scheduled_at=t1)
        tie_b = self.enqueue(backend, priority=0, scheduled_at=t1)
        order = [self.claim(backend).id for _ in range(4)]
        assert order == [tie_a, tie_b, later_p0, p1]

    def test_claim_order_holds_across_executors_when_one_is_capped(self, backend: Backend) -> None:
        # The capped executor makes the claim take each executor's candidates separately;
        # the most urgent of them must still win, whichever executor they belong to.
        for _ in range(10):
            self.enqueue(backend, BETA, priority=9)
        urgent = [self.enqueue(backend, GAMMA, priority=0) for _ in range(3)]
        capped = [self.enqueue(backend, ALPHA, priority=0) for _ in range(2)]
        jobs = backend.claim_jobs("worker-1", {ALPHA: 1, BETA: 4, GAMMA: 4}, 4)
        assert sorted(j.id for j in jobs) == sorted([capped[0], *urgent])
        assert [j.priority for j in jobs] == [0, 0, 0, 0]

    def test_claim_fills_the_limit_in_priority_order_within_capacities(
        self, backend: Backend
    ) -> None:
        alpha = [self.enqueue(backend, ALPHA, priority=p) for p in (0, 1, 2)]
        beta = [self.enqueue(backend, BETA, priority=p) for p in (3, 4, 5)]
        jobs = backend.claim_jobs("worker-1", {ALPHA: 2, BETA: 5}, 4)
        assert [j.id for j in jobs] == [alpha[0], alpha[1], beta[0], beta[1]]
        assert backend.get_job(alpha[2]).status == JobStatus.SCHEDULED

    def test_claim_ignores_future_and_non_waiting_jobs(self, backend: Backend) -> None:
        self.enqueue(backend, scheduled_at=timezone.now() + timedelta(minutes=5))
        running = self.enqueue(backend)
        self.claim_id(backend, running)
        self.finish(backend, self.enqueue(backend), JobStatus.COMPLETE)
        self.enqueue(backend, BETA)
        assert backend.claim_jobs("w", {ALPHA: 10}, 10) == []

    def test_claim_respects_capacity_per_executor_and_limit(self, backend: Backend) -> None:
        for n in range(4):
            self.enqueue(backend, ALPHA, data={"n": n})
            self.enqueue(backend, BETA, data={"n": n})
        jobs = backend.claim_jobs("w", {ALPHA: 2, BETA: 1}, 10)
        assert sorted(j.executor for j in jobs) == [ALPHA, ALPHA, BETA]
        betas = backend.claim_jobs("w", {ALPHA: 0, BETA: 5}, 5)
        assert [j.executor for j in betas] == [BETA] * 3
        assert backend.claim_jobs("w", {ALPHA: 5}, 0) == []
        assert backend.claim_jobs("w", {}, 5) == []
        assert len(backend.claim_jobs("w", {ALPHA: 10, BETA: 10}, 1)) == 1
        assert len(backend.claim_jobs("w", {ALPHA: 5}, 5)) == 1

    def test_claims_from_threads_never_hand_a_job_out_twice(self, backend: Backend) -> None:
        expected = {self.enqueue(backend, data={"n": n}) for n in range(40)}
        workers = [f"thread-{n}" for n in range(4)]
        start = threading.Barrier(len(workers))

        def drain(worker: str) -> list[int]:
            try:
                start.wait(timeout=10)
                got: list[int] = []
                while jobs := backend.claim_jobs(worker, {ALPHA: 3}, 3):
                    got += [j.id for j in jobs]
                return got
            finally:
                self.release_thread_resources()

        with ThreadPoolExecutor(len(workers)) as pool:
            results = dict(zip(workers, pool.map(drain, workers), strict=True))
        everything = [job_id for got in results.values() for job_id in got]
        assert len(everything) == len(set(everything)), "a job was claimed twice"
        assert set(everything) == expected
        for worker, got in results.items():
            for job_id in got:
                job = backend.get_job(job_id)
                assert (job.claimed_by, job.attempt) == (worker, 1)

    def test_a_retryable_job_is_claimed_again_when_due(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        again = self.claim_id(backend, job_id, worker="second")
        assert (again.attempt, again.claimed_by) == (2, "second")
        assert [e.attempt for e in again.errors] == [1]

    def test_next_scheduled_at(self, backend: Backend) -> None:
        assert backend.next_scheduled_at([ALPHA]) is None
        soon = timezone.now() + timedelta(minutes=1)
        self.enqueue(backend, ALPHA, scheduled_at=soon + timedelta(minutes=1))
        self.enqueue(backend, ALPHA, scheduled_at=soon)
        self.enqueue(backend, BETA, scheduled_at=soon - timedelta(minutes=5))
        assert backend.next_scheduled_at([ALPHA]) == soon
        assert backend.next_scheduled_at([ALPHA, BETA]) == soon - timedelta(minutes=5)
        assert backend.next_scheduled_at(["nobody"]) is None

    def test_release_gives_the_attempt_back(self, backend: Backend) -> None:
        second = self.enqueue(backend)
        self.fail_once(backend, second)
        first = self.enqueue(backend, scheduled_at=timezone.now() - timedelta(minutes=1))
        jobs = backend.claim_jobs("stopping", {ALPHA: 2}, 2)
        assert sorted(self.ids(jobs)) == sorted([first, second])
        stale = Claim(first, 7, "stopping")
        assert backend.release_jobs([Claim.of(j) for j in jobs] + [stale]) == 2
        released = {i: backend.get_job(i) for i in (first, second)}
        assert (released[first].status, released[first].attempt) == (JobStatus.SCHEDULED, 0)
        assert (released[second].status, released[second].attempt) == (JobStatus.RETRYABLE, 1)
        for job in released.values():
            assert job.scheduled_at <= timezone.now(), "released jobs are due now"
        assert len(released[second].errors) == 1, "a release records no error"
        assert len(backend.claim_jobs("next", {ALPHA: 2}, 2)) == 2
        assert backend.release_jobs([Claim(MISSING_ID, 1, "x")]) == 0
