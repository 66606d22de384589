"""``ResultConformance``: the results a worker writes — ``mark_job_*`` and ``complete_jobs`` —
fenced by the claim (a stale or duplicate claim changes nothing), a late result after a cancel
request, and what is stored for an attempt's result whatever it produced.

An error value is made storable before any backend sees it (``ErrorDetails``), so every backend
must read back the same text; and a job deleted while it ran is simply not counted by a batch
of completions, so one vanished job cannot fail the batch of the others."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from ...backends.base import TRUNCATED, Backend, Claim, EnqueuableJob, ErrorDetails
from ...exceptions import JobNotFound
from ...job import Job
from ...status import ERROR_TYPE_MAX_LENGTH, ErrorType, JobStatus
from .base import _FAILURE, ALPHA, MISSING_ID, ConformanceBase

_EXECUTOR = "conformance_attempts"


class ResultConformance(ConformanceBase):
    """Results and fencing; adoptable alone with ``ConformanceBase``."""

    def test_mark_job_complete(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        assert backend.mark_job_complete(job.id, claim=Claim.of(job)) is True
        done = backend.get_job(job.id)
        assert done.status == JobStatus.COMPLETE
        assert (done.attempt, done.errors) == (1, [])
        self.assert_recent(done.completed_at)
        assert done.cancelled_at is None and done.discarded_at is None

    def test_mark_job_complete_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_complete(MISSING_ID)

    def test_snooze_after_one_attempt(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        later = timezone.now() + timedelta(minutes=5)
        assert backend.mark_job_snoozed(job.id, later, claim=Claim.of(job)) is True
        snoozed = backend.get_job(job.id)
        assert (snoozed.status, snoozed.attempt, snoozed.errors) == (JobStatus.SCHEDULED, 0, [])
        assert snoozed.scheduled_at == later

    def test_snooze_after_two_attempts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        job = self.claim_id(backend, job_id)
        later = timezone.now() + timedelta(minutes=5)
        assert backend.mark_job_snoozed(job_id, later, claim=Claim.of(job)) is True
        snoozed = backend.get_job(job_id)
        assert (snoozed.status, snoozed.attempt) == (JobStatus.RETRYABLE, 1)
        assert snoozed.scheduled_at == later
        assert len(snoozed.errors) == 1, "a snooze records no error"

    def test_snooze_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_snoozed(MISSING_ID, timezone.now())

    def test_discard_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend, max_attempts=1))
        assert backend.mark_job_discarded(job.id, _FAILURE, claim=Claim.of(job)) is True
        discarded = backend.get_job(job.id)
        assert discarded.status == JobStatus.DISCARDED
        self.assert_recent(discarded.discarded_at)
        [error] = discarded.errors
        assert (error.attempt, error.error_type, error.message, error.traceback) == (
            1,
            "payment_declined",
            "card refused",
            "Traceback: ...",
        )
        self.assert_recent(error.recorded_at)

    def test_discard_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_discarded(MISSING_ID, _FAILURE)

    def test_retryable_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        later = timezone.now() + timedelta(seconds=30)
        assert backend.mark_job_retryable(job.id, later, _FAILURE, claim=Claim.of(job)) is True
        retryable = backend.get_job(job.id)
        assert (retryable.status, retryable.attempt) == (JobStatus.RETRYABLE, 1)
        assert retryable.scheduled_at == later
        assert [(e.attempt, e.error_type) for e in retryable.errors] == [(1, "payment_declined")]
        assert backend.claim_jobs("w", {ALPHA: 1}, 1) == [], "not due before its new time"

    def test_retryable_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_retryable(MISSING_ID, timezone.now(), _FAILURE)

    def test_cancel_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        error = ErrorDetails(ErrorType.CANCELLED, "user deactivated")
        assert backend.mark_job_cancelled(job.id, error, claim=Claim.of(job)) is True
        cancelled = backend.get_job(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        self.assert_recent(cancelled.cancelled_at)
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (1, "cancelled", "user deactivated")
        ]

    def test_cancel_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_cancelled(MISSING_ID, ErrorDetails(ErrorType.CANCELLED, "x"))

    @pytest.mark.parametrize(
        "result", ["complete", "retryable", "discarded", "cancelled", "snoozed"]
    )
    def test_stale_claim_changes_nothing(self, backend: Backend, result: str) -> None:
        job = self.claim_id(backend, self.enqueue(backend), worker="owner")
        for stale in (
            Claim(job.id, job.attempt, "someone-else"),
            Claim(job.id, job.attempt - 1, "owner"),
        ):
            assert self._write(backend, result, stale) is False
        unchanged = backend.get_job(job.id)
        assert (unchanged.status, unchanged.attempt, unchanged.errors) == (
            JobStatus.EXECUTING,
            1,
            [],
        )
        assert unchanged.claimed_by == "owner"
        assert self._write(backend, result, Claim.of(job)) is True
        settled = backend.get_job(job.id)
        # A duplicate of the same result is stale too.
        assert self._write(backend, result, Claim.of(job)) is False
        assert backend.get_job(job.id) == settled

    @staticmethod
    def _write(backend: Backend, result: str, claim: Claim) -> bool:
        soon = timezone.now() + timedelta(minutes=1)
        if result == "complete":
            return backend.mark_job_complete(claim.job_id, claim=claim)
        if result == "retryable":
            return backend.mark_job_retryable(claim.job_id, soon, _FAILURE, claim=claim)
        if result == "discarded":
            return backend.mark_job_discarded(claim.job_id, _FAILURE, claim=claim)
        if result == "cancelled":
            error = ErrorDetails(ErrorType.CANCELLED, "stop")
            return backend.mark_job_cancelled(claim.job_id, error, claim=claim)
        return backend.mark_job_snoozed(claim.job_id, soon, claim=claim)

    @pytest.mark.parametrize("result", ["complete", "retryable", "discarded", "snoozed"])
    def test_results_apply_only_to_an_executing_job(self, backend: Backend, result: str) -> None:
        job_id = self.enqueue(backend)
        waiting = backend.get_job(job_id)
        # No claim given: still refused, because the job is not executing.
        claim = Claim(job_id, 0, "nobody")
        assert self._write(backend, result, claim) is False
        if result == "complete":
            assert backend.mark_job_complete(job_id) is False
        assert backend.get_job(job_id) == waiting

    @pytest.mark.parametrize("result", ["complete", "retryable", "discarded", "snoozed"])
    def test_late_result_after_a_cancel_request_cancels(
        self, backend: Backend, result: str
    ) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        requested = backend.cancel_job(job.id, "no longer needed")
        assert requested.status == JobStatus.EXECUTING
        assert requested.cancel_requested
        assert backend.cancel_requested([job.id, MISSING_ID]) == {job.id}
        assert self._write(backend, result, Claim.of(job)) is True
        cancelled = backend.get_job(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        self.assert_recent(cancelled.cancelled_at)
        assert cancelled.completed_at is None and cancelled.discarded_at is None
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (1, "cancelled", "no longer needed")
        ]

    def test_complete_jobs_in_a_batch(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(4)]
        jobs = backend.claim_jobs("batcher", {ALPHA: 4}, 4)
        assert sorted(self.ids(jobs)) == ids
        backend.cancel_job(ids[1], "stop")
        claims = [Claim.of(j) for j in jobs] + [Claim(ids[0], 1, "stale-worker")]
        assert backend.complete_jobs(claims) == 4
        statuses = [backend.get_job(i).status for i in ids]
        assert statuses == [
            JobStatus.COMPLETE,
            JobStatus.CANCELLED,
            JobStatus.COMPLETE,
            JobStatus.COMPLETE,
        ]
        assert backend.complete_jobs([]) == 0

    @staticmethod
    def _running(backend: Backend, count: int = 1) -> list[Job]:
        for _ in range(count):
            backend.enqueue(
                EnqueuableJob(_EXECUTOR, None, None, max_attempts=3, scheduled_at=timezone.now())
            )
        jobs = backend.claim_jobs("worker-1", {_EXECUTOR: count}, count)
        assert len(jobs) == count, jobs
        return sorted(jobs, key=lambda j: j.id)

    def test_error_values_are_stored_readable_whatever_they_contain(self, backend: Backend) -> None:
        (job,) = self._running(backend)
        error = ErrorDetails(
            "x" * (ERROR_TYPE_MAX_LENGTH + 50),
            "NUL \x00 and a lone surrogate \ud800",
            "Traceback ...\x00",
        )
        assert backend.mark_job_retryable(job.id, timezone.now(), error, claim=Claim.of(job))
        (stored,) = backend.get_job(job.id).errors
        assert len(stored.error_type) == ERROR_TYPE_MAX_LENGTH
        assert stored.error_type == "x" * (ERROR_TYPE_MAX_LENGTH - len(TRUNCATED)) + TRUNCATED
        assert stored.message == "NUL \\x00 and a lone surrogate \\ud800"
        assert stored.traceback == "Traceback ...\\x00"

    def test_an_error_value_that_is_not_text_is_stored_as_its_str(self, backend: Backend) -> None:
        class Broken:
            def __str__(self) -> str:
                raise RuntimeError("no str for you")

        (job,) = self._running(backend)
        reason: Any = Broken()
        assert backend.mark_job_discarded(job.id, ErrorDetails(42, reason), claim=Claim.of(job))  # type: ignore[arg-type]
        (stored,) = backend.get_job(job.id).errors
        assert (stored.error_type, stored.message) == ("42", "<Broken object: str() failed>")

    def test_a_cancel_reason_is_stored_readable_whatever_it_contains(
        self, backend: Backend
    ) -> None:
        reason = "operator said \x00 stop"
        waiting = backend.enqueue(
            EnqueuableJob(_EXECUTOR, None, None, max_attempts=3, scheduled_at=timezone.now())
        )
        backend.cancel_job(waiting, reason)
        (running,) = self._running(backend)
        (bulk,) = self._running(backend)
        backend.cancel_job(running.id, reason)
        backend.cancel_jobs([bulk.id], reason)
        # The running ones end cancelled with the request's reason when their worker writes.
        for job in (running, bulk):
            assert backend.mark_job_complete(job.id, claim=Claim.of(job))
        for job_id in (waiting, running.id, bulk.id):
            stored = backend.get_job(job_id)
            assert stored.status == JobStatus.CANCELLED
            assert [e.message for e in stored.errors] == ["operator said \\x00 stop"]

    def test_complete_jobs_skips_a_job_deleted_while_it_ran(self, backend: Backend) -> None:
        (gone,) = self._running(backend)
        self.delete_behind_the_backend(backend, gone.id)
        (kept,) = self._running(backend)
        assert backend.complete_jobs([Claim.of(gone), Claim.of(kept)]) == 1
        assert backend.get_job(kept.id).status == JobStatus.COMPLETE
