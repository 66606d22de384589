"""Workflows in the Django backend: a workflow's steps and edges inserted in one transaction
(the engine's bulk insert, then the edges in bulk), its steps' upstream results, and the
cancel of a whole workflow in one transaction. The release of dependents is in
``dependencies``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...conf import rexecutor_settings
from ...job import JobId
from ...models import JobDependencyRecord
from ...status import TERMINAL_STATUSES
from ...steps import check_steps
from ..values import BulkResult, WorkflowStep
from .reading import Reading

TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


class WorkflowSteps(Reading):
    def enqueue_workflow(self, workflow_id: str, steps: Sequence[WorkflowStep]) -> list[JobId]:
        check_steps(steps)
        with self._atomic():  # joins the caller's transaction
            ids = self.engine.insert_steps(workflow_id, steps, rexecutor_settings.MAX_PAYLOAD_BYTES)
            id_of = {step.name: job_id for step, job_id in zip(steps, ids, strict=True)}
            JobDependencyRecord.objects.using(self.alias).bulk_create(
                (
                    JobDependencyRecord(job_id=job_id, depends_on_id=id_of[dep])
                    for step, job_id in zip(steps, ids, strict=True)
                    for dep in dict.fromkeys(step.after)
                ),
                batch_size=5000,
            )
        return [JobId(i) for i in ids]

    def upstream_results(self, job_id: int) -> dict[str, Any]:
        deps = JobDependencyRecord.objects.using(self.alias).filter(job_id=job_id)
        rows = self.jobs.filter(pk__in=deps.values("depends_on_id")).values_list(
            "step", "status", "result"
        )
        return {
            str(step): (result if status == "complete" else None) for step, status, result in rows
        }

    def cancel_workflow(self, workflow_id: str, reason: str) -> BulkResult:
        # One transaction: no step the cancel reaches later can be claimed meanwhile.
        with self._atomic():
            unfinished = (
                self.jobs.filter(workflow_id=workflow_id)
                .exclude(status__in=TERMINAL)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            return self.cancel_jobs(list(unfinished), reason)
