"""``drain_jobs``: run every ready job inline, for tests.

It claims jobs like a worker (so the backend's rules apply unchanged) and runs them one at a
time in the calling thread with the worker's execution module, so outcomes are mapped exactly
as in production. ``async def`` executors run to completion on a private event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from .. import registry
from ..backends import resolve_backend
from ..backends.base import Backend
from ..progress import ProgressReporter
from ..worker.execution import (
    STALE,
    AttemptResult,
    attempt_timeout,
    is_async_executor,
    log_outcome,
    result_of_exception,
    run_async,
    run_sync,
    send_finished,
    send_started,
    timeout_result,
    write_result,
)

if TYPE_CHECKING:
    from ..executor import Executor
    from ..job import Job

_BATCH = 100
_CAPACITY = 1_000_000


def drain_jobs(
    executor: type[Executor] | str | None = None, *, backend: Backend | None = None
) -> dict[str, int]:
    """Run ready jobs (of ``executor`` — a class or a name — or of every registered executor)
    until none is ready, including retries and snoozes that fall due meanwhile. Never re-raises
    a job's exception. Returns outcome → count (``"complete"``, ``"retryable"``,
    ``"discarded"``, ``"cancelled"``, ``"snoozed"``)."""
    target = resolve_backend(backend)
    if executor is None:
        executors = registry.all_executors()
    else:
        name = executor if isinstance(executor, str) else executor.name
        executors = {name: registry.get_executor(name)}
    worker_id = f"drain:{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
    counts: Counter[str] = Counter()
    # A heartbeat row keeps a concurrently running worker from rescuing our claims.
    target.record_heartbeat(worker_id, executors=list(executors), concurrency=1)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        while True:
            capacity = dict.fromkeys(executors, _CAPACITY)
            jobs = target.claim_jobs(worker_id, capacity, _BATCH)
            if not jobs:
                break
            for job in jobs:
                executor_cls = executors[job.executor]
                if is_async_executor(executor_cls) and loop is None:
                    loop = asyncio.new_event_loop()
                outcome = _run_one(target, executor_cls, job, loop)
                if outcome != STALE:
                    counts[outcome] += 1
    finally:
        if loop is not None:
            loop.close()
        target.remove_worker(worker_id)
    return dict(counts)


def _run_one(
    backend: Backend,
    executor_cls: type[Executor],
    job: Job,
    loop: asyncio.AbstractEventLoop | None,
) -> str:
    started = time.monotonic()
    job._backend = backend  # what ``job.upstream_results()`` asks
    instance: Executor | None = None
    result: AttemptResult
    try:
        instance = executor_cls()
        limit = attempt_timeout(instance, job)
    except Exception as exc:  # noqa: BLE001 - a broken executor fails its job, not the caller
        result, limit = result_of_exception(exc), None
    else:
        job._progress = ProgressReporter(backend, job)
        send_started(executor_cls, job)
        if is_async_executor(executor_cls):
            assert loop is not None
            result = loop.run_until_complete(_with_timeout(instance, job, limit))
        else:
            result = run_sync(instance, job)
            # A sync job cannot be interrupted inline; one that overran is still a time-out.
            if limit is not None and time.monotonic() - started > limit.total_seconds():
                result = timeout_result(limit)
    if job._progress is not None:
        job._progress.flush()
    outcome = write_result(backend, instance, job, result)
    duration = time.monotonic() - started
    log_outcome(job, outcome, duration, result)
    if outcome != STALE:
        send_finished(executor_cls, job, outcome, duration)
    return outcome


async def _with_timeout(instance: Executor, job: Job, limit: timedelta | None) -> AttemptResult:
    if limit is None:
        return await run_async(instance, job)
    # run_async turns the cancellation into a result, so ask the scope whether it expired.
    async with asyncio.timeout(limit.total_seconds()) as scope:
        result = await run_async(instance, job)
    return timeout_result(limit) if scope.expired() else result
