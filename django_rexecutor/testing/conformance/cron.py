"""``CronConformance``: ``enqueue_cron_job`` and ``prune_cron_ticks``.

Every worker may run a cron scheduler, so several fire the same tick: the backend must turn
each (entry, tick) into exactly one job, even when they fire at the same moment, and forget
only the ticks it is asked to forget."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from ...backends.base import Backend, Claim, PruneRule, PruneSpec
from ...job import JobId
from ...query import Where
from ...status import JobStatus
from .base import ALPHA, BETA, ConformanceBase


class CronConformance(ConformanceBase):
    """Cron ticks; adoptable alone with ``ConformanceBase``."""

    @pytest.fixture
    def tick(self) -> datetime:
        """A tick of the last minute, on a whole second as cron ticks are."""
        return timezone.now().replace(microsecond=0) - timedelta(minutes=1)

    def fire(
        self, backend: Backend, name: str, tick_at: datetime, executor: str = ALPHA
    ) -> JobId | None:
        """What a scheduler does for entry ``name`` at ``tick_at``: its job, due at the tick."""
        job = self.job(executor, data={"entry": name}, scheduled_at=tick_at)
        return backend.enqueue_cron_job(name, tick_at, job)

    def test_a_tick_enqueues_its_job_with_the_given_fields_due_at_the_tick(
        self, backend: Backend, tick: datetime
    ) -> None:
        job = self.job(
            BETA,
            data={"report": "nightly"},
            metadata={"cron": "0 3 * * *"},
            max_attempts=2,
            scheduled_at=tick,
            tags=["cron"],
            priority=3,
        )
        job_id = backend.enqueue_cron_job("conformance-nightly", tick, job)
        assert job_id is not None and job_id.inserted
        stored = backend.get_job(job_id)
        assert (stored.executor, stored.data, stored.metadata, stored.tags) == (
            BETA,
            {"report": "nightly"},
            {"cron": "0 3 * * *"},
            ["cron"],
        )
        assert (stored.priority, stored.max_attempts) == (3, 2)
        assert (stored.status, stored.attempt, stored.scheduled_at) == (
            JobStatus.SCHEDULED,
            0,
            tick,
        )
        assert [j.id for j in backend.claim_jobs("w", {BETA: 5}, 5)] == [job_id], "due now"

    def test_a_second_fire_of_a_tick_enqueues_nothing(
        self, backend: Backend, tick: datetime
    ) -> None:
        first = self.fire(backend, "conformance-every-minute", tick)
        assert first is not None
        assert self.fire(backend, "conformance-every-minute", tick) is None
        assert self.fire(backend, "conformance-every-minute", tick, executor=BETA) is None, (
            "the tick is taken, whatever job comes with it"
        )
        assert self.ids(backend.query(Where.all())) == [first]

    def test_each_tick_and_each_entry_gets_its_own_job(
        self, backend: Backend, tick: datetime
    ) -> None:
        keys = [(name, tick + timedelta(minutes=n)) for name in ("a", "b") for n in (0, 1)]
        fired = {key: self.fire(backend, f"conformance-{key[0]}", key[1]) for key in keys}
        ids = list(fired.values())
        assert None not in ids and len(set(ids)) == 4, fired
        assert all(self.fire(backend, f"conformance-{name}", at) is None for name, at in keys)
        assert sorted(self.ids(backend.query(Where.all()))) == sorted(i for i in ids if i)
        for (name, at), job_id in fired.items():
            assert job_id is not None
            stored = backend.get_job(job_id)
            assert (stored.data, stored.scheduled_at) == ({"entry": f"conformance-{name}"}, at)

    def test_schedulers_firing_a_tick_at_once_enqueue_one_job(
        self, backend: Backend, tick: datetime
    ) -> None:
        ticks = [tick + timedelta(seconds=n) for n in range(5)]
        schedulers = 4
        start = threading.Barrier(schedulers)

        def scheduler() -> list[JobId | None]:
            start.wait(timeout=10)
            return [self.fire(backend, "conformance-race", at) for at in ticks]

        with self.thread_pool(schedulers) as pool:
            runs = [
                f.result(timeout=60) for f in [pool.submit(scheduler) for _ in range(schedulers)]
            ]
        for index, at in enumerate(ticks):
            winners = [run[index] for run in runs if run[index] is not None]
            assert len(winners) == 1, f"tick {at}: {winners} enqueued"
        jobs = backend.query(Where.all())
        assert sorted(j.scheduled_at for j in jobs) == ticks, "one job per tick"

    def test_a_tick_stays_taken_after_its_job_is_pruned(
        self, backend: Backend, tick: datetime
    ) -> None:
        job_id = self.fire(backend, "conformance-pruned", tick)
        assert job_id is not None
        [job] = backend.claim_jobs("w", {ALPHA: 1}, 1)
        assert backend.mark_job_complete(job_id, claim=Claim.of(job))
        spec = PruneSpec((PruneRule(JobStatus.COMPLETE, max_length=0),))
        assert backend.prune_jobs(spec) == 1
        assert self.fire(backend, "conformance-pruned", tick) is None

    def test_pruning_ticks_forgets_the_old_ones_only(
        self, backend: Backend, tick: datetime
    ) -> None:
        old, recent = tick - timedelta(days=2), tick
        for at in (old, recent):
            assert self.fire(backend, "conformance-hourly", at) is not None
        assert self.fire(backend, "conformance-other", old) is not None
        cutoff = tick - timedelta(days=1)
        assert backend.prune_cron_ticks(cutoff) == 2
        assert backend.prune_cron_ticks(cutoff) == 0
        assert len(backend.query(Where.all())) == 3, "forgetting a tick deletes no job"
        refired = self.fire(backend, "conformance-hourly", old)
        assert refired is not None, "a forgotten tick can be taken again"
        assert self.fire(backend, "conformance-hourly", recent) is None, "a recent one cannot"
