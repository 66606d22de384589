"""Workflows under real worker processes: the diamond's order from the steps' own start and
end records, a 1,000-step fan-out whose callback runs exactly once although one of three
workers is killed with SIGKILL midway, and the pruner running while a long workflow runs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from demo.jobs import RecordEffect, WorkflowStepEffect
from demo.models import SideEffect
from django_rexecutor import JobStatus, Workflow
from django_rexecutor.backends import get_backend
from django_rexecutor.backends.values import PruneRule, PruneSpec
from django_rexecutor.models import (
    JobDependencyRecord,
    JobErrorRecord,
    JobRecord,
    WorkerRecord,
)
from django_rexecutor.plugins.pruner import Pruner
from django_rexecutor.plugins.schedule import CronSchedule
from tests.worker_support import WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Step = WorkflowStepEffect
FAST_RESCUE = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 2}


def finished(run) -> bool:
    return all(j.status in (JobStatus.COMPLETE,) for j in Workflow.jobs(run.workflow_id))


def running_under(pid: int) -> int:
    worker_ids = WorkerRecord.objects.filter(pid=pid).values("worker_id")
    return JobRecord.objects.filter(status=JobStatus.EXECUTING, claimed_by__in=worker_ids).count()


def effects(job_id: int) -> list[tuple[str, object]]:
    return list(
        SideEffect.objects.filter(job_id=job_id).order_by("id").values_list("label", "created_at")
    )


def test_a_diamond_runs_in_dependency_order_on_two_workers(manage_py, subprocess_env) -> None:
    wf = Workflow("nightly-report")
    fetch = wf.add(Step.builder().with_data({"sleep": 0.3, "value": 1}), name="fetch")
    a = wf.add(Step.builder().with_data({"sleep": 0.5}), name="a", after=[fetch])
    b = wf.add(Step.builder().with_data({"sleep": 0.2}), name="b", after=[fetch])
    notify = wf.add(Step.builder(), name="notify", after=[a, b], run_if="finished")
    run = wf.enqueue()
    workers = [WorkerProcess(manage_py, subprocess_env, "--concurrency", "4") for _ in range(2)]
    try:
        wait_until(lambda: finished(run), 60, *workers)
    finally:
        assert [w.stop() for w in workers] == [0, 0]
    times = {}
    for step in (fetch, a, b, notify):
        records = effects(run[step])
        assert [label for label, _ in records] == [f"start:{step.name}", f"end:{step.name}"]
        times[step.name] = (records[0][1], records[1][1])
    assert times["fetch"][1] <= times["a"][0] and times["fetch"][1] <= times["b"][0]
    assert times["notify"][0] >= max(times["a"][1], times["b"][1])
    # The job table's own times agree: each step was claimed after its dependencies finished.
    record = {s.name: JobRecord.objects.get(pk=run[s]) for s in (fetch, a, b, notify)}
    for name in ("a", "b"):
        assert record[name].attempted_at >= record["fetch"].completed_at
    assert record["notify"].attempted_at >= max(record["a"].completed_at, record["b"].completed_at)
    assert {r.attempt for r in record.values()} == {1}
    result = get_backend().get_job(run[notify]).result
    assert set(result["upstream"]) == {"a", "b"}


def test_a_fan_out_of_1000_steps_survives_a_killed_worker_and_calls_back_once(
    manage_py, subprocess_env
) -> None:
    total = 1000
    wf = Workflow("fan-out")
    root = wf.add(Step.builder().with_data({"value": "root"}), name="root")
    fan = wf.add_many(
        [Step.builder().with_data({"sleep": 0.05}).with_max_attempts(5) for _ in range(total)],
        after=[root],
    )
    callback = wf.add(Step.builder(), name="callback", after=fan)
    run = wf.enqueue()
    workers = [
        WorkerProcess(
            manage_py, subprocess_env, "--concurrency", "8", "-v", "1", overrides=FAST_RESCUE
        )
        for _ in range(3)
    ]
    victim = workers[0]
    try:
        # Midway: a good part of the fan-out done, and the victim running some of it.
        wait_until(
            lambda: SideEffect.objects.filter(label__startswith="end:").count() >= total // 3,
            120,
            *workers,
            interval=0.2,
        )
        # Killed while it runs steps (its identity is in its heartbeat row, by pid).
        wait_until(lambda: running_under(victim.pid) > 0, 30, victim, interval=0.05)
        victim.kill()
        survivors = workers[1:]
        wait_until(lambda: finished(run), 180, *survivors, interval=0.5)
    finally:
        codes = [w.stop() for w in workers[1:]]
        victim.kill()
    assert codes == [0, 0]
    steps = Workflow.jobs(run.workflow_id)
    assert len(steps) == total + 2
    assert {j.status for j in steps} == {JobStatus.COMPLETE}
    ends = Counter(
        SideEffect.objects.filter(label__startswith="end:").values_list("job_id", flat=True)
    )
    assert set(ends) == {j.id for j in steps}
    starts = SideEffect.objects.filter(job_id=run[callback], label="start:callback").count()
    assert starts == 1
    # The victim's steps were rescued and run again by the others.
    assert JobErrorRecord.objects.filter(error_type="orphaned").exists()
    callback_job = get_backend().get_job(run[callback])
    assert callback_job.attempt == 1
    assert len(callback_job.result["upstream"]) == total


def test_the_pruner_running_during_a_long_workflow_removes_none_of_its_steps(
    manage_py, subprocess_env
) -> None:
    wf = Workflow("long")
    previous = None
    for n in range(8):
        after = [previous] if previous else []
        previous = wf.add(Step.builder().with_data({"sleep": 0.3}), name=f"step-{n}", after=after)
    wf.add(
        Step.builder(), name="after-all", after=[f"step-{n}" for n in range(8)], run_if="finished"
    )
    run = wf.enqueue()
    step_ids = set(run.ids.values())
    backend = get_backend()
    rules = (
        *tuple(
            PruneRule(status, max_length=0)
            for status in (JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED)
        ),
        PruneRule(JobStatus.SCHEDULED, max_age=timedelta(microseconds=1)),
    )
    pruner = Pruner(backend, PruneSpec(rules), CronSchedule.parse("* * * * *"))
    stop = threading.Event()
    passes: list[object] = []
    missing: list[set[int]] = []

    def prune_all_the_time() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                RecordEffect.enqueue({})  # a plain job each pass, which the pruner takes
                passes.append(pruner.run_once())
                left = dict(JobRecord.objects.filter(pk__in=step_ids).values_list("pk", "status"))
                # Steps gone while others are unfinished: an unfinished workflow was pruned.
                # (Once all are finished, the pruner may take the workflow as a whole.)
                if set(left) != step_ids and set(left.values()) - {JobStatus.COMPLETE}:
                    missing.append(step_ids - set(left))
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=prune_all_the_time)
    worker = WorkerProcess(manage_py, subprocess_env, "--executor", Step.name)
    thread.start()
    try:
        wait_until(lambda: finished(run), 60, worker, interval=0.2)
    finally:
        stop.set()
        thread.join(30)
        assert worker.stop() == 0
    assert len(passes) > 20 and missing == []
    deleted = sum(count for result in passes if result for _, count in result)
    assert deleted > 0  # the pruner did prune, plain jobs
    # Finished now: the next pass (if the last ones did not already) prunes the workflow as
    # a whole, edges too.
    pruner.run_once()
    assert Workflow.jobs(run.workflow_id) == []
    assert not JobDependencyRecord.objects.exists()
