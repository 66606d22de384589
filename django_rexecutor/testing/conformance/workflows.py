"""``WorkflowConformance``: ``enqueue_workflow`` and the release of dependents. Steps without
dependencies are due at once, the others ``waiting`` and never claimed; the last dependency's
final write makes a step due (exactly once when two finish together); a failed dependency
cancels its ``succeeded`` dependents transitively with an ``upstream_failed`` error and counts
as done for ``finished`` ones; a rerun reopens what it cancelled; ``upstream_results``,
``workflow_jobs``, ``cancel_workflow``; a badly built workflow stores nothing; the pruner
never takes a step of an unfinished workflow."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from ...backends.base import Backend
from ...backends.values import Claim, PruneRule, PruneSpec, WorkflowStep
from ...exceptions import WorkflowError
from ...job import ErrorDetails, Job
from ...status import ErrorType, JobStatus
from .base import ALPHA, ConformanceBase

_FAILURE = ErrorDetails("conformance", "failed on purpose")


class WorkflowConformance(ConformanceBase):
    """Workflows; adoptable alone with ``ConformanceBase``."""

    def step(self, name: str, *after: str, run_if: str = "succeeded") -> WorkflowStep:
        return WorkflowStep(self.job(ALPHA, data={"step": name}), name, after, run_if)

    def diamond(self, backend: Backend, run_if: str = "succeeded") -> dict[str, int]:
        steps = [
            self.step("fetch"),
            self.step("a", "fetch"),
            self.step("b", "fetch"),
            self.step("notify", "a", "b", run_if=run_if),
        ]
        ids = backend.enqueue_workflow(str(uuid.uuid4()), steps)
        return {s.name: int(i) for s, i in zip(steps, ids, strict=True)}

    @staticmethod
    def status(backend: Backend, job_id: int) -> JobStatus:
        return backend.get_job(job_id).status

    @staticmethod
    def claim_all(backend: Backend) -> list[Job]:
        return backend.claim_jobs("worker-1", {ALPHA: 100}, 100)

    def test_only_steps_without_dependencies_are_due(self, backend: Backend) -> None:
        ids = self.diamond(backend)
        assert self.status(backend, ids["fetch"]) == JobStatus.SCHEDULED
        for name in ("a", "b", "notify"):
            assert self.status(backend, ids[name]) == JobStatus.WAITING
        assert self.ids(self.claim_all(backend)) == [ids["fetch"]]

    def test_steps_know_their_workflow_and_name(self, backend: Backend) -> None:
        workflow_id = str(uuid.uuid4())
        ids = backend.enqueue_workflow(workflow_id, [self.step("one"), self.step("two", "one")])
        jobs = backend.workflow_jobs(workflow_id)
        assert [(j.id, j.workflow_id, j.step) for j in jobs] == [
            (ids[0], workflow_id, "one"),
            (ids[1], workflow_id, "two"),
        ]
        assert backend.workflow_jobs(str(uuid.uuid4())) == []
        plain = self.enqueue(backend)
        assert backend.get_job(plain).workflow_id is None

    def test_a_step_is_due_once_all_its_dependencies_completed(self, backend: Backend) -> None:
        ids = self.diamond(backend)
        fetch = self.claim_all(backend)
        assert backend.complete_jobs([Claim.of(j) for j in fetch]) == 1
        middle = self.claim_all(backend)
        assert sorted(self.ids(middle)) == sorted([ids["a"], ids["b"]])
        assert backend.complete_jobs([Claim.of(middle[0])]) == 1
        assert self.status(backend, ids["notify"]) == JobStatus.WAITING
        assert self.claim_all(backend) == []
        assert backend.mark_job_complete(middle[1].id, claim=Claim.of(middle[1]), result=7)
        assert self.ids(self.claim_all(backend)) == [ids["notify"]]

    def test_two_dependencies_finishing_together_release_the_step_once(
        self, backend: Backend
    ) -> None:
        ids = self.diamond(backend)
        backend.complete_jobs([Claim.of(j) for j in self.claim_all(backend)])
        middle = self.claim_all(backend)
        barrier = threading.Barrier(2)

        def finish(job: Job) -> bool:
            barrier.wait(timeout=10)
            return backend.mark_job_complete(job.id, claim=Claim.of(job))

        with self.thread_pool(2) as pool:
            written = [f.result(timeout=30) for f in [pool.submit(finish, j) for j in middle]]
        assert written == [True, True]
        assert self.ids(self.claim_all(backend)) == [ids["notify"]]
        assert self.claim_all(backend) == []

    def test_a_failed_step_cancels_its_succeeded_dependents_transitively(
        self, backend: Backend
    ) -> None:
        workflow_id = str(uuid.uuid4())
        steps = [
            self.step("fetch"),
            self.step("report", "fetch"),
            self.step("mail", "report"),
            self.step("cleanup", "mail", run_if="finished"),
        ]
        enqueued = backend.enqueue_workflow(workflow_id, steps)
        ids = {s.name: int(i) for s, i in zip(steps, enqueued, strict=True)}
        self.finish(backend, ids["fetch"], JobStatus.DISCARDED)
        for name in ("report", "mail"):
            job = backend.get_job(ids[name])
            assert job.status == JobStatus.CANCELLED, name
            assert job.errors[-1].error_type == ErrorType.UPSTREAM_FAILED
        # A ``finished`` dependent counts a failure as done.
        assert self.ids(self.claim_all(backend)) == [ids["cleanup"]]

    def test_rerunning_a_failed_step_reopens_what_it_cancelled(self, backend: Backend) -> None:
        ids = self.diamond(backend)
        self.finish(backend, ids["fetch"], JobStatus.DISCARDED)
        assert self.status(backend, ids["a"]) == JobStatus.CANCELLED
        backend.rerun_job(ids["fetch"])
        for name in ("a", "b", "notify"):
            assert self.status(backend, ids[name]) == JobStatus.WAITING, name
        self.finish(backend, ids["fetch"], JobStatus.COMPLETE)
        assert sorted(self.ids(self.claim_all(backend))) == sorted([ids["a"], ids["b"]])

    def test_a_rerun_holds_back_a_finished_callback_that_has_not_started(
        self, backend: Backend
    ) -> None:
        ids = self.diamond(backend, run_if="finished")
        self.finish(backend, ids["fetch"], JobStatus.DISCARDED)
        assert self.status(backend, ids["notify"]) == JobStatus.SCHEDULED
        backend.rerun_job(ids["fetch"])
        assert self.status(backend, ids["notify"]) == JobStatus.WAITING
        self.finish(backend, ids["fetch"], JobStatus.COMPLETE)
        middle = self.claim_all(backend)
        assert sorted(self.ids(middle)) == sorted([ids["a"], ids["b"]])
        backend.complete_jobs([Claim.of(j) for j in middle])
        assert self.ids(self.claim_all(backend)) == [ids["notify"]]

    def test_a_step_the_rescue_discards_releases_its_dependents(self, backend: Backend) -> None:
        workflow_id = str(uuid.uuid4())
        last_try = WorkflowStep(self.job(ALPHA, max_attempts=1), "fetch")
        steps = [last_try, self.step("a", "fetch"), self.step("z", "a", run_if="finished")]
        ids = backend.enqueue_workflow(workflow_id, steps)
        self.claim_id(backend, ids[0], worker="never-beat")
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == [ids[0]]
        assert self.status(backend, ids[0]) == JobStatus.DISCARDED
        assert backend.get_job(ids[1]).errors[-1].error_type == ErrorType.UPSTREAM_FAILED
        assert self.ids(self.claim_all(backend)) == [ids[2]]

    def test_a_cancelled_waiting_step_cancels_its_dependents(self, backend: Backend) -> None:
        ids = self.diamond(backend, run_if="finished")
        backend.cancel_job(ids["a"], "not needed")
        assert self.status(backend, ids["a"]) == JobStatus.CANCELLED
        self.finish(backend, ids["fetch"], JobStatus.COMPLETE)
        self.finish(backend, ids["b"], JobStatus.COMPLETE)
        assert self.ids(self.claim_all(backend)) == [ids["notify"]]

    def test_upstream_results_are_the_dependencies_results(self, backend: Backend) -> None:
        ids = self.diamond(backend, run_if="finished")
        fetch = self.claim_all(backend)[0]
        backend.mark_job_complete(fetch.id, claim=Claim.of(fetch), result={"rows": 3})
        a, b = sorted(self.claim_all(backend), key=lambda j: j.id)
        backend.mark_job_complete(a.id, claim=Claim.of(a), result=["a"])
        backend.mark_job_discarded(b.id, _FAILURE, claim=Claim.of(b))
        assert backend.upstream_results(ids["a"]) == {"fetch": {"rows": 3}}
        assert backend.upstream_results(ids["notify"]) == {"a": ["a"], "b": None}
        assert backend.upstream_results(ids["fetch"]) == {}

    def test_cancel_workflow_cancels_every_unfinished_step(self, backend: Backend) -> None:
        workflow_id = str(uuid.uuid4())
        ids = backend.enqueue_workflow(
            workflow_id,
            [self.step("fetch"), self.step("a", "fetch"), self.step("z", "a", run_if="finished")],
        )
        running = self.claim_all(backend)[0]
        result = backend.cancel_workflow(workflow_id, "stop")
        assert sorted(result.done) == sorted(ids)
        assert result.requested == (running.id,)
        assert [self.status(backend, i) for i in ids[1:]] == [JobStatus.CANCELLED] * 2
        assert backend.mark_job_complete(running.id, claim=Claim.of(running))
        assert self.status(backend, running.id) == JobStatus.CANCELLED
        assert self.claim_all(backend) == []

    @pytest.mark.parametrize(
        "steps",
        [
            [("a", ("b",)), ("b", ("a",))],
            [("a", ("missing",))],
            [("a", ()), ("a", ())],
            [("a", ("a",))],
        ],
        ids=["cycle", "unknown", "duplicate", "self"],
    )
    def test_a_badly_built_workflow_stores_nothing(
        self, backend: Backend, steps: list[tuple[str, tuple[str, ...]]]
    ) -> None:
        workflow_id = str(uuid.uuid4())
        with pytest.raises(WorkflowError):
            backend.enqueue_workflow(workflow_id, [self.step(n, *after) for n, after in steps])
        assert backend.workflow_jobs(workflow_id) == []
        assert self.claim_all(backend) == []

    def test_the_pruner_keeps_unfinished_workflows_whole(self, backend: Backend) -> None:
        workflow_id = str(uuid.uuid4())
        ids = backend.enqueue_workflow(workflow_id, [self.step("fetch"), self.step("a", "fetch")])
        self.finish(backend, ids[0], JobStatus.COMPLETE)
        rule = PruneRule(JobStatus.COMPLETE, max_length=0)
        assert backend.count_prunable(rule) == 0
        assert backend.prune_jobs(PruneSpec((rule,))) == 0
        self.finish(backend, ids[1], JobStatus.COMPLETE)
        assert backend.count_prunable(rule) == 2
        young = PruneRule(JobStatus.COMPLETE, max_age=timedelta(hours=1))
        assert backend.prune_jobs(PruneSpec((young,))) == 0
        assert backend.prune_jobs(PruneSpec((rule,))) == 2
        assert backend.workflow_jobs(workflow_id) == []
