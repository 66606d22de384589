"""Workflows: jobs that wait for other jobs.

``Workflow`` builds a graph of steps (each an ordinary job from an executor's builder) and
inserts it in one transaction; the backend then releases each step when its dependencies
have finished (see ``docs/workflows.md`` for the exact semantics)::

    wf = Workflow("nightly-report")
    fetch = wf.add(FetchSales.builder().with_data({"day": "2026-12-01"}), name="fetch")
    a = wf.add(ReportA.builder(), after=[fetch])
    b = wf.add(ReportB.builder(), after=[fetch])
    wf.add(Notify.builder(), after=[a, b], run_if="finished")
    run = wf.enqueue()
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backends import resolve_backend
from .backends.values import RUN_IF_VALUES, WorkflowStep
from .exceptions import WorkflowError
from .job import Job, JobId
from .steps import check_steps

if TYPE_CHECKING:
    from .backends.base import Backend, BulkResult
    from .builder import JobBuilder

#: The reason recorded on the steps ``Workflow.cancel`` cancels.
WORKFLOW_CANCELLED = "workflow cancelled"


@dataclass(frozen=True, eq=False)
class Step:
    """A step added to a ``Workflow``: pass it in another step's ``after``, or index the
    enqueued run with it (``run[step]``)."""

    workflow: Workflow
    name: str

    def __repr__(self) -> str:
        return f"<Step {self.name!r} of {self.workflow.name!r}>"


@dataclass(frozen=True)
class WorkflowRun:
    """An enqueued workflow: its ``workflow_id`` and the id of each step's job."""

    workflow_id: str
    name: str
    ids: dict[str, JobId]

    def __getitem__(self, step: Step | str) -> JobId:
        name = step.name if isinstance(step, Step) else step
        try:
            return self.ids[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a step of workflow {self.name!r}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class Workflow:
    """A graph of jobs: add steps, then ``enqueue()`` them all at once."""

    def __init__(self, name: str = "workflow") -> None:
        self.name = name
        self._steps: dict[str, tuple[JobBuilder, tuple[str, ...], str]] = {}
        #: The last number given to a default step name, per executor.
        self._numbered: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self._steps)} steps>"

    def __len__(self) -> int:
        return len(self._steps)

    def add(
        self,
        builder: JobBuilder,
        *,
        name: str | None = None,
        after: Iterable[Step | str] = (),
        run_if: str = "succeeded",
    ) -> Step:
        """Add a step running ``builder``'s job once the steps ``after`` (steps of this
        workflow, or their names) have finished: all completed (``run_if="succeeded"``, the
        default), or whatever their outcome (``run_if="finished"``). ``name`` defaults to the
        executor's name, numbered if taken (``report``, ``report-2``, …)."""
        from .builder import JobBuilder

        if not isinstance(builder, JobBuilder):
            raise WorkflowError(
                f"Workflow.add takes a job builder (MyExecutor.builder()), got {builder!r}."
            )
        if run_if not in RUN_IF_VALUES:
            raise WorkflowError(
                f"run_if={run_if!r}; expected one of {', '.join(map(repr, RUN_IF_VALUES))}."
            )
        deps = self._names(after)
        step_name = name if name is not None else self._default_name(builder.executor.name)
        if not isinstance(step_name, str) or not step_name:
            raise WorkflowError(f"A step name must be a non-empty string, got {step_name!r}.")
        if step_name in self._steps:
            raise WorkflowError(
                f"Workflow {self.name!r} already has a step named {step_name!r}; step names "
                "are unique in a workflow."
            )
        self._steps[step_name] = (builder, deps, run_if)
        return Step(self, step_name)

    def add_many(
        self,
        builders: Iterable[JobBuilder],
        *,
        after: Iterable[Step | str] = (),
        run_if: str = "succeeded",
    ) -> list[Step]:
        """Add one step per builder, each after the same ``after`` (a fan-out); they are
        inserted with the rest in a few statements. Names are the executors' names,
        numbered."""
        deps = tuple(self._names(after))
        return [self.add(b, after=deps, run_if=run_if) for b in builders]

    def steps(self) -> list[WorkflowStep]:
        """The steps as the backend inserts them (each builder built now), checked."""
        steps = [
            WorkflowStep(builder.build(), name, deps, run_if)
            for name, (builder, deps, run_if) in self._steps.items()
        ]
        check_steps(steps)
        return steps

    def enqueue(self, *, backend: Backend | None = None, using: str | None = None) -> WorkflowRun:
        """Insert every step and dependency in one transaction (joining the caller's on
        database backends): the steps without dependencies are due as their builders say,
        the others ``waiting``. A ``WorkflowError`` (a cycle, an unknown step…) stores
        nothing."""
        steps = self.steps()
        workflow_id = str(uuid.uuid4())
        target = resolve_backend(backend, using)
        ids = target.enqueue_workflow(workflow_id, steps)
        return WorkflowRun(
            workflow_id, self.name, {s.name: i for s, i in zip(steps, ids, strict=True)}
        )

    async def aenqueue(
        self, *, backend: Backend | None = None, using: str | None = None
    ) -> WorkflowRun:
        steps = self.steps()
        workflow_id = str(uuid.uuid4())
        target = resolve_backend(backend, using)
        ids = await target.aenqueue_workflow(workflow_id, steps)
        return WorkflowRun(
            workflow_id, self.name, {s.name: i for s, i in zip(steps, ids, strict=True)}
        )

    @staticmethod
    def cancel(
        workflow_id: str,
        reason: str = WORKFLOW_CANCELLED,
        *,
        backend: Backend | None = None,
        using: str | None = None,
    ) -> BulkResult:
        """Cancel every unfinished step of the workflow: waiting and due ones at once, running
        ones get a cancel request (as ``cancel_job`` does)."""
        return resolve_backend(backend, using).cancel_workflow(str(workflow_id), reason)

    @staticmethod
    async def acancel(
        workflow_id: str,
        reason: str = WORKFLOW_CANCELLED,
        *,
        backend: Backend | None = None,
        using: str | None = None,
    ) -> BulkResult:
        return await resolve_backend(backend, using).acancel_workflow(str(workflow_id), reason)

    @staticmethod
    def jobs(
        workflow_id: str, *, backend: Backend | None = None, using: str | None = None
    ) -> list[Job]:
        """The workflow's steps (``Job`` values, each with ``workflow_id`` and ``step``), by
        id."""
        return resolve_backend(backend, using).workflow_jobs(str(workflow_id))

    @staticmethod
    async def ajobs(
        workflow_id: str, *, backend: Backend | None = None, using: str | None = None
    ) -> list[Job]:
        return await resolve_backend(backend, using).aworkflow_jobs(str(workflow_id))

    # -- helpers -----------------------------------------------------------------------------
    def _names(self, after: Iterable[Step | str]) -> tuple[str, ...]:
        if isinstance(after, (Step, str)):
            after = [after]
        names: list[str] = []
        for dep in after:
            if isinstance(dep, Step):
                if dep.workflow is not self:
                    raise WorkflowError(
                        f"{dep!r} is a step of another workflow; a step can only run after "
                        f"steps of its own workflow ({self.name!r})."
                    )
                names.append(dep.name)
            elif isinstance(dep, str):
                names.append(dep)  # a name: checked (known, no cycle) at enqueue
            else:
                raise WorkflowError(f"after= takes steps or step names, got {dep!r}.")
        return tuple(dict.fromkeys(names))

    def _default_name(self, executor: str) -> str:
        name, n = executor, self._numbered.get(executor, 1)
        while name in self._steps:
            n += 1
            name = f"{executor}-{n}"
        self._numbered[executor] = n
        return name
