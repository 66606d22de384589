"""Claiming ahead of free slots (``worker.prefetch``), in-process against the in-memory backend:
the buffer grows with a backlog and empties with it, jobs start from it in priority order
within each executor's room, and a buffered job never spends its attempt unless it starts —
a graceful stop, a cancel request or a silent heartbeat gives it back at once; rescue, if the
worker dies (the dead-process case is in tests/test_worker_prefetch_processes.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_rexecutor import InMemoryBackend, Job, JobStatus
from django_rexecutor.exceptions import ConfigurationError
from django_rexecutor.limits import Limits
from django_rexecutor.worker import Worker
from django_rexecutor.worker.prefetch import Prefetch
from tests.test_worker_parts_worker import Running
from tests.worker_parts_support import GATE, Gate, Looping, Quick, enqueue, wait_for


@pytest.fixture(autouse=True)
def _gate() -> Iterator[None]:
    GATE.clear()
    yield
    GATE.set()


class CountingClaims(InMemoryBackend):
    """Records each claim's limit and how many jobs it returned, and each ahead list."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[int, int]] = []
        self.recorded: list[list[int]] = []

    def claim_jobs(
        self,
        worker_id: str,
        capacity: Mapping[str, int],
        limit: int,
        *,
        limits: Mapping[str, Limits] | None = None,
    ) -> list[Job]:
        jobs = super().claim_jobs(worker_id, capacity, limit, limits=limits)
        self.claims.append((limit, len(jobs)))
        return jobs

    def record_claimed_ahead(self, worker_id: str, job_ids: Any) -> None:
        self.recorded.append(sorted(job_ids))
        super().record_claimed_ahead(worker_id, job_ids)


def worker(backend: InMemoryBackend, names: list[str], **options: Any) -> Worker:
    return Worker(names, backend=backend, cron=False, pruner=False, handle_signals=False, **options)


def job(job_id: int, executor: str = "a", priority: int = 0) -> Job:
    now = timezone.now()
    return Job(
        id=job_id,
        status=JobStatus.EXECUTING,
        executor=executor,
        data=None,
        metadata=None,
        attempt=1,
        max_attempts=3,
        priority=priority,
        tags=[],
        errors=[],
        inserted_at=now,
        scheduled_at=now,
    )


# -- the buffer alone -----------------------------------------------------------------------
def test_the_buffer_grows_with_a_backlog_up_to_its_limit_and_empties_with_it() -> None:
    ahead = Prefetch(40, step=10)
    assert ahead.room() == 0, "nothing ahead before a backlog is seen"
    sizes = []
    for _ in range(4):
        ahead.backlog_seen()
        sizes.append(ahead.target)
    assert sizes == [10, 20, 40, 40]
    ahead.add(job(n) for n in range(21))
    assert ahead.room() == 0, "refilled only once down to half"
    ahead.take({"a": 1}, 1)
    assert ahead.room() == 20
    ahead.backlog_gone()
    assert ahead.room() == 0
    assert Prefetch(0, step=10).room() == 0


def test_jobs_leave_the_buffer_in_priority_order_within_each_executors_room() -> None:
    ahead = Prefetch(10, step=10)
    ahead.add([job(1, "a", 5), job(2, "b", 1), job(3, "a", 0), job(4, "b", 2)])
    assert [j.id for j in ahead.take({"a": 5, "b": 1}, 3)] == [3, 2, 1]
    assert ahead.job_ids() == {4}, "b had room for one: its second job keeps its place"
    assert [j.id for j in ahead.remove([4, 99])] == [4] and not ahead
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        Prefetch(-1, step=1)


def test_a_negative_prefetch_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="prefetch must be at least 0"):
        worker(InMemoryBackend(), [Quick.name], prefetch=-1)


# -- the worker -----------------------------------------------------------------------------
def test_a_backlog_is_claimed_in_growing_batches_beyond_the_free_slots() -> None:
    backend = CountingClaims()
    ids = [enqueue(backend, Quick) for _ in range(300)]
    w = worker(backend, [Quick.name], burst=True, concurrency=2, prefetch=16)
    assert w.run() == 0
    assert {backend.get_job(i).status for i in ids} == {JobStatus.COMPLETE}
    assert {backend.get_job(i).attempt for i in ids} == {1}, "every job ran once"
    limits = [limit for limit, _ in backend.claims]
    assert max(limits) == 2 + 16, limits
    assert limits[0] == 2, "the first claim knows of no backlog"
    assert len(backend.claims) < 300 / 4, "one claim serves many jobs"
    assert w.stats == {"complete": 300}


def test_no_job_is_claimed_ahead_with_prefetch_zero() -> None:
    backend = CountingClaims()
    for _ in range(20):
        enqueue(backend, Quick)
    assert worker(backend, [Quick.name], burst=True, concurrency=2, prefetch=0).run() == 0
    assert {limit for limit, _ in backend.claims} <= {1, 2}
    assert backend.recorded == []


def test_an_executor_with_max_concurrency_is_never_claimed_ahead() -> None:
    backend = CountingClaims()
    gated = [enqueue(backend, Gate) for _ in range(6)]  # max_concurrency 2
    w = worker(backend, [Gate.name], concurrency=4, prefetch=8)
    running = Running(w)
    wait_for(lambda: len(w.running_jobs) == 2)
    assert len(w.claims.ahead) == 0
    statuses = [backend.get_job(i).status for i in gated]
    assert statuses.count(JobStatus.EXECUTING) == 2
    w.stop()
    GATE.set()
    running.join()


def test_a_graceful_stop_gives_every_buffered_job_back_with_its_attempt_unused() -> None:
    backend = CountingClaims()
    ids = [enqueue(backend, Looping, {"seconds": 0.3}) for _ in range(30)]
    w = worker(backend, [Looping.name], concurrency=2, prefetch=6, shutdown_timeout=5)
    # Grow the buffer quickly: the first claims find slots waiting.
    running = Running(w)
    wait_for(lambda: len(w.claims.ahead) > 0, timeout=10)
    buffered = w.claims.ahead.job_ids()
    assert backend.recorded and set(backend.recorded[-1]) >= buffered
    w.stop()
    running.join(timeout=10)
    assert running.code == 0
    jobs = [backend.get_job(i) for i in ids]
    for j in jobs:
        if j.id in buffered:
            assert (j.status, j.attempt) == (JobStatus.SCHEDULED, 0), j
    assert all(j.attempt <= 1 for j in jobs)
    assert all(j.status in (JobStatus.COMPLETE, JobStatus.SCHEDULED) for j in jobs)
    assert backend.live_workers() == []


def test_a_cancel_request_for_a_buffered_job_cancels_it_without_running_it() -> None:
    backend = CountingClaims()
    ids = [enqueue(backend, Looping, {"seconds": 0.4}) for _ in range(12)]
    w = worker(backend, [Looping.name], concurrency=1, prefetch=4, shutdown_timeout=5)
    running = Running(w)
    wait_for(lambda: len(w.claims.ahead) > 0, timeout=10)
    victim = max(w.claims.ahead.job_ids())
    backend.cancel_job(victim, "not needed")
    wait_for(lambda: backend.get_job(victim).status == JobStatus.CANCELLED, timeout=5)
    assert victim not in w.claims.ahead.job_ids()
    w.stop()
    running.join(timeout=10)
    assert victim in ids


def test_a_silent_heartbeat_gives_the_buffer_back_instead_of_starting_it() -> None:
    backend = CountingClaims()
    for _ in range(12):
        enqueue(backend, Looping, {"seconds": 0.05})
    w = worker(backend, [Looping.name], concurrency=1, prefetch=4)
    w.claims.ahead.add(backend.claim_jobs(w.worker_id, {Looping.name: 2}, 2))
    w.attempts.start_threads()
    try:
        jobs = w.claims.ahead.job_ids()
        assert w.claims.start_ahead(silent_for=31) == 0, "nothing starts"
        assert not w.claims.ahead and not w.running_jobs
        for i in jobs:
            assert (backend.get_job(i).status, backend.get_job(i).attempt) == (
                JobStatus.SCHEDULED,
                0,
            )
    finally:
        w.attempts.stop_threads()


def test_rescue_gives_a_dead_workers_buffered_jobs_back_unused() -> None:
    backend = CountingClaims()
    ids = [enqueue(backend, Looping, {"seconds": 5}) for _ in range(10)]
    w = worker(backend, [Looping.name], concurrency=1, prefetch=4)
    # Run the claim steps by hand and then "die": no graceful stop, no release.
    w.attempts.start_threads()
    try:
        backend.record_heartbeat(w.worker_id, executors=[Looping.name], concurrency=1)
        for _ in range(3):
            w.claims.claim(silent_for=0)
        buffered = w.claims.ahead.job_ids()
        [running_id] = w.running_jobs
        assert buffered and running_id not in buffered
        rescued = backend.rescue_orphaned_jobs(timedelta(seconds=-1))
        assert set(rescued) == buffered | {running_id}
        for i in buffered:
            assert (backend.get_job(i).status, backend.get_job(i).attempt) == (
                JobStatus.SCHEDULED,
                0,
            )
        assert backend.get_job(running_id).attempt == 1, "the started job used its attempt"
        assert running_id in ids
    finally:
        w.attempts.settle_unfinished()
        w.attempts.stop_threads()
