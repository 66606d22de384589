"""``NotificationConformance``: ``subscribe_ready_jobs`` and the ``wait_for_jobs`` under it —
only its executor's jobs, woken at once by an enqueue, due jobs in priority order and a future
one when due, never one job to two subscribers.

Whether an enqueue must wake a waiter by itself is the switch ``enqueue_wakes_waiters``
(default: ``backend.supports_notifications``); otherwise polling is the guarantee."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from django.utils import timezone

from ...backends.base import Backend
from ...job import Job
from ...status import JobStatus
from .base import ALPHA, BETA, PROMPTLY, ConformanceBase


class NotificationConformance(ConformanceBase):
    """Subscriptions and wake-ups; adoptable alone with ``ConformanceBase``."""

    def collect(
        self,
        backend: Backend,
        executor: str,
        count: int,
        *,
        timeout: float,
        worker: str = "subscriber",
    ) -> list[tuple[Job, float]]:
        """Up to ``count`` jobs from ``subscribe_ready_jobs`` within ``timeout`` seconds, each
        with the monotonic time it arrived."""

        async def gather() -> list[tuple[Job, float]]:
            received: list[tuple[Job, float]] = []
            stream = backend.subscribe_ready_jobs(
                executor, worker_id=worker, poll_interval=self.poll_interval
            )
            try:
                async with asyncio.timeout(timeout):
                    async for job in stream:
                        received.append((job, time.monotonic()))
                        if len(received) >= count:
                            break
            except TimeoutError:
                pass
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            return received

        return self.run_async(gather)

    def test_subscribe_yields_only_its_executors_jobs(self, backend: Backend) -> None:
        other = self.enqueue(backend, BETA)
        mine = self.enqueue(backend, ALPHA)
        received = self.collect(backend, ALPHA, 2, timeout=0.6)
        assert [job.id for job, _ in received] == [mine]
        assert received[0][0].executor == ALPHA
        assert backend.get_job(other).status == JobStatus.SCHEDULED

    def test_enqueue_wakes_a_waiting_subscriber_at_once(self, backend: Backend) -> None:
        wakes = self.enqueue_wakes_waiters
        if wakes is None:
            wakes = backend.supports_notifications
        # A backend that promises wake-ups is polled only every 10 s, so only the wake-up can
        # deliver the job in time; otherwise polling is the guarantee and must be quick.
        poll_interval = 10.0 if wakes else self.poll_interval

        async def scenario() -> tuple[Job, float]:
            loop = asyncio.get_running_loop()
            stream = backend.subscribe_ready_jobs(
                ALPHA, worker_id="waiting", poll_interval=poll_interval
            )
            first = asyncio.ensure_future(anext(stream))
            try:
                await asyncio.sleep(0.4)  # the subscriber is now waiting: nothing was ready
                assert not first.done()
                started = time.monotonic()
                await loop.run_in_executor(None, self.enqueue, backend, ALPHA)
                async with asyncio.timeout(PROMPTLY + 1):
                    job = await first
                return job, time.monotonic() - started
            finally:
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
                await stream.aclose()  # type: ignore[attr-defined]

        job, elapsed = self.run_async(scenario)
        assert job.executor == ALPHA
        assert job.status == JobStatus.EXECUTING
        assert elapsed < PROMPTLY, f"the subscriber woke {elapsed:.2f}s after the enqueue"

    def test_due_jobs_stream_in_priority_order_and_a_future_job_when_due(
        self, backend: Backend
    ) -> None:
        now = timezone.now()
        low = self.enqueue(backend, priority=2, scheduled_at=now - timedelta(minutes=3))
        high = self.enqueue(backend, priority=0, scheduled_at=now - timedelta(minutes=1))
        middle = self.enqueue(backend, priority=1, scheduled_at=now - timedelta(minutes=2))
        due_at = timezone.now() + timedelta(seconds=0.7)
        future = self.enqueue(backend, priority=0, scheduled_at=due_at)
        received = self.collect(backend, ALPHA, 4, timeout=5)
        assert [job.id for job, _ in received] == [high, middle, low, future]
        future_job, arrived = received[3]
        lateness = (timezone.now() - due_at).total_seconds() - (time.monotonic() - arrived)
        assert future_job.attempted_at is not None and future_job.attempted_at >= due_at
        assert lateness < PROMPTLY, f"the due job arrived {lateness:.2f}s after it was due"

    def test_two_subscribers_never_receive_the_same_job(self, backend: Backend) -> None:
        expected = {self.enqueue(backend, data={"n": n}) for n in range(12)}

        async def race() -> dict[str, list[int]]:
            got: dict[str, list[int]] = {"sub-a": [], "sub-b": []}
            done = asyncio.Event()

            async def consume(worker: str) -> None:
                stream = backend.subscribe_ready_jobs(
                    ALPHA, worker_id=worker, poll_interval=self.poll_interval
                )
                try:
                    async for job in stream:
                        got[worker].append(job.id)
                        if sum(map(len, got.values())) >= len(expected):
                            done.set()
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]

            tasks = [asyncio.ensure_future(consume(w)) for w in got]
            try:
                async with asyncio.timeout(10):
                    await done.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            return got

        got = self.run_async(race)
        everything = got["sub-a"] + got["sub-b"]
        assert len(everything) == len(set(everything)), f"a job was delivered twice: {got}"
        assert set(everything) == expected
        for worker, job_ids in got.items():
            for job_id in job_ids:
                assert backend.get_job(job_id).claimed_by == worker
