"""``PruneConformance``: ``prune_jobs`` — rules by age (from the finish time) and by length
(keeping the newest by finish time), for all executors, ``only`` and ``except``, in small
batches, and never a job that was rerun and claimed meanwhile; and ``count_prunable``, which
must announce exactly what ``prune_jobs`` then deletes."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ...backends.base import Backend, Claim, PruneRule, PruneSpec
from ...exceptions import InvalidTransition, JobNotFound
from ...query import And
from ...status import JobStatus
from .base import ALPHA, BETA, ConformanceBase


class PruneConformance(ConformanceBase):
    """Pruning; adoptable alone with ``ConformanceBase``."""

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

    def test_a_prune_rule_for_running_jobs_is_refused(self, backend: Backend) -> None:
        with pytest.raises(ValueError, match="never pruned"):
            PruneRule(JobStatus.EXECUTING, max_length=0)

    def test_pruning_never_deletes_a_job_rerun_and_claimed_meanwhile(
        self, backend: Backend
    ) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(20)]
        for job_id in ids:
            self.finish(backend, job_id, JobStatus.COMPLETE)
        lost: list[int] = []
        stop = threading.Event()

        def rerun_and_run() -> None:
            # Reruns finished jobs and runs them, while the pruner deletes finished ones: a
            # job deleted while it runs cannot take its result.
            try:
                while not stop.is_set():
                    for job_id in ids:
                        try:
                            backend.rerun_job(job_id)
                        except (JobNotFound, InvalidTransition):
                            continue  # pruned while finished (fine)
                        for job in backend.claim_jobs("runner", {ALPHA: 1}, 1):
                            try:
                                backend.mark_job_complete(job.id, claim=Claim.of(job))
                            except JobNotFound:
                                lost.append(job.id)
            finally:
                self.release_thread_resources()

        runner = threading.Thread(target=rerun_and_run)
        runner.start()
        try:
            spec = PruneSpec((PruneRule(JobStatus.COMPLETE, max_length=0),), batch_size=1)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and backend.query(And(())):
                backend.prune_jobs(spec)
        finally:
            stop.set()
            runner.join()
        assert lost == [], f"jobs deleted while running: {lost}"

    # -- count_prunable --------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("only", "except_", "covered"),
        [
            (None, None, (ALPHA, BETA)),
            (frozenset({ALPHA}), None, (ALPHA,)),
            (None, frozenset({ALPHA}), (BETA,)),
        ],
        ids=["all-executors", "only", "except"],
    )
    def test_count_prunable_is_what_prune_jobs_then_deletes(
        self,
        backend: Backend,
        only: frozenset[str] | None,
        except_: frozenset[str] | None,
        covered: tuple[str, ...],
    ) -> None:
        old = timezone.now() - timedelta(days=2)
        for name in (ALPHA, BETA):
            for n in range(3):
                self.finish(backend, self.enqueue(backend, name, data={"n": n}), JobStatus.COMPLETE)
                time.sleep(0.002)  # distinct finish times
            self.enqueue(backend, name, scheduled_at=old)
            self.enqueue(backend, name)

        def rule(
            status: JobStatus, *, max_age: timedelta | None = None, max_length: int | None = None
        ) -> PruneRule:
            return PruneRule(status, max_age, max_length, only=only, except_=except_)

        # Each rule with what it deletes: all but the newest complete job; the stale scheduled
        # jobs; then the complete job left; nothing of a status no job has.
        expected = [
            (rule(JobStatus.COMPLETE, max_length=1), 3 * len(covered) - 1),
            (rule(JobStatus.SCHEDULED, max_age=timedelta(days=1)), len(covered)),
            (rule(JobStatus.COMPLETE, max_age=timedelta(0)), 1),
            (rule(JobStatus.DISCARDED, max_length=0), 0),
        ]
        for prune_rule, count in expected:
            before = {j.id for j in backend.query(And(()))}
            assert backend.count_prunable(prune_rule) == count, prune_rule
            assert {j.id for j in backend.query(And(()))} == before, "counting deletes nothing"
            assert backend.prune_jobs(PruneSpec((prune_rule,), batch_size=2)) == count
            after = {j.id for j in backend.query(And(()))}
            assert len(before - after) == count and after <= before
            assert backend.count_prunable(prune_rule) == 0, "nothing left to prune"
        left = [(j.executor, j.status) for j in backend.query(And(()))]
        assert left.count((ALPHA, JobStatus.SCHEDULED)) >= 1, "a fresh job is never pruned"
        assert left.count((BETA, JobStatus.SCHEDULED)) >= 1, "a fresh job is never pruned"
