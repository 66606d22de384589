"""``ConformanceBase``: what every part of the conformance suite stands on.

It holds the hooks a backend's test class implements (``make_backend``,
``delete_behind_the_backend``, optionally ``release_thread_resources``), the ``backend``
fixture, the switches (``poll_interval``, ``enqueue_wakes_waiters``) and the helpers the parts
share (``enqueue``, ``claim_id``, ``finish``…). It holds no test: each part of the contract is a
mixin built on it (``EnqueueConformance``, ``ClaimConformance``…), and a backend adopts them
one by one, or all at once through ``BackendConformanceTests``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import pytest
from django.utils import timezone

from ...backends.base import Backend, Claim, EnqueuableJob, ErrorDetails
from ...job import Job, JobId
from ...status import JobStatus
from ...uniqueness import UniquenessCriteria

T = TypeVar("T")

#: Executor names used by the suite; backends store names, no executor class is needed.
ALPHA = "conformance_alpha"
BETA = "conformance_beta"
#: An id no test ever creates.
MISSING_ID = 987_654_321
#: How long a test waits for something that should happen "at once".
PROMPTLY = 1.5

#: The error a failing attempt records in the suite's helpers and tests.
_FAILURE = ErrorDetails("payment_declined", "card refused", "Traceback: ...")


def _close_django_connections() -> None:
    """Threads opened by the suite must not leave database connections behind (PostgreSQL
    refuses to drop a test database that still has sessions)."""
    from django.db import connections

    connections.close_all()


class _CleanThreadPool(ThreadPoolExecutor):
    """The event loop's default executor: releases each thread's resources after every call,
    because ``sync_to_async(thread_sensitive=False)`` runs backend calls on these threads."""

    def __init__(self, cleanup: Callable[[], None], max_workers: int = 8) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="conformance")
        self._cleanup = cleanup

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        cleanup = self._cleanup

        def call() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                cleanup()

        return super().submit(call)


class ConformanceBase:
    """Hooks, fixture and helpers of every conformance mixin; a subclass named ``Test…``
    implements ``make_backend`` and ``delete_behind_the_backend``."""

    #: Poll interval given to ``subscribe_ready_jobs`` where polling may be the guarantee.
    poll_interval: float = 0.05
    #: Whether an enqueue wakes a waiting subscriber by itself (so the wake-up test polls only
    #: every few seconds and proves it). ``None``: ask ``backend.supports_notifications``.
    enqueue_wakes_waiters: bool | None = None
    #: Whether ``try_lock`` lets one caller at a time hold a name. A store that runs one writer
    #: at a time may hand the lock to every caller instead (Django's backend on SQLite does);
    #: its test class sets this to ``False``, and the lock tests then check everything else.
    try_lock_excludes: bool = True

    # -- hooks for subclasses ---------------------------------------------------------------
    def make_backend(self) -> Backend:
        """Return a fresh, empty backend for one test."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_backend() returning the Backend to test."
        )

    def delete_behind_the_backend(self, backend: Backend, job_id: int) -> None:
        """Delete a job outside the backend's interface, as an operator's SQL or a data
        migration would (running jobs are never pruned). Override it for your backend."""
        raise NotImplementedError(
            "Override delete_behind_the_backend() to delete a job from your backend's storage."
        )

    def release_thread_resources(self) -> None:
        """Called at the end of every call the suite makes from another thread; closes Django
        database connections by default."""
        _close_django_connections()

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        backend = self.make_backend()
        yield backend
        close = getattr(backend, "close", None)
        if callable(close):
            close()

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def job(
        executor: str = ALPHA,
        *,
        data: Any = None,
        metadata: Any = None,
        max_attempts: int = 5,
        scheduled_at: datetime | None = None,
        tags: tuple[str, ...] | list[str] = (),
        priority: int = 0,
        unique: UniquenessCriteria | None = None,
    ) -> EnqueuableJob:
        return EnqueuableJob(
            executor=executor,
            data=data,
            metadata=metadata,
            max_attempts=max_attempts,
            scheduled_at=scheduled_at or timezone.now(),
            tags=tuple(tags),
            priority=priority,
            uniqueness=unique,
        )

    def enqueue(self, backend: Backend, executor: str = ALPHA, **options: Any) -> JobId:
        return backend.enqueue(self.job(executor, **options))

    @staticmethod
    def claim(backend: Backend, executor: str = ALPHA, worker: str = "worker-1") -> Job:
        """Claim the one ready job of ``executor`` the test expects."""
        jobs = backend.claim_jobs(worker, {executor: 1}, 1)
        assert len(jobs) == 1, f"expected one ready {executor} job to claim, got {jobs}"
        return jobs[0]

    def claim_id(self, backend: Backend, job_id: int, worker: str = "worker-1") -> Job:
        job = self.claim(backend, backend.get_job(job_id).executor, worker)
        assert job.id == job_id, f"claimed job {job.id}, expected {job_id}"
        return job

    def fail_once(self, backend: Backend, job_id: int, worker: str = "worker-1") -> Job:
        """Run one failing attempt: claim, then retryable and due now."""
        job = self.claim_id(backend, job_id, worker)
        assert backend.mark_job_retryable(job_id, timezone.now(), _FAILURE, claim=Claim.of(job)), (
            "the claimed job must accept its result"
        )
        return backend.get_job(job_id)

    def finish(self, backend: Backend, job_id: int, status: JobStatus) -> Job:
        """Bring a waiting job to a terminal ``status`` the way a worker would."""
        if status == JobStatus.CANCELLED:
            backend.cancel_job(job_id, "finished by test")
            return backend.get_job(job_id)
        claim = Claim.of(self.claim_id(backend, job_id))
        if status == JobStatus.COMPLETE:
            assert backend.mark_job_complete(job_id, claim=claim)
        elif status == JobStatus.DISCARDED:
            assert backend.mark_job_discarded(job_id, _FAILURE, claim=claim)
        else:  # pragma: no cover - a mistake in the test itself
            raise ValueError(status)
        return backend.get_job(job_id)

    @staticmethod
    def ids(jobs: list[Job]) -> list[int]:
        return [j.id for j in jobs]

    @staticmethod
    def assert_recent(moment: datetime | None, *, within: float = 10.0) -> None:
        assert moment is not None
        assert abs((timezone.now() - moment).total_seconds()) < within, moment

    def run_async(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine in a fresh event loop whose worker threads clean up after
        themselves (the async parts of the contract, e.g. ``subscribe_ready_jobs``)."""

        async def main() -> T:
            asyncio.get_running_loop().set_default_executor(
                _CleanThreadPool(self.release_thread_resources)
            )
            return await make()

        return asyncio.run(main())

    def thread_pool(self, max_workers: int = 8) -> ThreadPoolExecutor:
        """A pool of threads that release their resources after every call; use it in a
        ``with`` block."""
        return _CleanThreadPool(self.release_thread_resources, max_workers)

    def in_thread(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on another thread (another database connection) and return its value."""
        with _CleanThreadPool(self.release_thread_resources) as pool:
            return pool.submit(fn).result(timeout=30)
