"""Workflows through the public API on the configured database (SQLite or PostgreSQL): the
builder's checks, one transaction joining the caller's, outcomes propagating, reruns reopening,
upstream results, cancel and the pruner. Jobs run through ``drain_jobs`` (the worker's own
execution path); real worker processes are in test_workflow_workers.py."""

from __future__ import annotations

import pytest
from django.db import transaction

from demo.jobs import RecordEffect, WorkflowStepEffect
from demo.models import SideEffect
from django_rexecutor import JobStatus, UniquenessCriteria, Workflow, WorkflowError
from django_rexecutor.backends import get_backend
from django_rexecutor.backends.values import Claim, PruneRule, PruneSpec
from django_rexecutor.models import JobDependencyRecord, JobRecord
from django_rexecutor.status import ErrorType
from django_rexecutor.testing.drain import drain_jobs

pytestmark = pytest.mark.django_db

Step = WorkflowStepEffect


def statuses(run) -> dict[str, str]:
    return {j.step: j.status for j in Workflow.jobs(run.workflow_id)}


def diamond(run_if: str = "finished", **fetch_data) -> tuple[Workflow, list]:
    wf = Workflow("nightly-report")
    fetch = wf.add(Step.builder().with_data({"value": 1, **fetch_data}), name="fetch")
    a = wf.add(Step.builder().with_data({"value": "a"}), name="a", after=[fetch])
    b = wf.add(Step.builder().with_data({"value": "b"}), name="b", after=[fetch])
    notify = wf.add(Step.builder(), name="notify", after=[a, b], run_if=run_if)
    return wf, [fetch, a, b, notify]


def test_a_run_gives_each_steps_job_by_step_or_name() -> None:
    wf, (fetch, a, _b, notify) = diamond()
    run = wf.enqueue()
    assert run[fetch] == run["fetch"] and run[notify] == run["notify"]
    record = JobRecord.objects.get(pk=run[a])
    assert (record.workflow_id, record.step, record.status) == (run.workflow_id, "a", "waiting")
    assert statuses(run) == {
        "fetch": "scheduled", "a": "waiting", "b": "waiting", "notify": "waiting"
    }  # fmt: skip
    assert JobDependencyRecord.objects.filter(job_id=run[notify]).count() == 2
    with pytest.raises(KeyError, match="'nope' is not a step"):
        run["nope"]


def test_the_diamond_runs_in_order_and_passes_results_on() -> None:
    wf, _ = diamond()
    run = wf.enqueue()
    assert drain_jobs(Step) == {"complete": 4}
    notify = get_backend().get_job(run["notify"])
    assert notify.result == {
        "step": "notify",
        "value": None,
        "upstream": {
            "a": {"step": "a", "value": "a", "upstream": {"fetch": {"step": "fetch", "value": 1, "upstream": {}}}},
            "b": {"step": "b", "value": "b", "upstream": {"fetch": {"step": "fetch", "value": 1, "upstream": {}}}},
        },
    }  # fmt: skip
    labels = list(SideEffect.objects.order_by("id").values_list("label", flat=True))
    assert labels.index("end:fetch") < labels.index("start:a")
    assert labels.index("end:b") < labels.index("start:notify")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda wf, other: wf.add(Step.builder(), after=[other.add(Step.builder())]), "another workflow"),
        (lambda wf, other: [wf.add(Step.builder(), name="x"), wf.add(Step.builder(), name="x")], "already has a step named 'x'"),
        (lambda wf, other: wf.add(Step.builder(), name="x", run_if="sometimes"), "run_if='sometimes'"),
        (lambda wf, other: wf.add(RecordEffect.builder().unique(UniquenessCriteria(executor=True))), "uniqueness rule"),
    ],
    ids=["foreign-step", "duplicate-name", "run-if", "unique"],
)  # fmt: skip
def test_a_badly_built_workflow_is_a_clear_error_and_stores_nothing(build, message) -> None:
    wf, other = Workflow("one"), Workflow("two")
    with pytest.raises(WorkflowError, match=message):
        build(wf, other)
        wf.enqueue()
    assert not JobRecord.objects.exists()


def test_a_cycle_through_step_names_is_refused_before_anything_is_stored() -> None:
    wf = Workflow("loop")
    wf.add(Step.builder(), name="a", after=["c"])
    wf.add(Step.builder(), name="b", after=["a"])
    wf.add(Step.builder(), name="c", after=["b"])
    with pytest.raises(WorkflowError, match="cycle: 'a' → 'c' → 'b' → 'a'"):
        wf.enqueue()
    wf2 = Workflow("typo")
    wf2.add(Step.builder(), name="a", after=["fecth"])
    with pytest.raises(WorkflowError, match="runs after 'fecth', which is not a step"):
        wf2.enqueue()
    assert not JobRecord.objects.exists()
    assert not JobDependencyRecord.objects.exists()


def test_enqueue_inside_a_transaction_that_rolls_back_stores_nothing() -> None:
    wf, _ = diamond()

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        run = wf.enqueue()
        assert len(Workflow.jobs(run.workflow_id)) == 4  # visible inside the transaction
        raise Rollback
    assert not JobRecord.objects.exists()
    assert not JobDependencyRecord.objects.exists()


def test_a_discarded_step_cancels_succeeded_dependents_and_rerun_reopens_them() -> None:
    wf = Workflow("report")
    fetch = wf.add(Step.builder().with_data({"fail": True}), name="fetch")
    report = wf.add(Step.builder(), name="report", after=[fetch])
    mail = wf.add(Step.builder(), name="mail", after=[report])
    wf.add(Step.builder(), name="cleanup", after=[mail], run_if="finished")
    run = wf.enqueue()

    assert drain_jobs(Step) == {"discarded": 1, "complete": 1}
    assert statuses(run) == {
        "fetch": "discarded", "report": "cancelled", "mail": "cancelled", "cleanup": "complete"
    }  # fmt: skip
    mail_job = get_backend().get_job(run[mail])
    assert mail_job.errors[-1].error_type == ErrorType.UPSTREAM_FAILED
    assert "'report' ended cancelled" in mail_job.errors[-1].message
    assert get_backend().get_job(run["cleanup"]).result["upstream"] == {"mail": None}

    # Fixed: the step succeeds when run again, and what it cancelled runs after it.
    JobRecord.objects.filter(pk=run[fetch]).update(data={"fail": False})
    get_backend().rerun_job(run[fetch])
    assert statuses(run) == {
        "fetch": "scheduled", "report": "waiting", "mail": "waiting", "cleanup": "complete"
    }  # fmt: skip
    assert drain_jobs(Step) == {"complete": 3}
    assert set(statuses(run).values()) == {JobStatus.COMPLETE}
    starts = SideEffect.objects.filter(label="start:cleanup").count()
    assert starts == 1  # a step that already ran is not run again


def test_a_waiting_step_is_never_claimed_even_when_due() -> None:
    wf, _ = diamond()
    run = wf.enqueue()
    claimed = get_backend().claim_jobs("w", {Step.name: 10}, 10)
    assert [j.id for j in claimed] == [run["fetch"]]


def test_cancel_a_workflow_cancels_its_unfinished_steps() -> None:
    wf, _ = diamond()
    run = wf.enqueue()
    backend = get_backend()
    first = backend.claim_jobs("w", {Step.name: 1}, 1)[0]
    result = Workflow.cancel(run.workflow_id)
    assert result.requested == (first.id,)
    assert sorted(result.done) == sorted(run.ids.values())
    assert statuses(run) == {
        "fetch": "executing", "a": "cancelled", "b": "cancelled", "notify": "cancelled"
    }  # fmt: skip
    assert backend.get_job(run["a"]).errors[-1].message == "workflow cancelled"


def test_the_pruner_keeps_every_step_of_an_unfinished_workflow() -> None:
    wf, _ = diamond()
    run = wf.enqueue()
    plain = RecordEffect.enqueue({})
    backend = get_backend()
    everything = PruneSpec(
        tuple(PruneRule(s, max_length=0) for s in (JobStatus.COMPLETE, JobStatus.CANCELLED,
              JobStatus.DISCARDED, JobStatus.SCHEDULED, JobStatus.RETRYABLE))
    )  # fmt: skip
    # fetch done, a and b due, notify waiting: nothing of the workflow may go.
    job = backend.claim_jobs("w", {Step.name: 1}, 1)[0]
    backend.mark_job_complete(job.id, claim=Claim.of(job))
    assert backend.prune_jobs(everything) == 1  # the plain job only
    assert not JobRecord.objects.filter(pk=plain).exists()
    assert len(Workflow.jobs(run.workflow_id)) == 4
    drain_jobs(Step)
    assert backend.prune_jobs(everything) == 4  # finished: pruned as a whole
    assert not JobDependencyRecord.objects.exists()


def test_a_long_chain_is_checked_without_recursion() -> None:
    from django_rexecutor.steps import find_cycle

    chain = {f"s{n}": (f"s{n - 1}",) if n else () for n in range(20_000)}
    assert find_cycle(chain) == []
    chain["s0"] = ("s19999",)
    cycle = find_cycle(chain)
    assert len(cycle) == 20_001 and cycle[0] == cycle[-1]


def test_the_async_api_on_the_in_memory_backend() -> None:
    import asyncio

    from django_rexecutor import InMemoryBackend

    backend = InMemoryBackend()

    async def main() -> tuple[dict, list]:
        wf, _ = diamond()
        run = await wf.aenqueue(backend=backend)
        jobs = await Workflow.ajobs(run.workflow_id, backend=backend)
        fetch = backend.claim_jobs("w", {Step.name: 1}, 1)[0]
        backend.mark_job_complete(fetch.id, claim=Claim.of(fetch), result=[1])
        a = next(j for j in jobs if j.step == "a")
        a._backend = backend
        results = await a.aupstream_results()
        await Workflow.acancel(run.workflow_id, backend=backend)
        return results, await Workflow.ajobs(run.workflow_id, backend=backend)

    results, after = asyncio.run(main())
    assert results == {"fetch": [1]}
    assert {j.status for j in after} == {JobStatus.COMPLETE, JobStatus.CANCELLED}
