"""Executors used by the tests of running attempts (tests/test_worker_attempts.py); registered
when this module is imported: by the worker subprocesses (the app is installed by
``tests.settings_attempts``) and by the test module itself.

``REXECUTOR_TEST_BROKEN_RECEIVER`` (``job_started`` or ``job_finished``) connects a receiver of
that signal that always raises, in the process that sees the variable."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from demo.models import SideEffect
from django_rexecutor import BackoffStrategy, Cancel, ExecutionError, Executor, Job, signals

QUICK_RETRY = BackoffStrategy.constant(timedelta(milliseconds=200))


class Unwritable(Executor):
    """Fails in a way whose record used to stop the worker (``data["case"]``)."""

    name = "attempts.unwritable"
    max_attempts = 2
    backoff_strategy = BackoffStrategy.constant(timedelta(seconds=60))

    def backoff(self, job: Job) -> Any:
        if job.data["case"] == "int_backoff":
            return 120  # seconds, as a number: accepted like every duration
        return super().backoff(job)

    def execute(self, job: Job) -> None:
        case = job.data["case"]
        if case == "nul_message":
            raise ValueError("bad byte \x00 in the message")
        if case == "long_error_type":
            raise ExecutionError("typed", error_type="very_long_type_" + "x" * 200)
        if case == "deleted":
            SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="started")
            time.sleep(job.data.get("seconds", 1.5))
        raise ValueError(f"{case} fails")


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class BadStrSync(Executor):
    name = "attempts.bad_str_sync"
    max_attempts = 1

    def execute(self, job: Job) -> None:
        raise BadStr("unprintable")


class BadStrAsync(Executor):
    name = "attempts.bad_str_async"
    max_attempts = 1

    async def execute(self, job: Job) -> None:
        await asyncio.sleep(0)
        raise BadStr("unprintable")


def _close_raw_connection() -> None:
    """Close this thread's database connection behind Django's back, as a server restart or a
    network failure does."""
    assert connection.connection is not None
    connection.connection.close()


class AsyncOrm(Executor):
    """Uses the async ORM; ``data["break"]`` then loses its connection."""

    name = "attempts.async_orm"
    max_attempts = 3
    backoff_strategy = QUICK_RETRY

    async def execute(self, job: Job) -> None:
        await SideEffect.objects.acreate(job_id=job.id, attempt=job.attempt, label="async orm")
        if job.data.get("break"):
            await sync_to_async(_close_raw_connection)()


class Cooperative(Executor):
    """Checks ``job.cancel_requested`` every 0.1 s; when set, cleans up (writes the file
    ``data["marker"]``) and stops."""

    name = "attempts.cooperative"

    def execute(self, job: Job) -> Cancel | None:
        deadline = time.monotonic() + job.data["seconds"]
        while time.monotonic() < deadline:
            if job.cancel_requested:
                Path(job.data["marker"]).write_text("cleaned up")
                return Cancel("stopped by itself")
            time.sleep(0.1)
        return None


class CooperativeAsync(Executor):
    """Awaits; cleans up (writes ``data["marker"]``) when it is cancelled."""

    name = "attempts.cooperative_async"

    async def execute(self, job: Job) -> None:
        try:
            await asyncio.sleep(job.data["seconds"])
        except asyncio.CancelledError:
            Path(job.data["marker"]).write_text("cleaned up")
            raise


def _broken_receiver(sender: Any, **kwargs: Any) -> None:
    raise RuntimeError("this receiver is broken")


_broken = os.environ.get("REXECUTOR_TEST_BROKEN_RECEIVER")
if _broken:
    getattr(signals, _broken).connect(_broken_receiver, dispatch_uid="attempts-broken")
