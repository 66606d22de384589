"""Conformance: the backend's clock and giving back claims a worker never received.

A mixin of ``BackendConformanceTests`` (it uses its ``backend`` fixture); it talks to the backend
only through the ``Backend`` interface."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from ..backends.base import Backend, Claim, EnqueuableJob, ErrorDetails
from ..status import JobStatus

_EXECUTOR = "conformance_alpha"
_FAILURE = ErrorDetails("payment_declined", "card refused")


def _enqueue(backend: Backend, *, at: datetime | None = None, max_attempts: int = 5) -> int:
    return backend.enqueue(EnqueuableJob(_EXECUTOR, None, None, max_attempts, at or timezone.now()))


def _near(moment: datetime | None, reference: datetime, within: float = 5.0) -> bool:
    return moment is not None and abs((moment - reference).total_seconds()) < within


class IdentityConformance:
    """Tests of ``current_time`` and ``release_unseen_claims``."""

    def test_current_time_is_aware_and_moves_forward(self, backend: Backend) -> None:
        first = backend.current_time()
        second = backend.current_time()
        assert first.tzinfo is not None and first.utcoffset() is not None
        assert second >= first
        # Backends run on hosts whose clocks agree within seconds in this suite.
        assert _near(first, timezone.now())

    def test_timestamps_and_due_times_follow_the_backends_clock_not_the_hosts(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        due = _enqueue(backend)
        failing = _enqueue(backend)
        released = _enqueue(backend)
        not_yet = _enqueue(backend, at=timezone.now() + timedelta(minutes=30))
        # From here on this process's clock is an hour ahead; the backend's may or may not be
        # (an in-process backend keeps this process's time, a database its own).
        host_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: host_now() + timedelta(hours=1))
        backend.record_heartbeat("w", executors=[_EXECUTOR], concurrency=4)
        claimed = {j.id: j for j in backend.claim_jobs("w", {_EXECUTOR: 4}, 4)}
        clock = backend.current_time()
        assert set(claimed) - {not_yet} == {due, failing, released}
        assert (not_yet in claimed) == (backend.get_job(not_yet).scheduled_at <= clock), (
            "a job is due by the backend's clock"
        )
        assert backend.mark_job_complete(due, claim=Claim.of(claimed[due]))
        assert backend.mark_job_discarded(failing, _FAILURE, claim=Claim.of(claimed[failing]))
        assert backend.release_jobs([Claim.of(claimed[released])]) == 1
        backend.record_heartbeat("new-worker", executors=[_EXECUTOR], concurrency=1)
        clock = backend.current_time()
        assert _near(backend.get_job(due).completed_at, clock)
        discarded = backend.get_job(failing)
        assert _near(discarded.discarded_at, clock)
        assert _near(discarded.errors[-1].recorded_at, clock)
        assert _near(backend.get_job(released).scheduled_at, clock)
        [worker] = [w for w in backend.live_workers() if w.worker_id == "new-worker"]
        assert _near(worker.started_at, clock) and _near(worker.heartbeat_at, clock)
        # Rows first written now are alive by the backend's clock: rescue leaves them alone.
        again = backend.claim_jobs("new-worker", {_EXECUTOR: 1}, 1)
        assert [j.id for j in again] == [released]
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == []
        assert {w.worker_id for w in backend.live_workers()} == {"w", "new-worker"}

    def test_release_unseen_claims_gives_back_only_the_jobs_the_worker_does_not_know(
        self, backend: Backend
    ) -> None:
        retried, fresh, known, foreign = (_enqueue(backend) for _ in range(4))
        [first] = backend.claim_jobs("w", {_EXECUTOR: 1}, 1)
        assert first.id == retried
        assert backend.mark_job_retryable(retried, timezone.now(), _FAILURE, claim=Claim.of(first))
        assert {j.id for j in backend.claim_jobs("w", {_EXECUTOR: 2}, 2)} == {fresh, known}
        assert [j.id for j in backend.claim_jobs("elsewhere", {_EXECUTOR: 1}, 1)] == [foreign]
        [second] = backend.claim_jobs("w", {_EXECUTOR: 1}, 1)
        assert (second.id, second.attempt) == (retried, 2)
        # "w" received ``known`` only: the others were claimed in a round trip it never saw.
        assert sorted(backend.release_unseen_claims("w", [known])) == sorted([fresh, retried])
        clock = backend.current_time()
        given_back = {j: backend.get_job(j) for j in (fresh, retried)}
        assert (given_back[fresh].status, given_back[fresh].attempt) == (JobStatus.SCHEDULED, 0)
        assert given_back[fresh].errors == [], "no error for a job that never ran"
        assert (given_back[retried].status, given_back[retried].attempt) == (
            JobStatus.RETRYABLE,
            1,
        )
        assert [e.error_type for e in given_back[retried].errors] == [_FAILURE.error_type]
        assert all(j.scheduled_at <= clock for j in given_back.values()), "due now"
        for job_id, worker in ((known, "w"), (foreign, "elsewhere")):
            job = backend.get_job(job_id)
            assert (job.status, job.claimed_by, job.attempt) == (JobStatus.EXECUTING, worker, 1)
        assert backend.release_unseen_claims("w", [known]) == []
        assert backend.release_unseen_claims("nobody", []) == []
        again = {j.id: j.attempt for j in backend.claim_jobs("w", {_EXECUTOR: 4}, 4)}
        assert again == {fresh: 1, retried: 2}
