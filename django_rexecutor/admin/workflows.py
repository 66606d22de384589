"""The admin's workflow page: a workflow's steps in layers (each step after the ones it waits
for), their statuses and dependencies, and the cancel-workflow and rerun-failed-steps actions.
Reading uses the job table like the rest of the admin; the actions go through the backend,
behind the ``cancel_job`` and ``rerun_job`` permissions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, Subquery

from ..models import JobDependencyRecord, JobErrorRecord, JobRecord
from ..status import ErrorType, JobStatus

#: Steps listed on the page at most (a fan-out of thousands shows its first ones and a count).
MAX_SHOWN = 500


@dataclass
class StepRow:
    id: int
    step: str
    executor: str
    status: str
    layer: int
    after: list[str] = field(default_factory=list)
    last_error_type: str | None = None

    #: Dependencies named on the page at most (a fan-in of thousands is counted).
    NAMED = 8

    @property
    def after_shown(self) -> str:
        text = ", ".join(self.after[: self.NAMED])
        more = len(self.after) - self.NAMED
        return f"{text} … (+{more})" if more > 0 else text


@dataclass
class WorkflowPage:
    workflow_id: str
    steps: list[StepRow]
    layers: list[list[StepRow]]
    counts: dict[str, int]
    hidden: int

    @property
    def failed_ids(self) -> list[int]:
        """The steps "rerun failed steps" reruns: discarded ones, and ones cancelled for a
        reason of their own (not ``upstream_failed``: rerunning their failed dependency
        reopens those)."""
        return [
            s.id
            for s in self.steps
            if s.status == JobStatus.DISCARDED
            or (s.status == JobStatus.CANCELLED and s.last_error_type != ErrorType.UPSTREAM_FAILED)
        ]

    @property
    def unfinished(self) -> int:
        terminal = {JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.DISCARDED}
        return sum(1 for s in self.steps if s.status not in terminal)


def layers_of(after: Mapping[int, Sequence[int]], ids: Sequence[int]) -> dict[int, int]:
    """Each step's layer: 0 without dependencies, else one more than its deepest dependency
    (a dependency outside ``ids``, deleted meanwhile, does not count). Kahn's order, so a
    long chain costs no more than a wide fan-out."""
    known = set(ids)
    waiting = {pk: sum(1 for d in after.get(pk, ()) if d in known) for pk in ids}
    dependents: dict[int, list[int]] = {}
    for pk in ids:
        for d in after.get(pk, ()):
            if d in known:
                dependents.setdefault(d, []).append(pk)
    layer = dict.fromkeys((pk for pk in ids if not waiting[pk]), 0)
    ready = list(layer)
    while ready:
        pk = ready.pop()
        for dependent in dependents.get(pk, ()):
            layer[dependent] = max(layer.get(dependent, 0), layer[pk] + 1)
            waiting[dependent] -= 1
            if not waiting[dependent]:
                ready.append(dependent)
    for pk in ids:  # a cycle: impossible for a checked workflow
        layer.setdefault(pk, 0)
    return layer


def load(alias: str, workflow_id: str) -> WorkflowPage | None:
    last_error = JobErrorRecord.objects.filter(job=OuterRef("pk")).order_by("-id")
    rows = list(
        JobRecord.objects.using(alias)
        .filter(workflow_id=workflow_id)
        .order_by("pk")
        .annotate(last_error_type=Subquery(last_error.values("error_type")[:1]))
        .values_list("pk", "step", "executor", "status", "last_error_type")
    )
    if not rows:
        return None
    ids = [r[0] for r in rows]
    after: dict[int, list[int]] = {}
    for job_id, dep in (
        JobDependencyRecord.objects.using(alias)
        .filter(
            job_id__in=JobRecord.objects.using(alias).filter(workflow_id=workflow_id).values("pk")
        )
        .order_by("job_id", "depends_on_id")
        .values_list("job_id", "depends_on_id")
    ):
        after.setdefault(job_id, []).append(dep)
    layer = layers_of(after, ids)
    name = {pk: step or str(pk) for pk, step, *_ in rows}
    steps = [
        StepRow(
            pk,
            name[pk],
            executor,
            status,
            layer[pk],
            [name.get(d, str(d)) for d in after.get(pk, [])],
            error,
        )
        for pk, _, executor, status, error in rows
    ]
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    shown = sorted(steps, key=lambda s: (s.layer, s.id))[:MAX_SHOWN]
    layers: list[list[StepRow]] = []
    for s in shown:
        while len(layers) <= s.layer:
            layers.append([])
        layers[s.layer].append(s)
    return WorkflowPage(
        workflow_id, steps, [lay for lay in layers if lay], counts, len(steps) - len(shown)
    )


def context_of(page: WorkflowPage) -> dict[str, Any]:
    return {
        "rx_workflow": page,
        "rx_failed": len(page.failed_ids),
        "rx_unfinished": page.unfinished,
    }
