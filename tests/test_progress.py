"""``job.report_progress`` from inside ``execute``: throttled writes that never lose the last
value, sync and async jobs, validation, what queries return, and the admin's bar."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_rexecutor import InMemoryBackend, JobStatus
from django_rexecutor.backends.values import Claim
from django_rexecutor.job import Job
from django_rexecutor.progress import ProgressReporter, check_progress
from django_rexecutor.testing import drain_jobs
from tests.observe_support import BadProgress, Progressing, ProgressingAsync
from tests.worker_support import InProcessWorker, status_of, wait_until


class CountingBackend(InMemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.progress_writes: list[tuple[float, str]] = []

    def report_progress(self, claim: Claim, progress: float, note: str = "") -> bool:
        self.progress_writes.append((progress, note))
        return super().report_progress(claim, progress, note)


def test_reports_within_a_second_are_written_once_and_the_last_is_flushed_at_the_end() -> None:
    backend = CountingBackend()
    job_id = Progressing.enqueue({"steps": 50}, backend=backend)
    drain_jobs(backend=backend)
    # The first report is written at once; the 49 within its second wait, and the newest of
    # them is written when the attempt ends.
    assert backend.progress_writes == [(0.02, "step 1 of 50"), (1.0, "step 50 of 50")]
    job = backend.get_job(job_id)
    assert (job.status, job.progress, job.progress_note) == (
        JobStatus.COMPLETE,
        1.0,
        "step 50 of 50",
    )


def test_a_report_after_the_interval_writes_the_newest_value(monkeypatch) -> None:
    backend = CountingBackend()
    job_id = Progressing.enqueue({"steps": 1}, backend=backend)
    [job] = backend.claim_jobs("w", {Progressing.name: 1}, 1)
    clock = [100.0]
    monkeypatch.setattr("django_rexecutor.progress.time.monotonic", lambda: clock[0])
    reporter = ProgressReporter(backend, job)
    reporter.report(job, 0.1)
    reporter.report(job, 0.2)  # within the second: pending
    clock[0] += 1.5
    reporter.report(job, 0.3)  # the second is over: written, the pending one superseded
    reporter.flush()  # nothing left
    assert [p for p, _ in backend.progress_writes] == [0.1, 0.3]
    assert backend.get_job(job_id).progress == 0.3


def test_async_jobs_report_with_areport_progress() -> None:
    backend = CountingBackend()
    job_id = ProgressingAsync.enqueue(backend=backend)
    drain_jobs(backend=backend)
    assert backend.get_job(job_id).progress == 0.75
    assert backend.progress_writes[-1] == (0.75, "step 3")


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "half", None, True])
def test_a_progress_outside_0_to_1_is_refused_with_a_clear_error(value) -> None:
    with pytest.raises(ValueError, match=r"report_progress\(\) takes a number from 0.0 to 1.0"):
        check_progress(value)
    if value != value:  # NaN is no JSON: it cannot travel in a job's data
        return
    backend = InMemoryBackend()
    job_id = BadProgress.enqueue(value, backend=backend)
    drain_jobs(backend=backend)
    job = backend.get_job(job_id)
    assert job.status == JobStatus.DISCARDED
    assert "takes a number from 0.0 to 1.0" in job.errors[0].message


def test_outside_a_worker_report_progress_only_updates_the_value() -> None:
    job = Job(1, JobStatus.EXECUTING, "x", None, None, 1, 1, 0, [], [], None, None)  # type: ignore[arg-type]
    job.report_progress(0.5, note="halfway")
    assert (job.progress, job.progress_note) == (0.5, "halfway")


@pytest.mark.django_db(transaction=True)
def test_a_running_job_shows_its_progress_in_queries_and_the_admin(admin_client) -> None:
    job_id = Progressing.enqueue({"steps": 4, "hold": 30})
    with InProcessWorker(Progressing.name) as worker:
        worker.wait_for_output("started")
        # The first report is written at once (the rest wait for the end of the attempt).
        wait_until(lambda: Progressing.get_job(job_id).progress is not None, 15, worker)
        job = Progressing.get_job(job_id)
        assert (job.status, job.progress, job.progress_note) == (
            JobStatus.EXECUTING,
            0.25,
            "step 1 of 4",
        )
        [listed] = Progressing.query_jobs(limit=10)
        assert listed.progress == 0.25
        page = admin_client.get(reverse("admin:django_rexecutor_jobrecord_changelist"))
        assert page.status_code == 200
        assert b'class="rx-progress-fill" style="width: 25.0%"' in page.content
        detail = admin_client.get(reverse("admin:django_rexecutor_jobrecord_change", args=[job_id]))
        assert b"step 1 of 4" in detail.content
        assert b"rx-progress-fill" in detail.content
        # A graceful stop interrupts it: the pending value is flushed before it is released.
        worker.worker.shutdown_timeout = 0
        assert worker.stop() == 0, worker.output
    job = Progressing.get_job(job_id)
    assert status_of(job_id) != JobStatus.EXECUTING
    assert job.progress == 1.0 and job.progress_note == "step 4 of 4"
