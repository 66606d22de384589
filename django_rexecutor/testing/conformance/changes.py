"""``ChangeConformance``: what an operator changes — ``update_job``, ``rerun_job``,
``cancel_job`` (a running job only gets a request) — the transitions each refuses
(``InvalidTransition``), ``JobNotFound`` for missing ids in every operation, and the
``executor=``-scoped forms refusing other executors' jobs; and the bulk forms ``rerun_jobs`` and
``cancel_jobs`` (mixed statuses, repeated and missing ids, requests for running jobs)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from ...backends.base import Backend, Claim, SkipReason
from ...exceptions import EncodeDecodeError, InvalidTransition, JobNotFound
from ...job import Job
from ...status import JobStatus
from .base import _FAILURE, ALPHA, BETA, MISSING_ID, ConformanceBase


class ChangeConformance(ConformanceBase):
    """Updates, reruns and cancels; adoptable alone with ``ConformanceBase``."""

    def test_update_job(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, data={"a": 1}, tags=["x"])
        job = backend.get_job(job_id)
        later = timezone.now() + timedelta(days=1)
        job.data, job.metadata, job.tags = {"a": 2}, {"trace": "t"}, ["y", "z"]
        job.max_attempts, job.priority, job.scheduled_at = 7, 3, later
        job.status, job.attempt, job.executor = JobStatus.COMPLETE, 4, BETA  # ignored
        updated = backend.update_job(job)
        stored = backend.get_job(job_id)
        for seen in (updated, stored):
            assert (seen.data, seen.metadata, seen.tags) == ({"a": 2}, {"trace": "t"}, ["y", "z"])
            assert (seen.max_attempts, seen.priority, seen.scheduled_at) == (7, 3, later)
            assert (seen.status, seen.attempt, seen.executor) == (JobStatus.SCHEDULED, 0, ALPHA)

    def test_update_of_a_missing_job(self, backend: Backend) -> None:
        job = backend.get_job(self.enqueue(backend))
        job.id = MISSING_ID
        with pytest.raises(JobNotFound):
            backend.update_job(job)

    @pytest.mark.parametrize("status", [JobStatus.EXECUTING, JobStatus.COMPLETE])
    def test_update_of_an_executing_or_finished_job_is_an_invalid_transition(
        self, backend: Backend, status: JobStatus
    ) -> None:
        job_id = self.enqueue(backend, data={"v": 1})
        if status == JobStatus.EXECUTING:
            self.claim_id(backend, job_id)
        else:
            self.finish(backend, job_id, status)
        job = backend.get_job(job_id)
        job.data = {"v": 2}
        with pytest.raises(InvalidTransition):
            backend.update_job(job)
        assert backend.get_job(job_id).data == {"v": 1}

    def test_update_rejects_bad_values_and_stores_nothing(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, data={"v": 1})
        job = backend.get_job(job_id)
        job.data = {"when": timezone.now()}
        with pytest.raises(EncodeDecodeError):
            backend.update_job(job)
        job.data, job.max_attempts = {"v": 2}, 0
        with pytest.raises(ValueError):
            backend.update_job(job)
        stored = backend.get_job(job_id)
        assert (stored.data, stored.max_attempts) == ({"v": 1}, 5)

    def test_rerun_after_one_attempt(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, max_attempts=1, scheduled_at=timezone.now())
        self.finish(backend, job_id, JobStatus.DISCARDED)
        rerun = backend.rerun_job(job_id)
        job = backend.get_job(job_id)
        for seen in (rerun, job):
            assert (seen.status, seen.attempt, seen.max_attempts) == (JobStatus.SCHEDULED, 1, 2)
            assert seen.discarded_at is None
        assert [e.error_type for e in job.errors] == ["payment_declined"], "history is kept"
        self.assert_recent(job.scheduled_at, within=5)
        assert self.claim(backend).attempt == 2

    def test_rerun_after_two_attempts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, max_attempts=2)
        self.fail_once(backend, job_id)
        self.finish(backend, job_id, JobStatus.COMPLETE)
        job = backend.rerun_job(job_id)
        assert (job.status, job.attempt, job.max_attempts) == (JobStatus.RETRYABLE, 2, 3)
        assert job.completed_at is None
        assert len(job.errors) == 1
        assert self.claim(backend).attempt == 3

    def test_rerun_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.rerun_job(MISSING_ID)

    @pytest.mark.parametrize("status", [JobStatus.EXECUTING, JobStatus.SCHEDULED])
    def test_rerun_of_an_executing_or_scheduled_job_is_an_invalid_transition(
        self, backend: Backend, status: JobStatus
    ) -> None:
        job_id = self.enqueue(backend)
        if status == JobStatus.EXECUTING:
            self.claim_id(backend, job_id)
        before = backend.get_job(job_id)
        with pytest.raises(InvalidTransition):
            backend.rerun_job(job_id)
        assert backend.get_job(job_id) == before

    def test_rerun_of_cancelled_and_retryable_jobs(self, backend: Backend) -> None:
        never_ran = self.enqueue(backend, max_attempts=2, scheduled_at=timezone.now())
        self.finish(backend, never_ran, JobStatus.CANCELLED)
        job = backend.rerun_job(never_ran)
        assert (job.status, job.attempt, job.max_attempts) == (JobStatus.SCHEDULED, 0, 3)
        assert job.cancelled_at is None
        assert [e.error_type for e in job.errors] == ["cancelled"]

        waiting = self.enqueue(backend, BETA)
        failed = self.claim_id(backend, waiting)
        later = timezone.now() + timedelta(hours=1)
        backend.mark_job_retryable(waiting, later, _FAILURE, claim=Claim.of(failed))
        again = backend.rerun_job(waiting)
        assert (again.status, again.attempt, again.max_attempts) == (JobStatus.SCHEDULED, 1, 6)
        assert again.scheduled_at < later, "a rerun is due now"
        self.assert_recent(again.scheduled_at, within=5)

    def test_cancel_a_waiting_job(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        cancelled = backend.cancel_job(job_id, "changed my mind")
        assert cancelled.status == JobStatus.CANCELLED
        self.assert_recent(cancelled.cancelled_at)
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (0, "cancelled", "changed my mind")
        ]
        assert backend.get_job(job_id).status == JobStatus.CANCELLED
        assert backend.claim_jobs("w", {ALPHA: 1}, 1) == []

    def test_cancel_a_retryable_job_records_its_attempt(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        cancelled = backend.cancel_job(job_id, "enough")
        assert cancelled.status == JobStatus.CANCELLED
        assert [(e.attempt, e.error_type) for e in cancelled.errors] == [
            (1, "payment_declined"),
            (1, "cancelled"),
        ]

    def test_cancel_a_running_job_requests_it(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        assert backend.cancel_requested([job.id]) == set()
        backend.cancel_job(job.id, "stop")
        backend.cancel_job(job.id, "stop again")  # asking twice is harmless
        running = backend.get_job(job.id)
        assert running.status == JobStatus.EXECUTING
        assert running.cancel_requested and running.errors == []
        assert backend.cancel_requested([job.id]) == {job.id}

    @pytest.mark.parametrize(
        "status", [JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED]
    )
    def test_cancel_of_a_finished_job_is_an_invalid_transition(
        self, backend: Backend, status: JobStatus
    ) -> None:
        job_id = self.enqueue(backend)
        before = self.finish(backend, job_id, status)
        with pytest.raises(InvalidTransition) as raised:
            backend.cancel_job(job_id, "too late")
        assert str(job_id) in str(raised.value) and status.value in str(raised.value)
        assert backend.get_job(job_id) == before

    @pytest.mark.parametrize(
        "operation",
        [
            "get_job",
            "cancel_job",
            "rerun_job",
            "update_job",
            "mark_job_complete",
            "mark_job_retryable",
            "mark_job_discarded",
            "mark_job_cancelled",
            "mark_job_snoozed",
        ],
    )
    def test_missing_jobs_raise_job_not_found(self, backend: Backend, operation: str) -> None:
        template = backend.get_job(self.enqueue(backend))
        template.id = MISSING_ID
        soon = timezone.now()
        calls: dict[str, Callable[[], object]] = {
            "get_job": lambda: backend.get_job(MISSING_ID),
            "cancel_job": lambda: backend.cancel_job(MISSING_ID, "x"),
            "rerun_job": lambda: backend.rerun_job(MISSING_ID),
            "update_job": lambda: backend.update_job(template),
            "mark_job_complete": lambda: backend.mark_job_complete(
                MISSING_ID, claim=Claim(MISSING_ID, 1, "w")
            ),
            "mark_job_retryable": lambda: backend.mark_job_retryable(
                MISSING_ID, soon, _FAILURE, claim=Claim(MISSING_ID, 1, "w")
            ),
            "mark_job_discarded": lambda: backend.mark_job_discarded(
                MISSING_ID, _FAILURE, claim=Claim(MISSING_ID, 1, "w")
            ),
            "mark_job_cancelled": lambda: backend.mark_job_cancelled(
                MISSING_ID, _FAILURE, claim=Claim(MISSING_ID, 1, "w")
            ),
            "mark_job_snoozed": lambda: backend.mark_job_snoozed(
                MISSING_ID, soon, claim=Claim(MISSING_ID, 1, "w")
            ),
        }
        with pytest.raises(JobNotFound) as raised:
            calls[operation]()
        assert raised.value.job_id == MISSING_ID
        assert str(MISSING_ID) in str(raised.value)

    @pytest.mark.parametrize("operation", ["get_job", "cancel_job", "rerun_job", "update_job"])
    def test_executor_scoped_operations_refuse_other_executors_jobs(
        self, backend: Backend, operation: str
    ) -> None:
        job_id = self.enqueue(backend, ALPHA)
        if operation == "rerun_job":
            self.finish(backend, job_id, JobStatus.COMPLETE)
        before = backend.get_job(job_id)
        changed = backend.get_job(job_id)
        changed.data = {"hijacked": True}
        calls: dict[str, Callable[[str], object]] = {
            "get_job": lambda name: backend.get_job(job_id, executor=name),
            "cancel_job": lambda name: backend.cancel_job(job_id, "x", executor=name),
            "rerun_job": lambda name: backend.rerun_job(job_id, executor=name),
            "update_job": lambda name: backend.update_job(changed, executor=name),
        }
        with pytest.raises(JobNotFound):
            calls[operation](BETA)
        assert backend.get_job(job_id) == before
        result = calls[operation](ALPHA)
        assert isinstance(result, Job) and result.id == job_id

    # -- rerun_jobs and cancel_jobs: the bulk forms ------------------------------------------
    def _one_job_in_each_status(self, backend: Backend) -> dict[JobStatus, int]:
        """One job per status, reached through the backend's own operations (each brought to
        its status before the next is enqueued, so the claims pick the intended job)."""
        ids: dict[JobStatus, int] = {}
        for status in (JobStatus.COMPLETE, JobStatus.DISCARDED, JobStatus.CANCELLED):
            ids[status] = self.enqueue(backend)
            self.finish(backend, ids[status], status)
        ids[JobStatus.EXECUTING] = self.enqueue(backend)
        self.claim_id(backend, ids[JobStatus.EXECUTING])
        ids[JobStatus.RETRYABLE] = self.enqueue(backend)
        self.fail_once(backend, ids[JobStatus.RETRYABLE])
        ids[JobStatus.SCHEDULED] = self.enqueue(backend)
        return ids

    def test_rerun_jobs_reruns_finished_and_retryable_jobs_and_says_why_it_skipped_others(
        self, backend: Backend
    ) -> None:
        ids = self._one_job_in_each_status(backend)
        before = {status: backend.get_job(job_id) for status, job_id in ids.items()}
        rerun = [JobStatus.DISCARDED, JobStatus.COMPLETE, JobStatus.RETRYABLE, JobStatus.CANCELLED]
        request = [ids[JobStatus.SCHEDULED], ids[rerun[0]], MISSING_ID, ids[rerun[1]]]
        request += [ids[JobStatus.EXECUTING], ids[rerun[2]], ids[rerun[3]], ids[rerun[1]]]
        result = backend.rerun_jobs(request)
        assert result.done == tuple(ids[s] for s in rerun), "in request order, a repeat once"
        assert dict(result.skipped) == {
            ids[JobStatus.SCHEDULED]: SkipReason.WAITING,
            MISSING_ID: SkipReason.NOT_FOUND,
            ids[JobStatus.EXECUTING]: SkipReason.RUNNING,
        }
        assert result.requested == ()
        for status in rerun:
            job, old = backend.get_job(ids[status]), before[status]
            # None of them used more than one attempt: each is scheduled again, due now.
            assert (job.status, job.attempt) == (JobStatus.SCHEDULED, old.attempt), status
            assert job.max_attempts == old.max_attempts + 1, status
            assert job.finished_at is None and not job.cancel_requested, status
            assert job.errors == old.errors, "history is kept"
            self.assert_recent(job.scheduled_at, within=5)
        for status in (JobStatus.SCHEDULED, JobStatus.EXECUTING):
            assert backend.get_job(ids[status]) == before[status], status

    def test_cancel_jobs_cancels_waiting_jobs_requests_running_ones_and_skips_finished_ones(
        self, backend: Backend
    ) -> None:
        ids = self._one_job_in_each_status(backend)
        before = {status: backend.get_job(job_id) for status, job_id in ids.items()}
        finished = [JobStatus.COMPLETE, JobStatus.DISCARDED, JobStatus.CANCELLED]
        request = [ids[finished[0]], ids[JobStatus.EXECUTING], ids[JobStatus.SCHEDULED]]
        request += [MISSING_ID, ids[JobStatus.RETRYABLE], ids[finished[1]]]
        request += [ids[JobStatus.SCHEDULED], ids[finished[2]]]
        result = backend.cancel_jobs(request, "operator said so")
        running = ids[JobStatus.EXECUTING]
        waiting = [JobStatus.SCHEDULED, JobStatus.RETRYABLE]
        assert result.done == (running, *(ids[s] for s in waiting)), "in request order, once"
        assert result.requested == (running,), "the running job only gets a request"
        assert dict(result.skipped) == {
            **{ids[s]: SkipReason.FINISHED for s in finished},
            MISSING_ID: SkipReason.NOT_FOUND,
        }
        for status in waiting:
            job = backend.get_job(ids[status])
            assert job.status == JobStatus.CANCELLED, status
            self.assert_recent(job.cancelled_at)
            assert job.errors[:-1] == before[status].errors, "history is kept"
            last = job.errors[-1]
            assert (last.attempt, last.error_type, last.message) == (
                before[status].attempt,
                "cancelled",
                "operator said so",
            )
        for status in finished:
            assert backend.get_job(ids[status]) == before[status], status
        requested = backend.get_job(running)
        assert (requested.status, requested.errors) == (JobStatus.EXECUTING, [])
        assert requested.cancel_requested
        assert backend.cancel_requested([running]) == {running}
        # Its attempt ends: the request wins over the result.
        assert backend.mark_job_complete(running, claim=Claim.of(requested))
        cancelled = backend.get_job(running)
        assert cancelled.status == JobStatus.CANCELLED
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (1, "cancelled", "operator said so")
        ]

    def test_bulk_operations_scoped_to_an_executor_find_no_other_executors_jobs(
        self, backend: Backend
    ) -> None:
        finished = self.enqueue(backend, ALPHA)
        self.finish(backend, finished, JobStatus.COMPLETE)
        waiting = self.enqueue(backend, ALPHA)
        before = {job_id: backend.get_job(job_id) for job_id in (finished, waiting)}
        assert dict(backend.rerun_jobs([finished], executor=BETA).skipped) == {
            finished: SkipReason.NOT_FOUND
        }
        assert dict(backend.cancel_jobs([waiting], "x", executor=BETA).skipped) == {
            waiting: SkipReason.NOT_FOUND
        }
        assert {job_id: backend.get_job(job_id) for job_id in before} == before
        assert backend.rerun_jobs([finished], executor=ALPHA).done == (finished,)
        assert backend.cancel_jobs([waiting], "x", executor=ALPHA).done == (waiting,)

    def test_bulk_operations_of_no_ids_change_nothing(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        before = backend.get_job(job_id)
        for result in (backend.rerun_jobs([]), backend.cancel_jobs([], "x")):
            assert (result.done, dict(result.skipped), result.requested) == ((), {}, ())
        assert backend.get_job(job_id) == before
