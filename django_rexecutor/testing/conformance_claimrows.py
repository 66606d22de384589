"""Conformance cases for the claim order across executors and for paged queries."""

from __future__ import annotations

from typing import Any

from ..backends.base import Backend, Claim, ErrorDetails
from ..job import JobId
from ..query import ExecutorEqual, StatusEqual
from ..status import JobStatus

ALPHA = "conformance_alpha"
BETA = "conformance_beta"
GAMMA = "conformance_gamma"


class ClaimrowsConformance:
    """Mixed into ``BackendConformanceTests``; uses its ``backend`` fixture and helpers."""

    enqueue: Any
    claim: Any

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

    def test_query_pages_by_id_with_after_id(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, ALPHA, data={"n": n}) for n in range(7)]
        self.enqueue(backend, BETA)
        pages: list[list[int]] = []
        after: int | None = None
        while True:
            page = backend.query(ExecutorEqual(ALPHA), limit=3, after_id=after)
            if not page:
                break
            pages.append([j.id for j in page])
            after = page[-1].id
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]
        assert [j.id for j in backend.query(ExecutorEqual(ALPHA), after_id=ids[4])] == ids[5:]

    def test_query_without_tracebacks_keeps_the_rest_of_each_error(self, backend: Backend) -> None:
        job_id: JobId = self.enqueue(backend, ALPHA, max_attempts=1)
        job = self.claim(backend, ALPHA)
        error = ErrorDetails("payment_declined", "card refused", "Traceback: line 1")
        assert backend.mark_job_discarded(job_id, error, claim=Claim.of(job))
        [full] = backend.query(StatusEqual(JobStatus.DISCARDED))
        [light] = backend.query(StatusEqual(JobStatus.DISCARDED), tracebacks=False)
        assert [e.traceback for e in full.errors] == ["Traceback: line 1"]
        assert [(e.attempt, e.error_type, e.message, e.traceback) for e in light.errors] == [
            (1, "payment_declined", "card refused", "")
        ]
        assert light.errors[0].recorded_at == full.errors[0].recorded_at
