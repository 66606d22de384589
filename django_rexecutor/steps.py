"""The rules a workflow's steps obey before anything is stored: unique names, dependencies on
steps of the same workflow, no cycles, a known ``run_if``, no uniqueness rules. Pure: every
backend's ``enqueue_workflow`` checks its steps with ``check_steps``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .exceptions import WorkflowError

if TYPE_CHECKING:
    from .backends.values import WorkflowStep

#: Longest step name (the column's length).
STEP_NAME_MAX_LENGTH = 255


def check_steps(steps: Sequence[WorkflowStep]) -> None:
    """Raise ``WorkflowError`` naming the first problem of ``steps``."""
    from .backends.values import RUN_IF_VALUES

    if not steps:
        raise WorkflowError("A workflow needs at least one step; add some with Workflow.add().")
    names: set[str] = set()
    for step in steps:
        if not isinstance(step.name, str) or not step.name:
            raise WorkflowError(f"A step name must be a non-empty string, got {step.name!r}.")
        if len(step.name) > STEP_NAME_MAX_LENGTH:
            raise WorkflowError(
                f"The step name {step.name[:40]!r}… is longer than {STEP_NAME_MAX_LENGTH} "
                "characters."
            )
        if step.name in names:
            raise WorkflowError(
                f"Two steps are named {step.name!r}; step names are unique in a workflow."
            )
        names.add(step.name)
        if step.run_if not in RUN_IF_VALUES:
            raise WorkflowError(
                f"Step {step.name!r}: run_if={step.run_if!r}; expected one of "
                f"{', '.join(repr(v) for v in RUN_IF_VALUES)}."
            )
        if step.job.uniqueness is not None and not step.job.uniqueness.disabled:
            raise WorkflowError(
                f"Step {step.name!r} has a uniqueness rule: workflow steps cannot have one "
                "(a duplicate found elsewhere would not be this workflow's step)."
            )
    for step in steps:
        for dep in step.after:
            if dep not in names:
                raise WorkflowError(
                    f"Step {step.name!r} runs after {dep!r}, which is not a step of this workflow."
                )
            if dep == step.name:
                raise WorkflowError(f"Step {step.name!r} cannot run after itself.")
    cycle = find_cycle({s.name: tuple(s.after) for s in steps})
    if cycle:
        raise WorkflowError(
            "The workflow's dependencies form a cycle: " + " → ".join(repr(n) for n in cycle)
        )


def find_cycle(after: dict[str, tuple[str, ...]]) -> list[str]:
    """A cycle of the graph ``name → names it runs after`` (its names, first repeated at the
    end), or ``[]``. Iterative, so 10,000 steps in a chain do not hit the recursion limit."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in after:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, index = stack.pop()
            if index == 0:
                state[name] = 1
                path.append(name)
            deps = after.get(name, ())
            if index < len(deps):
                stack.append((name, index + 1))
                dep = deps[index]
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if not state.get(dep):
                    stack.append((dep, 0))
            else:
                state[name] = 2
                path.pop()
    return []
