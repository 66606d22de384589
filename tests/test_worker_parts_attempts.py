"""The table of running attempts (``worker.attempts.RunningAttempts``) on its own, in-process
against the in-memory backend: capacity and per-executor limits, starting attempts on the pool
and the event loop, time-outs, cancel requests with and without a grace, the shutdown's
interrupts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_rexecutor import InMemoryBackend, JobStatus
from django_rexecutor.worker.attempts import CANCEL_POLL_INTERVAL, RunningAttempts
from django_rexecutor.worker.execution import DONE_RESULT, INTERRUPTED_RESULT
from tests.worker_parts_support import (
    EXECUTORS,
    GATE,
    Gate,
    Looping,
    Quick,
    QuickAsync,
    SleepingAsync,
    Unbuildable,
    claim,
    enqueue,
    wait_for,
)


class CountingBackend(InMemoryBackend):
    """Counts the cancel-request look-ups."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel_lookups = 0

    def cancel_requested(self, job_ids: Any) -> set[int]:
        self.cancel_lookups += 1
        return super().cancel_requested(job_ids)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def wake() -> threading.Event:
    return threading.Event()


@pytest.fixture(autouse=True)
def _gate() -> Iterator[None]:
    """``Gate`` jobs run until the test ends."""
    GATE.clear()
    yield
    GATE.set()


@pytest.fixture
def table(backend: CountingBackend, wake: threading.Event) -> Iterator[RunningAttempts]:
    attempts = RunningAttempts(backend, EXECUTORS, 3, cancel_grace=0.3, wake=wake)
    attempts.start_threads()
    yield attempts
    attempts.settle_unfinished()
    attempts.stop_threads()


def start(table: RunningAttempts, backend: InMemoryBackend, executor: Any, **data: Any) -> int:
    job_id = enqueue(backend, executor, data)
    [job] = claim(backend, executor)
    table.start(job)
    return job_id


def reap_until(table: RunningAttempts, count: int, timeout: float = 5.0) -> list[Any]:
    ended: list[Any] = []
    wait_for(lambda: bool(ended.extend(table.reap())) or len(ended) >= count, timeout)
    return ended


def test_capacity_counts_free_slots_and_each_executors_limit(table, backend) -> None:
    assert table.capacity() == ({name: 3 for name in EXECUTORS} | {Gate.name: 2}, 3)
    start(table, backend, Gate)
    assert table.capacity() == ({name: 2 for name in EXECUTORS} | {Gate.name: 1}, 2)
    start(table, backend, Gate)
    # Gate is at its max_concurrency of 2; the last slot is anyone else's.
    capacity, free = table.capacity()
    assert (free, Gate.name in capacity, capacity[Quick.name]) == (1, False, 1)
    start(table, backend, Looping, seconds=10)
    assert table.capacity() == ({}, 0)
    assert len(table) == 3 and len(table.running_ids()) == 3


def test_an_ended_attempt_frees_its_slot_and_wakes_the_main_loop(table, backend, wake) -> None:
    job_id = start(table, backend, Quick)
    assert wake.wait(5)
    [(attempt, result)] = reap_until(table, 1)
    assert (attempt.job.id, result) == (job_id, DONE_RESULT)
    assert len(table) == 0 and table.running_ids() == []
    assert table.reap() == []  # reported once


def test_async_attempts_run_on_the_event_loop(table, backend) -> None:
    job_id = start(table, backend, QuickAsync)
    [(attempt, result)] = reap_until(table, 1)
    assert (attempt.job.id, attempt.is_async, result) == (job_id, True, DONE_RESULT)


def test_an_executor_that_cannot_be_built_fails_its_job_not_the_table(table, backend) -> None:
    start(table, backend, Unbuildable)
    [(_, result)] = reap_until(table, 1)
    assert result.kind == "error" and result.error is not None
    assert result.error.message == "RuntimeError: no instance for you"
    assert table.capacity()[1] == 3


@pytest.mark.parametrize("executor", [Looping, SleepingAsync], ids=["sync", "async"])
def test_a_time_out_is_recorded_at_the_deadline_and_the_attempt_interrupted(
    table, backend, executor
) -> None:
    job_id = start(table, backend, executor, seconds=10, timeout=0.2)
    assert table.enforce_deadlines() == []
    deadline = table.next_deadline()
    assert deadline is not None and deadline - time.monotonic() <= 0.2
    time.sleep(0.25)
    [(attempt, result)] = table.enforce_deadlines()
    assert attempt.job.id == job_id and attempt.settled
    assert result.error is not None and result.error.error_type == "timeout"
    assert "0.2s" in result.error.message
    # No longer shown as running; its slot is free once its thread has really stopped.
    assert table.running_ids() == [] and table.next_deadline() is None
    wait_for(lambda: not table.reap() and len(table) == 0)


def test_a_cancel_request_interrupts_a_sync_attempt_after_the_grace(table, backend) -> None:
    job_id = start(table, backend, Gate)
    backend.cancel_job(job_id, "changed my mind")
    table.poll_cancels()
    [attempt] = [a for a in table._active if a.job.id == job_id]
    assert attempt.job.cancel_requested and attempt.cancel_at is not None
    time.sleep(0.1)
    table.enforce_deadlines()
    assert table.reap() == []  # still within its grace of 0.3 s
    wait_for(lambda: time.monotonic() >= attempt.cancel_at)  # type: ignore[operator]
    table.enforce_deadlines()
    [(ended, result)] = reap_until(table, 1)
    assert (ended.job.id, result) == (job_id, INTERRUPTED_RESULT)


def test_a_cooperative_attempt_ends_by_itself_within_the_grace(table, backend) -> None:
    job_id = start(table, backend, Gate, cooperative=True)
    backend.cancel_job(job_id, "changed my mind")
    table.poll_cancels()
    [(_, result)] = reap_until(table, 1, timeout=0.25)
    assert (result.kind, result.reason) == ("cancel", "stopped by itself")


def test_without_a_grace_and_for_async_attempts_a_cancel_interrupts_at_once(backend, wake) -> None:
    table = RunningAttempts(backend, EXECUTORS, 3, cancel_grace=0, wake=wake)
    table.start_threads()
    try:
        sync_id = start(table, backend, Gate)
        async_id = start(table, backend, SleepingAsync)
        for job_id in (sync_id, async_id):
            backend.cancel_job(job_id, "")
        table.poll_cancels()
        ended = reap_until(table, 2, timeout=1.0)
        assert {(a.job.id, r) for a, r in ended} == {
            (sync_id, INTERRUPTED_RESULT),
            (async_id, INTERRUPTED_RESULT),
        }
    finally:
        table.stop_threads()


def test_cancel_requests_are_looked_up_at_most_every_interval_unless_announced(
    table, backend
) -> None:
    start(table, backend, Gate)
    table.poll_cancels()
    table.poll_cancels()
    assert backend.cancel_lookups == 1
    table.check_cancels_now()  # a cancel notification arrived
    table.poll_cancels()
    assert backend.cancel_lookups == 2
    time.sleep(CANCEL_POLL_INTERVAL)
    table.poll_cancels()
    assert backend.cancel_lookups == 3


def test_settle_unfinished_interrupts_every_running_attempt(table, backend) -> None:
    ids = {start(table, backend, Gate), start(table, backend, SleepingAsync)}
    unfinished = table.settle_unfinished()
    assert {a.job.id for a in unfinished} == ids and table.running_ids() == []
    # Their results are the worker's to decide (a release): ending reports nothing.
    wait_for(lambda: not table.reap() and len(table) == 0)
    assert {backend.get_job(i).status for i in ids} == {JobStatus.EXECUTING}
