"""Conformance cases of the pruner's and the rescue's backend operations (``prune_jobs``,
``rescue_orphaned_jobs``); mixed into ``BackendConformanceTests``."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.utils import timezone

from ..backends.base import Backend, Claim, PruneRule, PruneSpec
from ..exceptions import InvalidTransition, JobNotFound
from ..query import And
from ..status import ErrorType, JobStatus

if TYPE_CHECKING:
    from ..job import Job, JobId

ALPHA = "conformance_alpha"  # conformance.ALPHA (that module imports this one)


class PluginsConformance:
    if TYPE_CHECKING:  # the helpers of BackendConformanceTests, which this is mixed into

        def enqueue(self, backend: Backend, executor: str = ALPHA, **options: Any) -> JobId: ...
        def claim_id(self, backend: Backend, job_id: int, worker: str = ...) -> Job: ...
        def finish(self, backend: Backend, job_id: int, status: JobStatus) -> Job: ...
        def release_thread_resources(self) -> None: ...

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

    def test_rescue_of_many_orphans_at_once(self, backend: Backend) -> None:
        # More orphans than a small batch, from two dead workers, at various attempts.
        plain = [self.enqueue(backend, data={"n": n}) for n in range(30)]
        last = [self.enqueue(backend, data={"n": n}, max_attempts=1) for n in range(30, 35)]
        cancelled = self.enqueue(backend, data={"n": 35})
        for index, job_id in enumerate([*plain, *last, cancelled]):
            self.claim_id(backend, job_id, worker=f"dead-{index % 2}")
        backend.cancel_job(cancelled, "stop it")
        alive = self.claim_id(backend, self.enqueue(backend, data={"n": 99}), worker="alive")
        backend.record_heartbeat("alive", executors=[ALPHA], concurrency=1)
        rescued = backend.rescue_orphaned_jobs(timedelta(seconds=30))
        assert sorted(rescued) == sorted([*plain, *last, cancelled])
        for job_id in plain:
            job = backend.get_job(job_id)
            assert job.status == JobStatus.RETRYABLE and job.scheduled_at <= timezone.now()
            assert [(e.attempt, e.error_type) for e in job.errors] == [(1, ErrorType.ORPHANED)]
            assert f"worker dead-{plain.index(job_id) % 2} stopped" in job.errors[0].message
        for job_id in last:
            assert backend.get_job(job_id).status == JobStatus.DISCARDED
        stopped = backend.get_job(cancelled)
        assert stopped.status == JobStatus.CANCELLED
        assert [(e.error_type, e.message) for e in stopped.errors] == [
            (ErrorType.CANCELLED, "stop it")
        ]
        assert backend.get_job(alive.id).status == JobStatus.EXECUTING
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == []
