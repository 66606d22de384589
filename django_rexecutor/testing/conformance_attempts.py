"""Conformance: what a backend stores for an attempt's result, whatever the attempt produced.

An error value is made storable before any backend sees it (``ErrorDetails``), so every backend
must read back the same text; and a job deleted while it ran is simply not counted by a batch
of completions, so one vanished job cannot fail the batch of the others."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..backends.base import (
    TRUNCATED,
    Backend,
    Claim,
    EnqueuableJob,
    ErrorDetails,
)
from ..job import Job
from ..status import ERROR_TYPE_MAX_LENGTH, JobStatus

_EXECUTOR = "conformance_attempts"


class AttemptsConformance:
    """Mixin of ``BackendConformanceTests``; uses its ``backend`` fixture."""

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

    def delete_behind_the_backend(self, backend: Backend, job_id: int) -> None:
        """Delete a job outside the backend's interface, as an operator's SQL or a data
        migration would (running jobs are never pruned). Override it for your backend."""
        raise NotImplementedError(
            "Override delete_behind_the_backend() to delete a job from your backend's storage."
        )

    def test_complete_jobs_skips_a_job_deleted_while_it_ran(self, backend: Backend) -> None:
        (gone,) = self._running(backend)
        self.delete_behind_the_backend(backend, gone.id)
        (kept,) = self._running(backend)
        assert backend.complete_jobs([Claim.of(gone), Claim.of(kept)]) == 1
        assert backend.get_job(kept.id).status == JobStatus.COMPLETE
