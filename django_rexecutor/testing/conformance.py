"""``BackendConformanceTests``: the behaviour every backend must show, as a pytest test class.

Subclass it in a test module and implement ``make_backend``::

    class TestMyBackend(BackendConformanceTests):
        def make_backend(self):
            return MyBackend()

A database-backed subclass carries the pytest-django marks it needs; the suite enqueues from
other threads, so it needs committed rows: ``pytestmark = pytest.mark.django_db(transaction=True)``.

The suite holds all 26 backend cases of rexecutor (adapted where our rules are stricter: results
are only written for a job that was claimed first) and one test per rexecutor bug we fix, plus
our own additions (fencing, cancel requests, heartbeats and rescue, claiming). It only talks to
the backend through the ``Backend`` interface, so it fits any storage.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from django.utils import timezone

from ..backends.base import Backend, Claim, EnqueuableJob, ErrorDetails, PruneRule, PruneSpec
from ..exceptions import EncodeDecodeError, InvalidTransition, JobNotFound
from ..job import Job, JobId
from ..query import (
    And,
    DataEquals,
    ExecutorEqual,
    IdEquals,
    IdIn,
    MetadataEquals,
    Not,
    Or,
    Query,
    ScheduledAtAfter,
    ScheduledAtBefore,
    ScheduledAtEqual,
    StatusEqual,
    TagsAllOf,
    TagsOneOf,
)
from ..status import ErrorType, JobStatus
from ..uniqueness import Replace, UniquenessCriteria
from .conformance_attempts import AttemptsConformance
from .conformance_claimrows import ClaimrowsConformance
from .conformance_identity import IdentityConformance
from .conformance_plugins import PluginsConformance
from .conformance_uniq import UniqConformance

T = TypeVar("T")

#: Executor names used by the suite; backends store names, no executor class is needed.
ALPHA = "conformance_alpha"
BETA = "conformance_beta"
#: An id no test ever creates.
MISSING_ID = 987_654_321
#: How long a test waits for something that should happen "at once".
PROMPTLY = 1.5

_FAILURE = ErrorDetails("payment_declined", "card refused", "Traceback: ...")


def _close_django_connections() -> None:
    """Threads opened by the suite must not leave database connections behind (PostgreSQL
    refuses to drop a test database that still has sessions)."""
    from django.db import connections

    connections.close_all()


class _CleanThreadPool(ThreadPoolExecutor):
    """The event loop's default executor: releases each thread's resources after every call,
    because ``sync_to_async(thread_sensitive=False)`` runs backend calls on these threads."""

    def __init__(self, cleanup: Callable[[], None]) -> None:
        super().__init__(max_workers=8, thread_name_prefix="conformance")
        self._cleanup = cleanup

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        cleanup = self._cleanup

        def call() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                cleanup()

        return super().submit(call)


class BackendConformanceTests(
    AttemptsConformance,
    ClaimrowsConformance,
    IdentityConformance,
    PluginsConformance,
    UniqConformance,
):
    """Mixin of backend tests; a subclass named ``Test…`` implements ``make_backend``."""

    #: Poll interval given to ``subscribe_ready_jobs`` where polling may be the guarantee.
    poll_interval: float = 0.05
    #: Whether an enqueue wakes a waiting subscriber by itself (so the wake-up test polls only
    #: every few seconds and proves it). ``None``: ask ``backend.supports_notifications``.
    enqueue_wakes_waiters: bool | None = None

    # -- hooks for subclasses ---------------------------------------------------------------
    def make_backend(self) -> Backend:
        """Return a fresh, empty backend for one test."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_backend() returning the Backend to test."
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

    def in_thread(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on another thread (another database connection) and return its value."""
        with _CleanThreadPool(self.release_thread_resources) as pool:
            return pool.submit(fn).result(timeout=30)

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

    # ==========================================================================================
    # rexecutor's backend cases
    # ==========================================================================================

    # -- subscribe_ready_jobs -----------------------------------------------------------------
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

    # -- enqueue and uniqueness --------------------------------------------------------------
    def test_enqueue_returns_distinct_ids(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(5)]
        assert len(set(ids)) == 5
        assert all(isinstance(i, JobId) and i.inserted for i in ids)
        for n, job_id in enumerate(ids):
            job = backend.get_job(job_id)
            assert (job.data, job.status, job.attempt) == ({"n": n}, JobStatus.SCHEDULED, 0)

    def test_unique_enqueue_matches_an_earlier_plain_job(self, backend: Backend) -> None:
        plain = self.enqueue(backend, data={"n": 1})
        again = self.enqueue(backend, data={"n": 2}, unique=UniquenessCriteria.by_executor())
        assert again == plain and again.inserted is False
        assert self.ids(backend.query(ExecutorEqual(ALPHA))) == [plain]
        assert backend.get_job(plain).data == {"n": 1}

    def test_unique_enqueue_with_non_matching_statuses_inserts(self, backend: Backend) -> None:
        first = self.enqueue(backend)
        self.finish(backend, first, JobStatus.COMPLETE)
        second = self.enqueue(backend, unique=UniquenessCriteria.by_executor())
        assert second.inserted and second != first
        only_retryable = UniquenessCriteria.by_executor().and_statuses([JobStatus.RETRYABLE])
        third = self.enqueue(backend, unique=only_retryable)
        assert third.inserted and third not in (first, second)

    def test_unique_enqueue_with_replace_updates_the_fields(self, backend: Backend) -> None:
        original = self.enqueue(
            backend,
            data={"v": 1},
            metadata={"m": 1},
            priority=5,
            max_attempts=3,
            tags=["keep"],
            scheduled_at=timezone.now() + timedelta(hours=1),
        )
        new_time = timezone.now() + timedelta(hours=2)
        replace = Replace.priority().and_data().and_metadata().and_scheduled_at().and_max_attempts()
        again = self.enqueue(
            backend,
            data={"v": 2},
            metadata={"m": 2},
            priority=1,
            max_attempts=9,
            tags=["ignored"],
            scheduled_at=new_time,
            unique=UniquenessCriteria.by_executor().on_conflict(replace),
        )
        assert again == original and not again.inserted
        job = backend.get_job(original)
        assert (job.data, job.metadata, job.priority, job.max_attempts) == (
            {"v": 2},
            {"m": 2},
            1,
            9,
        )
        assert job.scheduled_at == new_time
        assert job.tags == ["keep"], "tags are not a replaceable field"
        assert len(backend.query(ExecutorEqual(ALPHA))) == 1

    # -- update_job ------------------------------------------------------------------------------
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

    # -- mark_job_complete ---------------------------------------------------------------------
    def test_mark_job_complete(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        assert backend.mark_job_complete(job.id, claim=Claim.of(job)) is True
        done = backend.get_job(job.id)
        assert done.status == JobStatus.COMPLETE
        assert (done.attempt, done.errors) == (1, [])
        self.assert_recent(done.completed_at)
        assert done.cancelled_at is None and done.discarded_at is None

    def test_mark_job_complete_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_complete(MISSING_ID)

    # -- rerun_job -----------------------------------------------------------------------------
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

    # -- mark_job_snoozed ----------------------------------------------------------------------
    def test_snooze_after_one_attempt(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        later = timezone.now() + timedelta(minutes=5)
        assert backend.mark_job_snoozed(job.id, later, claim=Claim.of(job)) is True
        snoozed = backend.get_job(job.id)
        assert (snoozed.status, snoozed.attempt, snoozed.errors) == (JobStatus.SCHEDULED, 0, [])
        assert snoozed.scheduled_at == later

    def test_snooze_after_two_attempts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        job = self.claim_id(backend, job_id)
        later = timezone.now() + timedelta(minutes=5)
        assert backend.mark_job_snoozed(job_id, later, claim=Claim.of(job)) is True
        snoozed = backend.get_job(job_id)
        assert (snoozed.status, snoozed.attempt) == (JobStatus.RETRYABLE, 1)
        assert snoozed.scheduled_at == later
        assert len(snoozed.errors) == 1, "a snooze records no error"

    def test_snooze_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_snoozed(MISSING_ID, timezone.now())

    # -- mark_job_discarded --------------------------------------------------------------------
    def test_discard_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend, max_attempts=1))
        assert backend.mark_job_discarded(job.id, _FAILURE, claim=Claim.of(job)) is True
        discarded = backend.get_job(job.id)
        assert discarded.status == JobStatus.DISCARDED
        self.assert_recent(discarded.discarded_at)
        [error] = discarded.errors
        assert (error.attempt, error.error_type, error.message, error.traceback) == (
            1,
            "payment_declined",
            "card refused",
            "Traceback: ...",
        )
        self.assert_recent(error.recorded_at)

    def test_discard_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_discarded(MISSING_ID, _FAILURE)

    # -- mark_job_retryable --------------------------------------------------------------------
    def test_retryable_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        later = timezone.now() + timedelta(seconds=30)
        assert backend.mark_job_retryable(job.id, later, _FAILURE, claim=Claim.of(job)) is True
        retryable = backend.get_job(job.id)
        assert (retryable.status, retryable.attempt) == (JobStatus.RETRYABLE, 1)
        assert retryable.scheduled_at == later
        assert [(e.attempt, e.error_type) for e in retryable.errors] == [(1, "payment_declined")]
        assert backend.claim_jobs("w", {ALPHA: 1}, 1) == [], "not due before its new time"

    def test_retryable_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_retryable(MISSING_ID, timezone.now(), _FAILURE)

    # -- mark_job_cancelled --------------------------------------------------------------------
    def test_cancel_records_its_error(self, backend: Backend) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        error = ErrorDetails(ErrorType.CANCELLED, "user deactivated")
        assert backend.mark_job_cancelled(job.id, error, claim=Claim.of(job)) is True
        cancelled = backend.get_job(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        self.assert_recent(cancelled.cancelled_at)
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (1, "cancelled", "user deactivated")
        ]

    def test_cancel_of_a_missing_job(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            backend.mark_job_cancelled(MISSING_ID, ErrorDetails(ErrorType.CANCELLED, "x"))

    # -- query ---------------------------------------------------------------------------------
    def test_query_by_id_and_executor(self, backend: Backend) -> None:
        a1 = self.enqueue(backend, ALPHA)
        b1 = self.enqueue(backend, BETA)
        a2 = self.enqueue(backend, ALPHA)
        assert self.ids(backend.query(IdEquals(a1))) == [a1]
        assert self.ids(backend.query(ExecutorEqual(ALPHA))) == [a1, a2]
        assert self.ids(backend.query(IdEquals(b1) & ExecutorEqual(BETA))) == [b1]
        assert backend.query(IdEquals(b1) & ExecutorEqual(ALPHA)) == []
        assert backend.query(IdEquals(MISSING_ID)) == []
        assert self.ids(backend.query(ExecutorEqual(ALPHA), limit=1)) == [a1]

    # -- prune_jobs ----------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("only", "except_", "pruned_executors"),
        [
            (None, None, {ALPHA, BETA}),
            (frozenset({ALPHA}), None, {ALPHA}),
            (None, frozenset({ALPHA}), {BETA}),
        ],
        ids=["all-executors", "only", "except"],
    )
    def test_prune_by_max_length_and_max_age(
        self,
        backend: Backend,
        only: frozenset[str] | None,
        except_: frozenset[str] | None,
        pruned_executors: set[str],
    ) -> None:
        old = timezone.now() - timedelta(days=2)
        complete = {
            name: [self.enqueue(backend, name, data={"n": n}) for n in range(3)]
            for name in (ALPHA, BETA)
        }
        for name in (ALPHA, BETA):
            for job_id in complete[name]:
                self.finish(backend, job_id, JobStatus.COMPLETE)
                time.sleep(0.002)  # distinct finish times
        stale = {name: self.enqueue(backend, name, scheduled_at=old) for name in (ALPHA, BETA)}
        fresh = {name: self.enqueue(backend, name) for name in (ALPHA, BETA)}
        spec = PruneSpec(
            rules=(
                PruneRule(JobStatus.COMPLETE, max_length=1, only=only, except_=except_),
                PruneRule(
                    JobStatus.SCHEDULED, max_age=timedelta(days=1), only=only, except_=except_
                ),
            )
        )
        everything = {j.id for j in backend.query(And(()))}
        expected_gone: set[int] = set()
        covered_complete = [j for n in (ALPHA, BETA) if n in pruned_executors for j in complete[n]]
        # max_length counts every job the rule covers: only the newest finished one stays.
        expected_gone |= set(covered_complete[:-1])
        expected_gone |= {stale[n] for n in pruned_executors}
        assert backend.prune_jobs(spec) == len(expected_gone)
        remaining = {j.id for j in backend.query(And(()))}
        assert remaining == everything - expected_gone
        assert set(fresh.values()) <= remaining

    # ==========================================================================================
    # rexecutor bugs we fix
    # ==========================================================================================
    def test_id_in_with_several_ids(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(4)]
        assert self.ids(backend.query(IdIn((ids[3], ids[0], ids[2])))) == [ids[0], ids[2], ids[3]]
        assert self.ids(backend.query(IdIn((ids[1], MISSING_ID)))) == [ids[1]]
        assert backend.query(IdIn(())) == []
        assert self.ids(backend.query(Not(IdIn((ids[0], ids[1]))))) == ids[2:]

    def test_nested_and_or_not_keep_their_precedence(self, backend: Backend) -> None:
        a_tagged = self.enqueue(backend, ALPHA, tags=["t"])
        a_plain = self.enqueue(backend, ALPHA)
        b_tagged = self.enqueue(backend, BETA, tags=["t"])
        b_plain = self.enqueue(backend, BETA)
        tagged = TagsOneOf(("t",))

        def found(query: Query) -> set[int]:
            return {j.id for j in backend.query(query)}

        # (a_tagged OR a_plain) AND beta: flattening to "x OR y AND z" would return a_tagged.
        assert found(Or((IdEquals(a_tagged), IdEquals(a_plain))) & ExecutorEqual(BETA)) == set()
        # NOT (alpha AND tagged): "NOT a AND b" would lose a_plain and b_plain.
        assert found(Not(ExecutorEqual(ALPHA) & tagged)) == {a_plain, b_tagged, b_plain}
        # (alpha AND NOT tagged) OR (beta AND tagged)
        query = (ExecutorEqual(ALPHA) & ~tagged) | (ExecutorEqual(BETA) & tagged)
        assert found(query) == {a_plain, b_tagged}
        assert found(~query) == {a_tagged, b_plain}
        # Three levels deep.
        deep = Not(Or((And((ExecutorEqual(BETA), Not(tagged))), IdEquals(a_tagged))))
        assert found(deep) == {a_plain, b_tagged}

    def test_empty_and_matches_all_and_empty_or_matches_none(self, backend: Backend) -> None:
        ids = {self.enqueue(backend, ALPHA), self.enqueue(backend, BETA)}
        assert {j.id for j in backend.query(And(()))} == ids
        assert backend.query(Or(())) == []
        assert backend.query(Not(And(()))) == []
        assert {j.id for j in backend.query(Not(Or(())))} == ids
        assert {j.id for j in backend.query(Or((Or(()), And(()))))} == ids

    def test_uniqueness_by_key_actually_matches(self, backend: Backend) -> None:
        first = self.enqueue(backend, ALPHA, unique=UniquenessCriteria.by_key({"a": 1, "b": 2}))
        # Same key, written in another order, from another executor: a key alone matches
        # jobs of every executor.
        same = self.enqueue(backend, BETA, unique=UniquenessCriteria.by_key({"b": 2, "a": 1}))
        assert same == first and not same.inserted
        other_key = self.enqueue(backend, ALPHA, unique=UniquenessCriteria.by_key({"a": 2}))
        assert other_key.inserted
        scoped = UniquenessCriteria.by_key({"a": 1, "b": 2}).and_executor()
        beta = self.enqueue(backend, BETA, unique=scoped)
        assert beta.inserted, "and_executor(): an alpha job does not match a beta enqueue"
        assert self.enqueue(backend, BETA, unique=scoped) == beta
        assert len(backend.query(And(()))) == 3

    def test_uniqueness_by_key_ignores_jobs_enqueued_without_that_key(
        self, backend: Backend
    ) -> None:
        plain = self.enqueue(backend)
        keyed = self.enqueue(backend, unique=UniquenessCriteria.by_key("k").and_executor())
        assert keyed.inserted and keyed != plain

    def test_final_attempt_with_lowered_max_attempts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, max_attempts=5)
        self.fail_once(backend, job_id)
        self.fail_once(backend, job_id)
        waiting = backend.get_job(job_id)
        waiting.max_attempts = 1  # lowered below the attempts already made
        backend.update_job(waiting)
        running = self.claim_id(backend, job_id, worker="vanished-worker")
        assert (running.attempt, running.max_attempts) == (3, 1)
        assert running.is_last_attempt, "attempt 3 of max 1 is past the last attempt"
        # The backend's own retry-or-discard decision (rescue) must use >= too.
        assert backend.rescue_orphaned_jobs(timedelta(seconds=60)) == [job_id]
        rescued = backend.get_job(job_id)
        assert rescued.status == JobStatus.DISCARDED
        assert rescued.errors[-1].error_type == ErrorType.ORPHANED

    def test_pruning_keeps_the_newest_by_finish_time(self, backend: Backend) -> None:
        # Claims follow priority, so these priorities make the jobs finish in the order
        # 2, 0, 3, 1: unlike their id and scheduled_at order.
        priorities = [1, 3, 0, 2]
        ids = [self.enqueue(backend, data={"n": n}, priority=p) for n, p in enumerate(priorities)]
        for index in (2, 0, 3, 1):
            self.finish(backend, ids[index], JobStatus.COMPLETE)
            time.sleep(0.002)
        pruned = backend.prune_jobs(PruneSpec((PruneRule(JobStatus.COMPLETE, max_length=2),)))
        assert pruned == 2
        assert self.ids(backend.query(And(()))) == [ids[1], ids[3]]

    def test_pruning_by_age_counts_from_the_finish_time(self, backend: Backend) -> None:
        long_ago = timezone.now() - timedelta(days=30)
        early = self.enqueue(backend, scheduled_at=long_ago)
        self.finish(backend, early, JobStatus.DISCARDED)
        time.sleep(0.4)
        late = self.enqueue(backend, scheduled_at=long_ago)
        self.finish(backend, late, JobStatus.DISCARDED)
        rule = PruneRule(JobStatus.DISCARDED, max_age=timedelta(seconds=0.2))
        assert backend.prune_jobs(PruneSpec((rule,))) == 1
        assert self.ids(backend.query(And(()))) == [late]

    def test_pruning_in_small_batches_deletes_everything_due(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(5)]
        for job_id in ids:
            self.finish(backend, job_id, JobStatus.CANCELLED)
        spec = PruneSpec((PruneRule(JobStatus.CANCELLED, max_length=0),), batch_size=2)
        assert backend.prune_jobs(spec) == 5
        assert backend.query(And(())) == []

    # ==========================================================================================
    # Our rules: fencing, cancel, rerun, update, scoping
    # ==========================================================================================
    @pytest.mark.parametrize(
        "result", ["complete", "retryable", "discarded", "cancelled", "snoozed"]
    )
    def test_stale_claim_changes_nothing(self, backend: Backend, result: str) -> None:
        job = self.claim_id(backend, self.enqueue(backend), worker="owner")
        for stale in (
            Claim(job.id, job.attempt, "someone-else"),
            Claim(job.id, job.attempt - 1, "owner"),
        ):
            assert self._write(backend, result, stale) is False
        unchanged = backend.get_job(job.id)
        assert (unchanged.status, unchanged.attempt, unchanged.errors) == (
            JobStatus.EXECUTING,
            1,
            [],
        )
        assert unchanged.claimed_by == "owner"
        assert self._write(backend, result, Claim.of(job)) is True
        settled = backend.get_job(job.id)
        # A duplicate of the same result is stale too.
        assert self._write(backend, result, Claim.of(job)) is False
        assert backend.get_job(job.id) == settled

    @staticmethod
    def _write(backend: Backend, result: str, claim: Claim) -> bool:
        soon = timezone.now() + timedelta(minutes=1)
        if result == "complete":
            return backend.mark_job_complete(claim.job_id, claim=claim)
        if result == "retryable":
            return backend.mark_job_retryable(claim.job_id, soon, _FAILURE, claim=claim)
        if result == "discarded":
            return backend.mark_job_discarded(claim.job_id, _FAILURE, claim=claim)
        if result == "cancelled":
            error = ErrorDetails(ErrorType.CANCELLED, "stop")
            return backend.mark_job_cancelled(claim.job_id, error, claim=claim)
        return backend.mark_job_snoozed(claim.job_id, soon, claim=claim)

    @pytest.mark.parametrize("result", ["complete", "retryable", "discarded", "snoozed"])
    def test_results_apply_only_to_an_executing_job(self, backend: Backend, result: str) -> None:
        job_id = self.enqueue(backend)
        waiting = backend.get_job(job_id)
        # No claim given: still refused, because the job is not executing.
        claim = Claim(job_id, 0, "nobody")
        assert self._write(backend, result, claim) is False
        if result == "complete":
            assert backend.mark_job_complete(job_id) is False
        assert backend.get_job(job_id) == waiting

    @pytest.mark.parametrize("result", ["complete", "retryable", "discarded", "snoozed"])
    def test_late_result_after_a_cancel_request_cancels(
        self, backend: Backend, result: str
    ) -> None:
        job = self.claim_id(backend, self.enqueue(backend))
        requested = backend.cancel_job(job.id, "no longer needed")
        assert requested.status == JobStatus.EXECUTING
        assert requested.cancel_requested
        assert backend.cancel_requested([job.id, MISSING_ID]) == {job.id}
        assert self._write(backend, result, Claim.of(job)) is True
        cancelled = backend.get_job(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        self.assert_recent(cancelled.cancelled_at)
        assert cancelled.completed_at is None and cancelled.discarded_at is None
        assert [(e.attempt, e.error_type, e.message) for e in cancelled.errors] == [
            (1, "cancelled", "no longer needed")
        ]

    def test_complete_jobs_in_a_batch(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(4)]
        jobs = backend.claim_jobs("batcher", {ALPHA: 4}, 4)
        assert sorted(self.ids(jobs)) == ids
        backend.cancel_job(ids[1], "stop")
        claims = [Claim.of(j) for j in jobs] + [Claim(ids[0], 1, "stale-worker")]
        assert backend.complete_jobs(claims) == 4
        statuses = [backend.get_job(i).status for i in ids]
        assert statuses == [
            JobStatus.COMPLETE,
            JobStatus.CANCELLED,
            JobStatus.COMPLETE,
            JobStatus.COMPLETE,
        ]
        assert backend.complete_jobs([]) == 0

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

    # ==========================================================================================
    # Claiming, releasing, workers
    # ==========================================================================================
    def test_claim_marks_the_job_executing_for_the_worker(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        [job] = backend.claim_jobs("worker-9", {ALPHA: 5}, 5)
        stored = backend.get_job(job_id)
        for seen in (job, stored):
            assert (seen.id, seen.status, seen.attempt) == (job_id, JobStatus.EXECUTING, 1)
            assert seen.claimed_by == "worker-9"
            self.assert_recent(seen.attempted_at)
        assert backend.claim_jobs("worker-9", {ALPHA: 5}, 5) == []

    def test_claim_order_is_priority_then_scheduled_at_then_id(self, backend: Backend) -> None:
        now = timezone.now()
        t1, t2 = now - timedelta(minutes=2), now - timedelta(minutes=1)
        later_p0 = self.enqueue(backend, priority=0, scheduled_at=t2)
        p1 = self.enqueue(backend, priority=1, scheduled_at=t1 - timedelta(hours=1))
        tie_a = self.enqueue(backend, priority=0, scheduled_at=t1)
        tie_b = self.enqueue(backend, priority=0, scheduled_at=t1)
        order = [self.claim(backend).id for _ in range(4)]
        assert order == [tie_a, tie_b, later_p0, p1]

    def test_claim_ignores_future_and_non_waiting_jobs(self, backend: Backend) -> None:
        self.enqueue(backend, scheduled_at=timezone.now() + timedelta(minutes=5))
        running = self.enqueue(backend)
        self.claim_id(backend, running)
        self.finish(backend, self.enqueue(backend), JobStatus.COMPLETE)
        self.enqueue(backend, BETA)
        assert backend.claim_jobs("w", {ALPHA: 10}, 10) == []

    def test_claim_respects_capacity_per_executor_and_limit(self, backend: Backend) -> None:
        for n in range(4):
            self.enqueue(backend, ALPHA, data={"n": n})
            self.enqueue(backend, BETA, data={"n": n})
        jobs = backend.claim_jobs("w", {ALPHA: 2, BETA: 1}, 10)
        assert sorted(j.executor for j in jobs) == [ALPHA, ALPHA, BETA]
        betas = backend.claim_jobs("w", {ALPHA: 0, BETA: 5}, 5)
        assert [j.executor for j in betas] == [BETA] * 3
        assert backend.claim_jobs("w", {ALPHA: 5}, 0) == []
        assert backend.claim_jobs("w", {}, 5) == []
        assert len(backend.claim_jobs("w", {ALPHA: 10, BETA: 10}, 1)) == 1
        assert len(backend.claim_jobs("w", {ALPHA: 5}, 5)) == 1

    def test_claims_from_threads_never_hand_a_job_out_twice(self, backend: Backend) -> None:
        expected = {self.enqueue(backend, data={"n": n}) for n in range(40)}
        workers = [f"thread-{n}" for n in range(4)]
        start = threading.Barrier(len(workers))

        def drain(worker: str) -> list[int]:
            try:
                start.wait(timeout=10)
                got: list[int] = []
                while jobs := backend.claim_jobs(worker, {ALPHA: 3}, 3):
                    got += [j.id for j in jobs]
                return got
            finally:
                self.release_thread_resources()

        with ThreadPoolExecutor(len(workers)) as pool:
            results = dict(zip(workers, pool.map(drain, workers), strict=True))
        everything = [job_id for got in results.values() for job_id in got]
        assert len(everything) == len(set(everything)), "a job was claimed twice"
        assert set(everything) == expected
        for worker, got in results.items():
            for job_id in got:
                job = backend.get_job(job_id)
                assert (job.claimed_by, job.attempt) == (worker, 1)

    def test_a_retryable_job_is_claimed_again_when_due(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        again = self.claim_id(backend, job_id, worker="second")
        assert (again.attempt, again.claimed_by) == (2, "second")
        assert [e.attempt for e in again.errors] == [1]

    def test_next_scheduled_at(self, backend: Backend) -> None:
        assert backend.next_scheduled_at([ALPHA]) is None
        soon = timezone.now() + timedelta(minutes=1)
        self.enqueue(backend, ALPHA, scheduled_at=soon + timedelta(minutes=1))
        self.enqueue(backend, ALPHA, scheduled_at=soon)
        self.enqueue(backend, BETA, scheduled_at=soon - timedelta(minutes=5))
        assert backend.next_scheduled_at([ALPHA]) == soon
        assert backend.next_scheduled_at([ALPHA, BETA]) == soon - timedelta(minutes=5)
        assert backend.next_scheduled_at(["nobody"]) is None

    def test_release_gives_the_attempt_back(self, backend: Backend) -> None:
        second = self.enqueue(backend)
        self.fail_once(backend, second)
        first = self.enqueue(backend, scheduled_at=timezone.now() - timedelta(minutes=1))
        jobs = backend.claim_jobs("stopping", {ALPHA: 2}, 2)
        assert sorted(self.ids(jobs)) == sorted([first, second])
        stale = Claim(first, 7, "stopping")
        assert backend.release_jobs([Claim.of(j) for j in jobs] + [stale]) == 2
        released = {i: backend.get_job(i) for i in (first, second)}
        assert (released[first].status, released[first].attempt) == (JobStatus.SCHEDULED, 0)
        assert (released[second].status, released[second].attempt) == (JobStatus.RETRYABLE, 1)
        for job in released.values():
            assert job.scheduled_at <= timezone.now(), "released jobs are due now"
        assert len(released[second].errors) == 1, "a release records no error"
        assert len(backend.claim_jobs("next", {ALPHA: 2}, 2)) == 2
        assert backend.release_jobs([Claim(MISSING_ID, 1, "x")]) == 0

    def test_heartbeats_and_live_workers(self, backend: Backend) -> None:
        backend.record_heartbeat("w-1", executors=[BETA, ALPHA], concurrency=4)
        [worker] = backend.live_workers()
        time.sleep(0.01)
        backend.record_heartbeat("w-1", executors=[BETA, ALPHA], concurrency=4, running=[3, 1])
        [again] = backend.live_workers()
        assert (again.worker_id, again.concurrency) == ("w-1", 4)
        assert sorted(again.executors) == [ALPHA, BETA]
        assert sorted(again.running) == [1, 3]
        assert again.started_at == worker.started_at
        assert again.heartbeat_at > worker.heartbeat_at
        self.assert_recent(again.heartbeat_at)
        time.sleep(0.01)
        backend.record_heartbeat("w-2", executors=[ALPHA], concurrency=1)
        assert [w.worker_id for w in backend.live_workers()] == ["w-2", "w-1"]
        backend.remove_worker("w-1")
        backend.remove_worker("never-existed")
        assert [w.worker_id for w in backend.live_workers()] == ["w-2"]

    def test_rescue_orphaned_jobs(self, backend: Backend) -> None:
        alive, dead, ghost, last = (self.enqueue(backend, data={"n": n}) for n in range(4))
        backend.update_job(self._with_max_attempts(backend.get_job(last), 1))
        backend.record_heartbeat("dead", executors=[ALPHA], concurrency=1)
        self.claim_id(backend, alive, worker="alive")
        self.claim_id(backend, dead, worker="dead")
        self.claim_id(backend, ghost, worker="never-beat")
        self.claim_id(backend, last, worker="dead")
        time.sleep(0.6)
        backend.record_heartbeat("alive", executors=[ALPHA], concurrency=1)
        assert sorted(backend.rescue_orphaned_jobs(timedelta(seconds=0.4))) == [dead, ghost, last]
        assert backend.get_job(alive).status == JobStatus.EXECUTING
        for job_id in (dead, ghost):
            job = backend.get_job(job_id)
            assert (job.status, job.attempt) == (JobStatus.RETRYABLE, 1)
            assert job.scheduled_at <= timezone.now(), "a rescued job is due again"
            assert [(e.attempt, e.error_type) for e in job.errors] == [(1, "orphaned")]
        discarded = backend.get_job(last)
        assert discarded.status == JobStatus.DISCARDED
        assert [e.error_type for e in discarded.errors] == ["orphaned"]
        assert backend.rescue_orphaned_jobs(timedelta(seconds=0.4)) == []

    @staticmethod
    def _with_max_attempts(job: Job, max_attempts: int) -> Job:
        job.max_attempts = max_attempts
        return job

    def test_rescue_of_a_job_with_a_cancel_request_cancels_it(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.claim_id(backend, job_id, worker="never-beat")
        backend.cancel_job(job_id, "stop")
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == [job_id]
        job = backend.get_job(job_id)
        assert job.status == JobStatus.CANCELLED
        assert [e.error_type for e in job.errors] == ["cancelled"]

    def test_cancel_requested_lists_only_requested_jobs(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(3)]
        backend.claim_jobs("w", {ALPHA: 3}, 3)
        backend.cancel_job(ids[0], "a")
        backend.cancel_job(ids[2], "c")
        assert backend.cancel_requested(ids) == {ids[0], ids[2]}
        assert backend.cancel_requested([ids[1]]) == set()
        assert backend.cancel_requested([]) == set()

    # ==========================================================================================
    # Enqueue and query details
    # ==========================================================================================
    def test_enqueue_many_keeps_order_and_ids(self, backend: Backend) -> None:
        jobs = [self.job(data={"n": n}, priority=n % 3, tags=[f"t{n}"]) for n in range(6)]
        ids = backend.enqueue_many(jobs)
        assert len(ids) == 6 and len(set(ids)) == 6
        assert all(isinstance(i, JobId) and i.inserted for i in ids)
        for n, job_id in enumerate(ids):
            stored = backend.get_job(job_id)
            assert (stored.data, stored.priority, stored.tags) == ({"n": n}, n % 3, [f"t{n}"])
        assert backend.enqueue_many([]) == []

    def test_enqueue_many_applies_uniqueness_within_the_batch(self, backend: Backend) -> None:
        unique = UniquenessCriteria.by_key("only-one")
        first, plain, duplicate = backend.enqueue_many(
            [self.job(unique=unique), self.job(), self.job(unique=unique)]
        )
        assert first.inserted and plain.inserted
        assert duplicate == first and not duplicate.inserted
        assert len(backend.query(And(()))) == 2

    def test_job_fields_round_trip(self, backend: Backend) -> None:
        at = timezone.now() + timedelta(hours=1)
        job_id = self.enqueue(
            backend,
            BETA,
            data={"list": [1, "two", None, 3.5, True], "nested": {"z": 1, "a": {}}},
            metadata={"request": "abc"},
            max_attempts=7,
            scheduled_at=at,
            tags=["b", "a"],
            priority=4,
        )
        job = backend.get_job(job_id)
        assert job.data == {"list": [1, "two", None, 3.5, True], "nested": {"z": 1, "a": {}}}
        assert (job.metadata, job.max_attempts, job.scheduled_at) == ({"request": "abc"}, 7, at)
        assert (job.executor, job.priority, sorted(job.tags)) == (BETA, 4, ["a", "b"])
        assert (job.status, job.attempt, job.errors) == (JobStatus.SCHEDULED, 0, [])
        assert job.attempted_at is None and job.finished_at is None
        self.assert_recent(job.inserted_at)

    def test_tags_all_of_and_one_of(self, backend: Backend) -> None:
        ab = self.enqueue(backend, tags=["a", "b"])
        bc = self.enqueue(backend, tags=["b", "c"])
        untagged = self.enqueue(backend)

        def found(query: Query) -> list[int]:
            return self.ids(backend.query(query))

        assert found(TagsAllOf(("a", "b"))) == [ab]
        assert found(TagsAllOf(("b",))) == [ab, bc]
        assert found(TagsAllOf(("a", "c"))) == []
        assert found(TagsAllOf(())) == [ab, bc, untagged]
        assert found(TagsOneOf(("a", "c"))) == [ab, bc]
        assert found(TagsOneOf(("z",))) == []
        assert found(TagsOneOf(())) == []
        assert found(Not(TagsOneOf(("a",)))) == [bc, untagged]

    def test_data_and_metadata_are_exact_equality(self, backend: Backend) -> None:
        full = self.enqueue(backend, data={"a": 1, "b": [1, 2], "c": {"y": 1, "x": 2}})
        part = self.enqueue(backend, data={"a": 1})
        none = self.enqueue(backend, data=None, metadata={"k": "v"})
        listed = self.enqueue(backend, data=[2, 1], metadata=None)
        scalar = self.enqueue(backend, data="text", metadata={"k": "v", "extra": 1})

        def found(query: Query) -> list[int]:
            return self.ids(backend.query(query))

        assert found(DataEquals({"c": {"x": 2, "y": 1}, "b": [1, 2], "a": 1})) == [full]
        assert found(DataEquals({"a": 1})) == [part], "no containment match"
        assert found(DataEquals({"a": 1, "b": [2, 1], "c": {"x": 2, "y": 1}})) == []
        assert found(DataEquals(None)) == [none]
        assert found(DataEquals([2, 1])) == [listed]
        assert found(DataEquals([1, 2])) == []
        assert found(DataEquals("text")) == [scalar]
        assert found(MetadataEquals({"k": "v"})) == [none]
        assert found(MetadataEquals(None)) == [full, part, listed]
        assert found(Not(DataEquals(None)) & MetadataEquals(None)) == [full, part, listed]

    def test_scheduled_at_before_after_and_equal(self, backend: Backend) -> None:
        at = timezone.now().replace(microsecond=123456) + timedelta(hours=1)
        early = self.enqueue(backend, scheduled_at=at - timedelta(microseconds=1))
        exact = self.enqueue(backend, scheduled_at=at)
        late = self.enqueue(backend, scheduled_at=at + timedelta(minutes=1))
        assert self.ids(backend.query(ScheduledAtBefore(at))) == [early]
        assert self.ids(backend.query(ScheduledAtAfter(at))) == [late]
        assert self.ids(backend.query(ScheduledAtEqual(at))) == [exact]
        assert self.ids(backend.query(Not(ScheduledAtEqual(at)))) == [early, late]

    def test_query_by_status_returns_errors_oldest_first(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        self.fail_once(backend, job_id)
        self.enqueue(backend)
        [job] = backend.query(StatusEqual(JobStatus.RETRYABLE))
        assert job.id == job_id
        assert [e.attempt for e in job.errors] == [1, 2]
        assert job.errors[0].recorded_at <= job.errors[1].recorded_at
        assert len(backend.query(StatusEqual(JobStatus.SCHEDULED))) == 1

    # -- uniqueness details --------------------------------------------------------------------
    def test_uniqueness_window_is_inclusive(self, backend: Backend) -> None:
        at = timezone.now() + timedelta(hours=5)
        window = UniquenessCriteria.by_executor().within(timedelta(hours=1))
        first = self.enqueue(backend, scheduled_at=at, unique=window)
        edge = self.enqueue(backend, scheduled_at=at + timedelta(hours=1), unique=window)
        assert edge == first and not edge.inserted
        below = self.enqueue(backend, scheduled_at=at - timedelta(hours=1), unique=window)
        assert below == first
        outside = at + timedelta(hours=1, seconds=1)
        assert self.enqueue(backend, scheduled_at=outside, unique=window).inserted

    def test_uniqueness_statuses_decide_what_counts(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)  # now retryable
        scheduled_only = UniquenessCriteria.by_executor()
        fresh = self.enqueue(backend, unique=scheduled_only)
        assert fresh.inserted, "a retryable job does not count by default"
        self.finish(backend, fresh, JobStatus.CANCELLED)
        retryable = UniquenessCriteria.by_statuses([JobStatus.RETRYABLE]).and_executor()
        assert self.enqueue(backend, unique=retryable) == job_id
        cancelled = UniquenessCriteria.by_statuses(["cancelled"]).and_executor()
        assert self.enqueue(backend, unique=cancelled) == fresh

    def test_replace_only_in_its_statuses(self, backend: Backend) -> None:
        job_id = self.enqueue(backend, priority=5)
        self.fail_once(backend, job_id)  # retryable
        counts = UniquenessCriteria.by_executor().and_statuses(["scheduled", "retryable"])
        same = self.enqueue(backend, priority=1, unique=counts.on_conflict(Replace.priority()))
        assert same == job_id and not same.inserted
        assert backend.get_job(job_id).priority == 5, "Replace defaults to scheduled jobs only"
        replace = Replace.priority().for_statuses(["retryable"])
        self.enqueue(backend, priority=2, unique=counts.on_conflict(replace))
        assert backend.get_job(job_id).priority == 2

    def test_replace_of_each_field_alone(self, backend: Backend) -> None:
        base = timezone.now() + timedelta(hours=1)
        job_id = self.enqueue(
            backend, data=1, metadata=1, priority=1, max_attempts=1, scheduled_at=base
        )
        unique = UniquenessCriteria.by_executor()
        later = base + timedelta(minutes=1)
        new: dict[str, Any] = {
            "data": 2, "metadata": 2, "priority": 2, "max_attempts": 2, "scheduled_at": later
        }  # fmt: skip
        old: dict[str, Any] = {
            "data": 1, "metadata": 1, "priority": 1, "max_attempts": 1, "scheduled_at": base
        }  # fmt: skip
        for field in Replace.FIELDS:
            replace = getattr(Replace, field)()
            self.enqueue(backend, unique=unique.on_conflict(replace), **new)
            job = backend.get_job(job_id)
            old[field] = new[field]
            assert {name: getattr(job, name) for name in old} == old, field
