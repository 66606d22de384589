"""Executors and helpers for the in-process tests of the worker's parts
(tests/test_worker_parts_*.py): everything runs against ``InMemoryBackend``, no database."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

from django.utils import timezone

from django_rexecutor import Cancel, Executor, InMemoryBackend, Job
from django_rexecutor.backends.base import EnqueuableJob

#: Set by a test to let every ``Gate`` job end.
GATE = threading.Event()


class Quick(Executor):
    """Ends at once; ``data["outcome"]``: ``"error"`` raises, ``"cancel"`` cancels itself."""

    name = "parts.quick"
    max_attempts = 2

    def execute(self, job: Job) -> Cancel | None:
        outcome = (job.data or {}).get("outcome")
        if outcome == "error":
            raise ValueError("boom")
        if outcome == "cancel":
            return Cancel("not needed")
        return None


class QuickAsync(Executor):
    name = "parts.quick_async"

    async def execute(self, job: Job) -> None:
        await asyncio.sleep(0)


class Gate(Executor):
    """Runs until ``GATE`` is set, or ``job.cancel_requested`` when ``data["cooperative"]``
    (then cancels itself), checking both every 10 ms; interruptible (pure Python)."""

    name = "parts.gate"
    max_concurrency = 2

    def execute(self, job: Job) -> Cancel | None:
        data = job.data or {}
        while not GATE.wait(0.01):
            if data.get("cooperative") and job.cancel_requested:
                return Cancel("stopped by itself")
        return None


class Looping(Executor):
    """Busy for ``data["seconds"]`` (10 by default) with a ``data["timeout"]``; a pure Python
    loop, so an interrupt stops it at once."""

    name = "parts.looping"
    max_attempts = 1

    def timeout(self, job: Job) -> timedelta | None:
        seconds = (job.data or {}).get("timeout")
        return None if seconds is None else timedelta(seconds=seconds)

    def execute(self, job: Job) -> None:
        deadline = time.monotonic() + (job.data or {}).get("seconds", 10)
        while time.monotonic() < deadline:
            time.sleep(0.005)


class SleepingAsync(Executor):
    """Awaits ``data["seconds"]`` (10 by default); ``data["timeout"]`` limits the attempt."""

    name = "parts.sleeping_async"
    max_attempts = 1

    def timeout(self, job: Job) -> timedelta | None:
        seconds = (job.data or {}).get("timeout")
        return None if seconds is None else timedelta(seconds=seconds)

    async def execute(self, job: Job) -> None:
        await asyncio.sleep((job.data or {}).get("seconds", 10))


class Unbuildable(Executor):
    """An executor whose instances cannot be made: the job fails, the worker does not."""

    name = "parts.unbuildable"
    max_attempts = 1

    def __init__(self) -> None:
        raise RuntimeError("no instance for you")

    def execute(self, job: Job) -> None:
        raise AssertionError("never built, never run")


EXECUTORS: dict[str, type[Executor]] = {
    cls.name: cls for cls in (Quick, QuickAsync, Gate, Looping, SleepingAsync, Unbuildable)
}


def enqueue(
    backend: InMemoryBackend, executor: type[Executor], data: Any = None, **options: Any
) -> int:
    options.setdefault("max_attempts", executor.max_attempts)
    options.setdefault("scheduled_at", timezone.now())
    return backend.enqueue(EnqueuableJob(executor.name, data or {}, None, **options))


def claim(backend: InMemoryBackend, executor: type[Executor], count: int = 1) -> list[Job]:
    """Claim up to ``count`` ready jobs of ``executor`` for the worker ``"me"``."""
    return backend.claim_jobs("me", {executor.name: count}, count)


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)
