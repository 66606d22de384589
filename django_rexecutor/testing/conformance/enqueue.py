"""``EnqueueConformance``: ``enqueue`` and ``enqueue_many`` — ids, stored fields, uniqueness
(keys, executors, statuses, windows, ``Replace``) and the payload limit
(``REXECUTOR["MAX_PAYLOAD_BYTES"]``: a job over it is refused with ``PayloadTooLarge`` and
nothing is stored; ``enqueue_many``: none of its jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from ...backends.base import Backend, EnqueuableJob
from ...exceptions import PayloadTooLarge
from ...job import JobId
from ...query import And, ExecutorEqual, Where
from ...status import JobStatus
from ...uniqueness import Replace, UniquenessCriteria
from .base import ALPHA, BETA, ConformanceBase

#: The limit the payload tests set: small, so exceeding it costs nothing.
LIMIT = 100
#: A string whose JSON text (with its two quotes) is exactly ``LIMIT`` bytes.
AT_LIMIT = "x" * (LIMIT - 2)
OVER_LIMIT = AT_LIMIT + "x"


class EnqueueConformance(ConformanceBase):
    """Enqueue, batches and uniqueness; adoptable alone (it needs only ``ConformanceBase``)."""

    def test_enqueue_returns_distinct_ids(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(5)]
        assert len(set(ids)) == 5
        assert all(isinstance(i, JobId) and i.inserted for i in ids)
        for n, job_id in enumerate(ids):
            job = backend.get_job(job_id)
            assert (job.data, job.status, job.attempt) == ({"n": n}, JobStatus.SCHEDULED, 0)

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

    @pytest.fixture
    def small_limit(self) -> Iterator[None]:
        with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": LIMIT}):
            yield

    @staticmethod
    def _all_ids(backend: Backend) -> list[int]:
        return [job.id for job in backend.query(Where.all())]

    def test_a_payload_at_the_limit_is_stored(self, backend: Backend, small_limit: None) -> None:
        job_id = backend.enqueue(self.job(data=AT_LIMIT, metadata=AT_LIMIT, tags=[AT_LIMIT[2:]]))
        stored = backend.get_job(job_id)
        assert (stored.data, stored.metadata) == (AT_LIMIT, AT_LIMIT)

    @pytest.mark.parametrize("field", ["data", "metadata", "tags"])
    def test_a_payload_over_the_limit_is_refused_and_nothing_is_stored(
        self, backend: Backend, small_limit: None, field: str
    ) -> None:
        value: Any = [OVER_LIMIT[2:]] if field == "tags" else OVER_LIMIT
        big: EnqueuableJob = self.job(**{field: value})
        with pytest.raises(PayloadTooLarge, match=f"{field} is {LIMIT + 1} bytes") as info:
            backend.enqueue(big)
        assert (info.value.what, info.value.size, info.value.limit) == (field, LIMIT + 1, LIMIT)
        batches = [
            [self.job(data=1), self.job(data=2), big],
            [self.job(data=1, unique=UniquenessCriteria.by_key("ok")), big],
            [self.job(data=1), self.job(**{field: value}, unique=UniquenessCriteria.by_key(2))],
        ]
        for batch in batches:
            with pytest.raises(PayloadTooLarge):
                backend.enqueue_many(batch)
        with pytest.raises(PayloadTooLarge):
            backend.enqueue(self.job(**{field: value}, unique=UniquenessCriteria.by_key(3)))
        assert self._all_ids(backend) == []

    def test_a_replacing_enqueue_over_the_limit_leaves_the_matched_job_alone(
        self, backend: Backend, small_limit: None
    ) -> None:
        rule = UniquenessCriteria.by_key("replace")
        first = backend.enqueue(self.job(data="small", unique=rule))
        with pytest.raises(PayloadTooLarge):
            backend.enqueue(self.job(data=OVER_LIMIT, unique=rule.on_conflict(Replace.data())))
        assert backend.get_job(first).data == "small"
        assert self._all_ids(backend) == [first]

    def test_no_limit_when_the_setting_is_none(self, backend: Backend) -> None:
        with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": None}):
            job_id = backend.enqueue(self.job(data="x" * (LIMIT * 10)))
        assert backend.get_job(job_id).data == "x" * (LIMIT * 10)
