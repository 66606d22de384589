"""``NotificationConformance``: ``subscribe_ready_jobs`` and the ``wait_for_jobs`` under it —
only its executor's jobs, woken at once by an enqueue, due jobs in priority order and a future
one when due, never one job to two subscribers — and ``backend.notifier()``: an enqueue wakes
its waiters and subscribers, ``wait`` times out when nothing is announced, ``notify`` wakes
waiters and calls subscribers until they unsubscribe.

Whether an enqueue must wake a waiter by itself is the switch ``enqueue_wakes_waiters``
(default: ``backend.supports_notifications``); otherwise polling is the guarantee."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta

from django.utils import timezone

from ...backends.base import Backend
from ...job import Job
from ...notifiers.base import CANCEL_CHANNEL, JOBS_CHANNEL, Notifier
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

    # -- backend.notifier() ------------------------------------------------------------------
    def enqueues_wake(self, backend: Backend) -> bool:
        """Whether an enqueue must wake the waiters of ``backend.notifier()``: always for a
        notifier that hears other processes, otherwise when the backend says so."""
        wakes = self.enqueue_wakes_waiters
        if wakes is None:
            wakes = backend.supports_notifications
        return wakes or backend.notifier().cross_process

    def listening_notifier(self, backend: Backend) -> Notifier:
        notifier = backend.notifier()
        assert notifier.start(wait=5.0), "the notifier listens within 5 s"
        assert notifier.listening and not notifier.stopped
        return notifier

    @staticmethod
    def soon(condition: Callable[[], bool]) -> bool:
        """Whether ``condition`` holds within ``PROMPTLY`` seconds."""
        deadline = time.monotonic() + PROMPTLY
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def timed_wait(
        self, notifier: Notifier, executors: list[str], timeout: float
    ) -> Future[tuple[bool, float]]:
        """Start ``notifier.wait`` on another thread; the future gives (woken, seconds)."""

        def wait() -> tuple[bool, float]:
            started = time.monotonic()
            woken = notifier.wait(executors, timeout)
            return woken, time.monotonic() - started

        pool = self.thread_pool(1)
        try:
            return pool.submit(wait)
        finally:
            pool.shutdown(wait=False)  # the wait goes on; its thread ends with it

    def test_an_enqueue_wakes_the_notifiers_waiters_and_subscribers(self, backend: Backend) -> None:
        notifier = self.listening_notifier(backend)
        promised = self.enqueues_wake(backend)
        heard: list[tuple[str, str]] = []

        def hear(channel: str, payload: str) -> None:
            if channel == JOBS_CHANNEL:
                heard.append((channel, payload))

        notifier.subscribe(hear)
        try:
            # A waiter for another executor is not woken; polling is its guarantee.
            other = self.timed_wait(notifier, [BETA], 0.8)
            waiter = self.timed_wait(notifier, [ALPHA], 10.0 if promised else 0.8)
            time.sleep(0.4)  # both are waiting now
            self.enqueue(backend, ALPHA)
            woken, took = waiter.result(timeout=15)
            if promised:
                assert woken is True, "the enqueue did not wake the waiter"
                assert took < 0.4 + PROMPTLY, f"the waiter woke {took:.2f}s after it started"
                assert self.soon(lambda: (JOBS_CHANNEL, ALPHA) in heard), (
                    "the subscriber heard no enqueue"
                )
            else:
                assert took < 0.8 + PROMPTLY, "wait() returns by its timeout"
            assert other.result(timeout=15)[0] is False, "a waiter of another executor woke"
        finally:
            notifier.unsubscribe(hear)

    def test_a_notifier_wait_times_out_when_nothing_is_announced(self, backend: Backend) -> None:
        notifier = self.listening_notifier(backend)
        woken, took = self.timed_wait(notifier, ["conformance_quiet"], 0.3).result(timeout=15)
        assert woken is False
        assert 0.25 <= took < 0.3 + PROMPTLY, f"wait(timeout=0.3) took {took:.2f}s"

    def test_notify_wakes_the_waiters_and_calls_the_subscribers_until_they_unsubscribe(
        self, backend: Backend
    ) -> None:
        notifier = self.listening_notifier(backend)
        heard: list[tuple[str, str]] = []

        def hear(channel: str, payload: str) -> None:
            if (channel, payload) in ((JOBS_CHANNEL, "conformance_told"), (CANCEL_CHANNEL, "42")):
                heard.append((channel, payload))

        notifier.subscribe(hear)
        try:
            waiter = self.timed_wait(notifier, ["conformance_told"], 10.0)
            time.sleep(0.4)
            notifier.notify(JOBS_CHANNEL, "conformance_told")
            woken, took = waiter.result(timeout=15)
            assert woken is True and took < 0.4 + PROMPTLY, (woken, took)
            notifier.notify(CANCEL_CHANNEL, "42")
            # Subscribers may be called from the notifier's own thread, a moment later.
            assert self.soon(lambda: len(heard) >= 2)
            assert heard == [(JOBS_CHANNEL, "conformance_told"), (CANCEL_CHANNEL, "42")]
        finally:
            notifier.unsubscribe(hear)
        notifier.notify(JOBS_CHANNEL, "conformance_told")
        time.sleep(0.2)
        assert len(heard) == 2, "an unsubscribed callback was called"
        notifier.unsubscribe(hear)  # unsubscribing twice is harmless
