"""Tasks used by the django.tasks backend tests, at module level as Django requires.

Worker subprocesses import this module by its dotted path (``test_tasks_defs``), which the
test project allows through ``TASKS["default"]["OPTIONS"]["allowed_modules"]``."""

from __future__ import annotations

import time
from typing import Any

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("django.tasks needs Django 6", allow_module_level=True)

from django.tasks import TaskContext, task

from django_rexecutor.tasks import task_options


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=50)
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def attempt_number(context: TaskContext) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True)
@task_options(max_attempts=3, backoff=0.05)
def flaky(context: TaskContext, succeed_on: int) -> str:
    if context.attempt < succeed_on:
        raise ValueError(f"failing attempt {context.attempt}")
    return f"ok on attempt {context.attempt}"


@task_options(max_attempts=2, backoff=0)
@task
def always_fails() -> None:
    raise RuntimeError("this task never works")


@task
@task_options(max_attempts=1)
def returns_a_set() -> set[int]:
    return {1, 2}


@task
@task_options(max_attempts=1)
def sleepy(seconds: float) -> float:
    # Short sleeps, so the worker can interrupt it between them when it is cancelled.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return seconds


def not_a_task() -> str:
    return "plain functions must never be run from a payload"
