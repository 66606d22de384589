"""``ObservabilityConformance``: what operators' tools read and what ``execute`` reports —
``report_progress`` (fenced, stored with the job, read back by queries), ``job_counts`` and
``oldest_ready_at``."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ...backends.base import Backend, Claim
from ...query import IdEquals
from ...status import JobStatus
from .base import ALPHA, BETA, MISSING_ID, ConformanceBase


class ObservabilityConformance(ConformanceBase):
    """Progress, counts and lag; adoptable alone with ``ConformanceBase``."""

    def test_progress_is_stored_with_the_job_and_read_back(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        assert backend.get_job(job_id).progress is None
        claim = Claim.of(self.claim_id(backend, job_id))
        assert backend.report_progress(claim, 0.25, "page 25 of 100")
        job = backend.get_job(job_id)
        assert (job.progress, job.progress_note) == (0.25, "page 25 of 100")
        self.assert_recent(job.progress_at)
        assert backend.report_progress(claim, 1.0)
        [listed] = backend.query(IdEquals(job_id))
        assert (listed.progress, listed.progress_note) == (1.0, "")

    def test_progress_is_kept_when_the_attempt_ends(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        claim = Claim.of(self.claim_id(backend, job_id))
        assert backend.report_progress(claim, 0.5, "half")
        assert backend.mark_job_complete(job_id, claim=claim)
        job = backend.get_job(job_id)
        assert (job.status, job.progress, job.progress_note) == (JobStatus.COMPLETE, 0.5, "half")

    def test_progress_of_a_stale_claim_is_refused(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        claim = Claim.of(self.claim_id(backend, job_id))
        assert not backend.report_progress(Claim(job_id, claim.attempt, "someone-else"), 0.1)
        assert not backend.report_progress(Claim(job_id, claim.attempt + 1, claim.worker_id), 0.1)
        assert backend.mark_job_complete(job_id, claim=claim)
        assert not backend.report_progress(claim, 0.9)
        assert not backend.report_progress(Claim(MISSING_ID, 1, "worker-1"), 0.9)
        assert backend.get_job(job_id).progress is None

    def test_job_counts_per_executor_and_status(self, backend: Backend) -> None:
        for _ in range(3):
            self.enqueue(backend)
        self.enqueue(backend, BETA, scheduled_at=timezone.now() + timedelta(hours=1))
        done = self.enqueue(backend, BETA)
        self.finish(backend, done, JobStatus.COMPLETE)
        self.claim(backend)
        counts = backend.job_counts()
        assert dict(counts.counts) == {
            (ALPHA, JobStatus.SCHEDULED.value): 2,
            (ALPHA, JobStatus.EXECUTING.value): 1,
            (BETA, JobStatus.SCHEDULED.value): 1,
            (BETA, JobStatus.COMPLETE.value): 1,
        }
        assert not counts.estimated  # a small table is counted exactly
        assert counts.by_executor()[BETA] == {"complete": 1, "scheduled": 1}

    def test_oldest_ready_at_is_the_oldest_due_job_per_executor(self, backend: Backend) -> None:
        now = timezone.now()
        self.enqueue(backend, scheduled_at=now - timedelta(minutes=5))
        self.enqueue(backend, scheduled_at=now - timedelta(minutes=1))
        self.enqueue(backend, BETA, scheduled_at=now + timedelta(hours=1))  # not due
        oldest = backend.oldest_ready_at()
        assert set(oldest) == {ALPHA}
        assert abs((oldest[ALPHA] - (now - timedelta(minutes=5))).total_seconds()) < 1
        self.claim(backend)  # the oldest one runs now: the next one is the oldest waiting
        again = backend.oldest_ready_at()
        assert abs((again[ALPHA] - (now - timedelta(minutes=1))).total_seconds()) < 1

    def test_finished_since_counts_final_statuses_by_when_they_were_reached(
        self, backend: Backend
    ) -> None:
        before = timezone.now() - timedelta(seconds=1)
        done, failed, cancelled = (self.enqueue(backend, BETA) for _ in range(3))
        self.finish(backend, done, JobStatus.COMPLETE)
        self.finish(backend, failed, JobStatus.DISCARDED)
        self.finish(backend, cancelled, JobStatus.CANCELLED)
        self.enqueue(backend)  # waiting: not counted
        assert backend.finished_since(before) == {
            (BETA, "complete"): 1,
            (BETA, "discarded"): 1,
            (BETA, "cancelled"): 1,
        }
        assert backend.finished_since(timezone.now() + timedelta(minutes=1)) == {}
