"""``Worker`` itself, in-process against the in-memory backend: the life cycle (start-up retry,
graceful stop releasing what still runs, a failure that still releases), burst mode, the claim
round trip (paused while the heartbeat is silent, a failed claim given back) and what
``describe()`` reports."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from django_rexecutor import InMemoryBackend, Job, JobStatus
from django_rexecutor.worker import Worker
from django_rexecutor.worker.acks import ResultQueue
from django_rexecutor.worker.attempts import RunningAttempts
from django_rexecutor.worker.claims import Claimer
from django_rexecutor.worker.clock import WorkerClock
from django_rexecutor.worker.wakeups import Wakeups
from tests.worker_parts_support import (
    EXECUTORS,
    GATE,
    Gate,
    Quick,
    QuickAsync,
    enqueue,
    wait_for,
)

NAMES = [Quick.name, QuickAsync.name, Gate.name]


@pytest.fixture(autouse=True)
def _gate() -> Iterator[None]:
    GATE.clear()
    yield
    GATE.set()


def worker_for(backend: InMemoryBackend, **options: Any) -> Worker:
    return Worker(NAMES, backend=backend, cron=False, pruner=False, handle_signals=False, **options)


class Running:
    """``worker.run()`` in a thread."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.code = self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            self.error = exc

    def join(self, timeout: float = 10) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"


def test_a_graceful_stop_releases_the_jobs_still_running(caplog) -> None:
    backend = InMemoryBackend()
    stuck = enqueue(backend, Gate)
    worker = worker_for(backend, shutdown_timeout=0.2)
    running = Running(worker)
    wait_for(lambda: worker.running_jobs == [stuck])
    assert [w.worker_id for w in backend.live_workers()] == [worker.worker_id]
    started = time.monotonic()
    worker.stop()
    running.join()
    assert running.code == 0 and time.monotonic() - started < 2
    job = backend.get_job(stuck)
    # Back in the queue, its attempt given back, no error recorded.
    assert (job.status, job.attempt, job.errors) == (JobStatus.SCHEDULED, 0, [])
    assert worker.stats == {"released": 1}
    assert backend.live_workers() == []
    assert f"Released 1 unfinished job(s) back to the queue: {stuck}" in caplog.text


def test_a_job_that_ends_within_the_shutdown_timeout_is_recorded() -> None:
    backend = InMemoryBackend()
    job_id = enqueue(backend, Gate)
    worker = worker_for(backend, shutdown_timeout=5)
    running = Running(worker)
    wait_for(lambda: worker.running_jobs == [job_id])
    worker.stop()
    time.sleep(0.2)
    assert running.thread.is_alive()  # waiting for the job
    GATE.set()
    running.join()
    assert running.code == 0
    assert backend.get_job(job_id).status == JobStatus.COMPLETE
    assert worker.stats == {"complete": 1}


def test_a_burst_runs_every_ready_job_and_leaves_future_ones() -> None:
    backend = InMemoryBackend()
    ready = [enqueue(backend, Quick) for _ in range(5)] + [enqueue(backend, QuickAsync)]
    failing = enqueue(backend, Quick, {"outcome": "error"}, max_attempts=1)
    later = enqueue(backend, Quick, scheduled_at=timezone.now() + timedelta(hours=1))
    worker = worker_for(backend, burst=True, concurrency=2)
    assert worker.run() == 0
    assert {backend.get_job(j).status for j in ready} == {JobStatus.COMPLETE}
    assert backend.get_job(failing).status == JobStatus.DISCARDED
    assert backend.get_job(later).status == JobStatus.SCHEDULED
    assert worker.stats == {"complete": 6, "discarded": 1}
    assert backend.live_workers() == []


def test_a_burst_runs_a_retry_that_falls_due_while_jobs_still_run() -> None:
    backend = InMemoryBackend()
    retried = enqueue(backend, Quick, scheduled_at=timezone.now() + timedelta(seconds=0.3))
    busy = enqueue(backend, Gate)
    threading.Timer(0.6, GATE.set).start()  # keeps the burst busy past the retry's time
    assert worker_for(backend, burst=True).run() == 0
    assert {backend.get_job(j).status for j in (retried, busy)} == {JobStatus.COMPLETE}


class FlakyStart(InMemoryBackend):
    """The database is unreachable for the first ``failures`` heartbeats."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def record_heartbeat(self, worker_id: str, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("could not connect to server")
        super().record_heartbeat(worker_id, **kwargs)


def test_the_worker_waits_for_the_database_at_start_up(caplog) -> None:
    backend = FlakyStart(failures=2)
    job_id = enqueue(backend, Quick)
    assert worker_for(backend, burst=True).run() == 0
    assert backend.get_job(job_id).status == JobStatus.COMPLETE
    assert "Database unavailable (could not connect to server); retrying in 0.1s" in caplog.text
    assert "retrying in 0.2s" in caplog.text


class BrokenCancelLookup(InMemoryBackend):
    def cancel_requested(self, job_ids: Any) -> set[int]:
        raise RuntimeError("a bug in the backend")


def test_a_worker_that_fails_still_releases_its_jobs_and_raises() -> None:
    backend = BrokenCancelLookup()
    job_id = enqueue(backend, Gate)
    worker = worker_for(backend)
    with pytest.raises(RuntimeError, match="a bug in the backend"):
        worker.run()
    job = backend.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.SCHEDULED, 0)
    assert backend.live_workers() == []


class FailsOneClaim(InMemoryBackend):
    """The first claim commits, then fails as a row that cannot be loaded would."""

    failed = False

    def claim_jobs(self, worker_id: str, capacity: Mapping[str, int], limit: int) -> list[Job]:
        jobs = super().claim_jobs(worker_id, capacity, limit)
        if jobs and not self.failed:
            self.failed = True
            raise ValueError("cannot load this row")
        return jobs


def test_a_claim_that_failed_after_committing_is_given_back_before_the_next(caplog) -> None:
    backend = FailsOneClaim()
    job_id = enqueue(backend, Quick, max_attempts=1)
    assert worker_for(backend, burst=True).run() == 0
    job = backend.get_job(job_id)
    assert (job.status, job.attempt, job.errors) == (JobStatus.COMPLETE, 1, [])
    assert "Claiming jobs failed" in caplog.text
    assert f"Gave back 1 job(s) claimed in a round trip whose reply was lost: {job_id}" in (
        caplog.text
    )


def test_nothing_is_claimed_while_the_heartbeat_is_silent_too_long() -> None:
    backend = InMemoryBackend()
    job_id = enqueue(backend, Quick)
    wake = threading.Event()
    attempts = RunningAttempts(backend, EXECUTORS, 2, cancel_grace=0, wake=wake)
    clock = WorkerClock(backend)
    wakeups = Wakeups(backend, NAMES, clock, poll_interval=1, wake=wake, on_cancel=lambda: None)
    results = ResultQueue(backend, clock, Counter())
    claims = Claimer(backend, "me", attempts, results, wakeups, rescue_after=timedelta(seconds=30))
    attempts.start_threads()
    try:
        assert claims.claim(silent_for=31) == (0, 0)
        assert backend.get_job(job_id).status == JobStatus.SCHEDULED
        assert not wakeups.is_hungry
        # Back in time: the job is claimed; a slot is left, so the worker is hungry.
        assert claims.claim(silent_for=1) == (1, 2)
        assert backend.get_job(job_id).status == JobStatus.EXECUTING
        assert wakeups.is_hungry
    finally:
        attempts.stop_threads()


def test_describe_names_the_store_and_the_settings_in_force() -> None:
    info = worker_for(InMemoryBackend(), concurrency=3, burst=True).describe()
    assert info["database"] == "memory" and info["backend"] == "InMemoryBackend"
    assert (info["concurrency"], info["burst"], info["notifications"]) == (3, True, False)
    assert info["executors"] == sorted(NAMES)
