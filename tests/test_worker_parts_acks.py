"""The result queue (``worker.acks.ResultQueue``) on its own, in-process against the in-memory
backend: completions acknowledged in one fenced batch, a batch partly refused (read back to
tell complete, cancelled and stale apart), a backend that refuses a batch or loses the
database, the report of each result (stats, log line, ``job_finished``), and the same from
the completion writer's thread (``worker.completions``)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.db import OperationalError

from django_rexecutor import InMemoryBackend, Job, JobStatus
from django_rexecutor.backends.base import Claim
from django_rexecutor.signals import job_finished
from django_rexecutor.worker.acks import ResultQueue
from django_rexecutor.worker.attempts import Attempt
from django_rexecutor.worker.clock import WorkerClock
from django_rexecutor.worker.execution import DONE_RESULT, result_of_exception
from tests.worker_parts_support import Quick, claim, enqueue, wait_for


class RecordingBackend(InMemoryBackend):
    """Records each batch of completions; ``refuse`` makes batches fail for good,
    ``down`` makes every write fail as on a lost connection, ``unreadable`` the read-back."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.refuse = False
        self.down = False
        self.unreadable = False

    def complete_jobs(self, claims: Sequence[Claim]) -> int:
        if self.down:
            raise OperationalError("server closed the connection unexpectedly")
        self.batches.append([c.job_id for c in claims])
        if self.refuse:
            raise ValueError("cannot store this batch")
        return super().complete_jobs(claims)

    def mark_job_retryable(self, *args: Any, **kwargs: Any) -> bool:
        if self.down:
            raise OperationalError("server closed the connection unexpectedly")
        return super().mark_job_retryable(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> list[Job]:
        if self.unreadable:
            raise RuntimeError("cannot read")
        return super().query(*args, **kwargs)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def queue(backend: RecordingBackend) -> ResultQueue:
    return ResultQueue(backend, WorkerClock(backend), Counter())


@pytest.fixture
def finished() -> Iterator[list[tuple[int, str]]]:
    seen: list[tuple[int, str]] = []

    def receiver(sender: Any, job: Job, outcome: str, duration: float, **kwargs: Any) -> None:
        seen.append((job.id, outcome))

    job_finished.connect(receiver)
    yield seen
    job_finished.disconnect(receiver)


def running(backend: InMemoryBackend, count: int, **data: Any) -> list[Attempt]:
    """``count`` claimed jobs of ``Quick``, as attempts whose instance ran."""
    for _ in range(count):
        enqueue(backend, Quick, data)
    attempts = [Attempt(job, Quick) for job in claim(backend, Quick, count)]
    for attempt in attempts:
        attempt.instance = Quick()
    return attempts


def test_completions_are_acknowledged_in_one_batch_and_each_reported(
    backend, queue, finished, caplog
) -> None:
    # INFO lines, whatever level an earlier test left the worker's logger at.
    caplog.set_level(logging.INFO, logger="django_rexecutor.worker")
    attempts = running(backend, 3)
    queue.extend((a, DONE_RESULT) for a in attempts)
    assert queue.job_ids() == {a.job.id for a in attempts}
    queue.flush()
    assert backend.batches == [[a.job.id for a in attempts]]
    assert len(queue) == 0 and queue.stats == {"complete": 3}
    assert {backend.get_job(a.job.id).status for a in attempts} == {JobStatus.COMPLETE}
    assert finished == [(a.job.id, "complete") for a in attempts]
    for attempt in attempts:
        assert f"job {attempt.job.id} parts.quick attempt 1/2 complete in " in caplog.text


def test_other_outcomes_are_written_one_by_one_beside_the_batch(backend, queue) -> None:
    done, failed = running(backend, 2)
    queue.add(done, DONE_RESULT)
    queue.add(failed, result_of_exception(ValueError("boom")))
    queue.flush()
    assert backend.batches == [[done.job.id]]
    assert backend.get_job(failed.job.id).status == JobStatus.RETRYABLE
    assert queue.stats == {"complete": 1, "retryable": 1}


def test_a_partly_refused_batch_is_read_back_to_tell_what_each_job_became(
    backend, queue, finished, caplog
) -> None:
    ours, cancelled, released = running(backend, 3)
    backend.cancel_job(cancelled.job.id, "changed my mind")  # the request wins over the result
    backend.release_jobs([Claim.of(released.job)])  # no longer ours
    queue.extend((a, DONE_RESULT) for a in (ours, cancelled, released))
    queue.flush()
    assert len(backend.batches) == 1
    assert queue.stats == {"complete": 1, "cancelled": 1, "stale": 1}
    assert backend.get_job(cancelled.job.id).status == JobStatus.CANCELLED
    assert backend.get_job(released.job.id).status == JobStatus.SCHEDULED
    # A stale result is logged, not announced.
    assert finished == [(ours.job.id, "complete"), (cancelled.job.id, "cancelled")]
    assert f"job {released.job.id} parts.quick attempt 1/2 stale in " in caplog.text


def test_a_read_back_that_fails_reports_the_batch_as_stale(backend, queue, caplog) -> None:
    ours, released = running(backend, 2)
    backend.release_jobs([Claim.of(released.job)])
    backend.unreadable = True
    queue.extend((a, DONE_RESULT) for a in (ours, released))
    queue.flush()
    backend.unreadable = False
    assert backend.get_job(ours.job.id).status == JobStatus.COMPLETE  # the write was done
    assert queue.stats == {"stale": 2} and len(queue) == 0
    assert "Reading back 2 acknowledged job(s) failed (RuntimeError: cannot read)" in caplog.text


def test_a_batch_refused_for_good_is_written_one_by_one(backend, queue, caplog) -> None:
    attempts = running(backend, 2)
    backend.refuse = True
    queue.extend((a, DONE_RESULT) for a in attempts)
    queue.flush()
    assert {backend.get_job(a.job.id).status for a in attempts} == {JobStatus.COMPLETE}
    assert queue.stats == {"complete": 2} and len(queue) == 0
    assert "Acknowledging 2 completed job(s) at once failed (ValueError: cannot store" in (
        caplog.text
    )


def test_results_wait_in_the_queue_through_a_database_outage(backend, queue) -> None:
    done, failed = running(backend, 2)
    queue.add(done, DONE_RESULT)
    queue.add(failed, result_of_exception(ValueError("boom")))
    backend.down = True
    with pytest.raises(OperationalError):
        queue.flush()
    assert len(queue) == 2 and queue.stats == {}
    assert {backend.get_job(a.job.id).status for a in (done, failed)} == {JobStatus.EXECUTING}
    backend.down = False
    queue.flush()
    assert len(queue) == 0 and queue.stats == {"complete": 1, "retryable": 1}


def test_a_done_result_of_a_job_asked_to_cancel_is_not_batched(backend, queue) -> None:
    [attempt] = running(backend, 1)
    backend.cancel_job(attempt.job.id, "")
    attempt.job._cancel_event = threading.Event()  # as the cancel poll tells the job
    attempt.job._cancel_event.set()
    queue.add(attempt, DONE_RESULT)
    queue.flush()
    assert backend.batches == []
    assert backend.get_job(attempt.job.id).status == JobStatus.CANCELLED
    assert queue.stats == {"cancelled": 1}


# -- the completion writer's thread --------------------------------------------------------
def test_the_writer_thread_acknowledges_while_the_caller_goes_on(backend, queue, finished):
    queue.start_writer()
    try:
        attempts = running(backend, 4)
        queue.extend((a, DONE_RESULT) for a in attempts)
        queue.flush()  # hands the batch over
        wait_for(lambda: len(queue) == 0)
        assert backend.batches == [[a.job.id for a in attempts]]
        assert queue.stats == {"complete": 4}
        assert sorted(finished) == sorted((a.job.id, "complete") for a in attempts)
        assert {backend.get_job(a.job.id).status for a in attempts} == {JobStatus.COMPLETE}
    finally:
        queue.stop_writer()


def test_the_writer_keeps_a_batch_through_an_outage_and_the_jobs_stay_ours(backend, queue):
    queue.start_writer()
    try:
        backend.down = True
        attempts = running(backend, 2)
        queue.extend((a, DONE_RESULT) for a in attempts)
        queue.flush()
        time.sleep(0.3)  # a few failed tries
        assert len(queue) == 2 and queue.job_ids() == {a.job.id for a in attempts}
        backend.down = False
        wait_for(lambda: len(queue) == 0)
        assert queue.stats == {"complete": 2}
    finally:
        queue.stop_writer()


def test_stopping_the_writer_in_an_outage_gives_the_batch_back_to_the_queue(backend, queue):
    queue.start_writer()
    backend.down = True
    attempts = running(backend, 2)
    queue.extend((a, DONE_RESULT) for a in attempts)
    queue.flush()
    queue.stop_writer(timeout=2)
    assert len(queue) == 2, "unwritten, and still the queue's"
    backend.down = False
    queue.flush()  # now written by the caller itself
    assert len(queue) == 0 and queue.stats == {"complete": 2}


def test_a_batch_the_writer_cannot_store_is_written_one_by_one_by_the_caller(
    backend, queue, caplog
):
    queue.start_writer()
    try:
        backend.refuse = True
        attempts = running(backend, 2)
        queue.extend((a, DONE_RESULT) for a in attempts)
        queue.flush()
        wait_for(lambda: all(a.batch_refused for a in attempts))
        backend.refuse = False
        queue.flush()
        assert len(queue) == 0 and queue.stats == {"complete": 2}
        assert len(backend.batches) == 1, "not batched again"
        assert "writing them one by one" in caplog.text
    finally:
        queue.stop_writer()
