"""``WorkerConformance``: what keeps workers honest — heartbeats and ``live_workers``,
``rescue_orphaned_jobs`` (retryable, discarded on the last attempt, cancelled if requested,
jobs claimed ahead given back unused once per attempt),
``cancel_requested``, the backend's clock (``current_time``) and ``release_unseen_claims``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from ...backends.base import Backend, Claim, EnqueuableJob, ErrorDetails
from ...job import Job
from ...status import ErrorType, JobStatus
from .base import ALPHA, BETA, ConformanceBase

_EXECUTOR = ALPHA
_FAILURE = ErrorDetails("payment_declined", "card refused")


def _enqueue(backend: Backend, *, at: datetime | None = None, max_attempts: int = 5) -> int:
    return backend.enqueue(EnqueuableJob(_EXECUTOR, None, None, max_attempts, at or timezone.now()))


def _near(moment: datetime | None, reference: datetime, within: float = 5.0) -> bool:
    return moment is not None and abs((moment - reference).total_seconds()) < within


class WorkerConformance(ConformanceBase):
    """Workers, rescue and the clock; adoptable alone with ``ConformanceBase``."""

    def test_heartbeats_and_live_workers(self, backend: Backend) -> None:
        backend.record_heartbeat("w-1", executors=[BETA, ALPHA], concurrency=4)
        [worker] = backend.live_workers()
        time.sleep(0.01)
        backend.record_heartbeat("w-1", executors=[BETA, ALPHA], concurrency=4, running=[3, 1])
        [again] = backend.live_workers()
        assert (again.worker_id, again.concurrency) == ("w-1", 4)
        assert sorted(again.executors) == [ALPHA, BETA]
        assert sorted(again.running) == [1, 3]
        assert again.started_at == worker.started_at
        assert again.heartbeat_at > worker.heartbeat_at
        self.assert_recent(again.heartbeat_at)
        time.sleep(0.01)
        backend.record_heartbeat("w-2", executors=[ALPHA], concurrency=1)
        assert [w.worker_id for w in backend.live_workers()] == ["w-2", "w-1"]
        backend.remove_worker("w-1")
        backend.remove_worker("never-existed")
        assert [w.worker_id for w in backend.live_workers()] == ["w-2"]

    def test_rescue_orphaned_jobs(self, backend: Backend) -> None:
        alive, dead, ghost, last = (self.enqueue(backend, data={"n": n}) for n in range(4))
        backend.update_job(self._with_max_attempts(backend.get_job(last), 1))
        backend.record_heartbeat("dead", executors=[ALPHA], concurrency=1)
        self.claim_id(backend, alive, worker="alive")
        self.claim_id(backend, dead, worker="dead")
        self.claim_id(backend, ghost, worker="never-beat")
        self.claim_id(backend, last, worker="dead")
        time.sleep(0.6)
        backend.record_heartbeat("alive", executors=[ALPHA], concurrency=1)
        assert sorted(backend.rescue_orphaned_jobs(timedelta(seconds=0.4))) == [dead, ghost, last]
        assert backend.get_job(alive).status == JobStatus.EXECUTING
        for job_id in (dead, ghost):
            job = backend.get_job(job_id)
            assert (job.status, job.attempt) == (JobStatus.RETRYABLE, 1)
            assert job.scheduled_at <= timezone.now(), "a rescued job is due again"
            assert [(e.attempt, e.error_type) for e in job.errors] == [(1, "orphaned")]
        discarded = backend.get_job(last)
        assert discarded.status == JobStatus.DISCARDED
        assert [e.error_type for e in discarded.errors] == ["orphaned"]
        assert backend.rescue_orphaned_jobs(timedelta(seconds=0.4)) == []

    def test_rescue_gives_jobs_claimed_ahead_back_unused_once_per_attempt(
        self, backend: Backend
    ) -> None:
        ahead, started, cancelled, only = (self.enqueue(backend, data={"n": n}) for n in range(4))
        backend.update_job(self._with_max_attempts(backend.get_job(only), 1))
        backend.record_heartbeat("dead", executors=[ALPHA], concurrency=1)
        for job_id in (ahead, started, cancelled, only):
            self.claim_id(backend, job_id, worker="dead")
        backend.record_claimed_ahead("dead", [ahead, started, cancelled, only])
        backend.record_claimed_ahead("dead", [ahead, cancelled, only])  # ``started`` began
        backend.cancel_job(cancelled, "stop")
        time.sleep(0.6)
        rescued = backend.rescue_orphaned_jobs(timedelta(seconds=0.4))
        assert sorted(rescued) == sorted([ahead, started, cancelled, only])
        for job_id, status in ((ahead, JobStatus.SCHEDULED), (only, JobStatus.SCHEDULED)):
            job = backend.get_job(job_id)
            assert (job.status, job.attempt) == (status, 0), "its attempt was never used"
            assert job.scheduled_at <= timezone.now()
            assert [(e.attempt, e.error_type) for e in job.errors] == [(1, ErrorType.ORPHANED)]
            assert "claimed ahead by worker dead" in job.errors[0].message
        assert (backend.get_job(started).status, backend.get_job(started).attempt) == (
            JobStatus.RETRYABLE,
            1,
        )
        assert backend.get_job(cancelled).status == JobStatus.CANCELLED
        # Claimed ahead again and orphaned again at the same attempt: this time it counts (the
        # job may have started after the list was written, and killed its worker).
        backend.record_heartbeat("dead-2", executors=[ALPHA], concurrency=1)
        for job_id in (ahead, started, only):  # the order they are due in
            self.claim_id(backend, job_id, worker="dead-2")
        backend.record_claimed_ahead("dead-2", [only])
        time.sleep(0.6)
        assert sorted(backend.rescue_orphaned_jobs(timedelta(seconds=0.4))) == [
            ahead,
            started,
            only,
        ]
        job = backend.get_job(only)
        assert (job.status, job.attempt) == (JobStatus.DISCARDED, 1)
        assert [e.error_type for e in job.errors] == [ErrorType.ORPHANED] * 2

    @staticmethod
    def _with_max_attempts(job: Job, max_attempts: int) -> Job:
        job.max_attempts = max_attempts
        return job

    def test_rescue_of_a_job_with_a_cancel_request_cancels_it(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.claim_id(backend, job_id, worker="never-beat")
        backend.cancel_job(job_id, "stop")
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == [job_id]
        job = backend.get_job(job_id)
        assert job.status == JobStatus.CANCELLED
        assert [e.error_type for e in job.errors] == ["cancelled"]

    def test_rescue_of_many_orphans_at_once(self, backend: Backend) -> None:
        # More orphans than a small batch, from two dead workers, at various attempts.
        plain = [self.enqueue(backend, data={"n": n}) for n in range(30)]
        last = [self.enqueue(backend, data={"n": n}, max_attempts=1) for n in range(30, 35)]
        cancelled = self.enqueue(backend, data={"n": 35})
        for index, job_id in enumerate([*plain, *last, cancelled]):
            self.claim_id(backend, job_id, worker=f"dead-{index % 2}")
        backend.cancel_job(cancelled, "stop it")
        alive = self.claim_id(backend, self.enqueue(backend, data={"n": 99}), worker="alive")
        backend.record_heartbeat("alive", executors=[ALPHA], concurrency=1)
        rescued = backend.rescue_orphaned_jobs(timedelta(seconds=30))
        assert sorted(rescued) == sorted([*plain, *last, cancelled])
        for job_id in plain:
            job = backend.get_job(job_id)
            assert job.status == JobStatus.RETRYABLE and job.scheduled_at <= timezone.now()
            assert [(e.attempt, e.error_type) for e in job.errors] == [(1, ErrorType.ORPHANED)]
            assert f"worker dead-{plain.index(job_id) % 2} stopped" in job.errors[0].message
        for job_id in last:
            assert backend.get_job(job_id).status == JobStatus.DISCARDED
        stopped = backend.get_job(cancelled)
        assert stopped.status == JobStatus.CANCELLED
        assert [(e.error_type, e.message) for e in stopped.errors] == [
            (ErrorType.CANCELLED, "stop it")
        ]
        assert backend.get_job(alive.id).status == JobStatus.EXECUTING
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == []

    def test_final_attempt_with_lowered_max_attempts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, max_attempts=5)
        self.fail_once(backend, job_id)
        self.fail_once(backend, job_id)
        waiting = backend.get_job(job_id)
        waiting.max_attempts = 1  # lowered below the attempts already made
        backend.update_job(waiting)
        running = self.claim_id(backend, job_id, worker="vanished-worker")
        assert (running.attempt, running.max_attempts) == (3, 1)
        assert running.is_last_attempt, "attempt 3 of max 1 is past the last attempt"
        # The backend's own retry-or-discard decision (rescue) must use >= too.
        assert backend.rescue_orphaned_jobs(timedelta(seconds=60)) == [job_id]
        rescued = backend.get_job(job_id)
        assert rescued.status == JobStatus.DISCARDED
        assert rescued.errors[-1].error_type == ErrorType.ORPHANED

    def test_cancel_requested_lists_only_requested_jobs(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(3)]
        backend.claim_jobs("w", {ALPHA: 3}, 3)
        backend.cancel_job(ids[0], "a")
        backend.cancel_job(ids[2], "c")
        assert backend.cancel_requested(ids) == {ids[0], ids[2]}
        assert backend.cancel_requested([ids[1]]) == set()
        assert backend.cancel_requested([]) == set()

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
