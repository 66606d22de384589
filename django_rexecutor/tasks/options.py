"""Retry settings of tasks: per backend in ``TASKS[alias]["OPTIONS"]`` and per task with
``@task_options``.

A per-task setting wins over the backend's, which wins over the engine's defaults (5 attempts,
exponential backoff from 4 s). ``backoff`` is a ``BackoffStrategy``, or a number of seconds or
a ``timedelta`` meaning a constant delay."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.tasks import Task

from ..backoff import DEFAULT_BACKOFF, BackoffStrategy
from ..validation import check_max_attempts

#: Keys accepted in ``TASKS[alias]["OPTIONS"]``.
OPTION_NAMES = frozenset({"max_attempts", "backoff", "allowed_modules"})
DEFAULT_MAX_ATTEMPTS = 5

#: The attribute ``@task_options`` sets on a task's function.
POLICY_ATTRIBUTE = "_rexecutor_retry_policy"


@dataclass(frozen=True)
class RetryPolicy:
    """``None`` fields fall back to the next level (task → backend → defaults)."""

    max_attempts: int | None = None
    backoff: BackoffStrategy | None = None

    def over(self, fallback: RetryPolicy) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts or fallback.max_attempts,
            backoff=self.backoff or fallback.backoff,
        )


DEFAULT_POLICY = RetryPolicy(max_attempts=DEFAULT_MAX_ATTEMPTS, backoff=DEFAULT_BACKOFF)


def to_backoff(value: object, *, name: str = "backoff") -> BackoffStrategy:
    """A strategy from a strategy, a number of seconds or a ``timedelta`` (constant delay)."""
    if isinstance(value, BackoffStrategy):
        return value
    if isinstance(value, timedelta) or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    ):
        return BackoffStrategy.constant(value)
    raise TypeError(
        f"{name} must be a BackoffStrategy, a number of seconds or a timedelta, got {value!r}."
    )


def policy_from_options(options: dict[str, Any]) -> RetryPolicy:
    """The backend-level policy; raises ``TypeError``/``ValueError`` naming a bad value."""
    max_attempts = options.get("max_attempts")
    backoff = options.get("backoff")
    return RetryPolicy(
        max_attempts=None if max_attempts is None else check_max_attempts(max_attempts),
        backoff=None if backoff is None else to_backoff(backoff, name='OPTIONS["backoff"]'),
    )


def allowed_modules_from_options(options: dict[str, Any]) -> tuple[str, ...]:
    value: Iterable[object] = options.get("allowed_modules") or ()
    if isinstance(value, str) or not all(isinstance(m, str) and m for m in value):
        raise TypeError(
            f'OPTIONS["allowed_modules"] must be a list of module names, got {value!r}.'
        )
    return tuple(str(m) for m in value)


def task_policy(task: Task) -> RetryPolicy:
    policy = getattr(task.func, POLICY_ATTRIBUTE, None)
    return policy if isinstance(policy, RetryPolicy) else RetryPolicy()


def task_options[T](
    target: T | None = None,
    *,
    max_attempts: int | None = None,
    backoff: BackoffStrategy | timedelta | float | None = None,
) -> T | Callable[[T], T]:
    """Set a task's retry policy; put it under (or over) ``@task``::

    @task
    @task_options(max_attempts=10, backoff=BackoffStrategy.linear(30))
    def sync_account(account_id): ...
    """
    policy = RetryPolicy(
        max_attempts=None if max_attempts is None else check_max_attempts(max_attempts),
        backoff=None if backoff is None else to_backoff(backoff),
    )

    def apply(obj: T) -> T:
        func = obj.func if isinstance(obj, Task) else obj
        if not callable(func):
            raise TypeError(f"@task_options decorates a function or a Task, got {obj!r}.")
        # A Task is a frozen dataclass; its function carries the policy instead, so every
        # Task made from it with .using() keeps it.
        setattr(func, POLICY_ATTRIBUTE, policy)
        return obj

    return apply(target) if target is not None else apply
