"""Executors and middleware the observability tests configure by dotted path (so they live in
a module of their own, imported once as ``tests.observe_support``)."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from django_rexecutor import Executor, Job
from django_rexecutor.outcomes import Done

SEEN: list[tuple[str, object]] = []


class MiddlewareSync(Executor):
    name = "test.mw_sync"
    max_attempts = 3

    def execute(self, job: Job) -> Done:
        SEEN.append(("execute", job.id))
        return Done(result={"n": job.data})


class MiddlewareAsync(Executor):
    name = "test.mw_async"

    async def execute(self, job: Job) -> None:
        SEEN.append(("aexecute", job.id))


def outer(get_outcome):
    def middleware(job):
        SEEN.append(("outer:before", job.id))
        outcome = get_outcome(job)
        SEEN.append(("outer:after", type(outcome).__name__))
        return outcome

    return middleware


def inner(get_outcome):
    def middleware(job):
        SEEN.append(("inner:before", job.id))
        return get_outcome(job)

    return middleware


class Both:
    """Serves sync and async jobs, as Django's dual middleware do."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_outcome):
        self.get_outcome = get_outcome
        if iscoroutinefunction(get_outcome):
            markcoroutinefunction(self)

    def __call__(self, job):
        if iscoroutinefunction(self):
            return self.__acall__(job)
        SEEN.append(("both:sync", job.id))
        return self.get_outcome(job)

    async def __acall__(self, job):
        SEEN.append(("both:async", job.id))
        return await self.get_outcome(job)


class RaiseBefore:
    def __init__(self, get_outcome):
        self.get_outcome = get_outcome

    def __call__(self, job):
        if job.executor == MiddlewareSync.name:
            raise RuntimeError("middleware broke before execute")
        return self.get_outcome(job)


class RaiseAfter:
    def __init__(self, get_outcome):
        self.get_outcome = get_outcome

    def __call__(self, job):
        outcome = self.get_outcome(job)
        if job.executor == MiddlewareSync.name:
            raise RuntimeError("middleware broke after execute")
        return outcome


class Tagging:
    """Adds a marker to the metadata of every job enqueued."""

    def __init__(self, get_outcome):
        self.get_outcome = get_outcome

    def __call__(self, job):
        return self.get_outcome(job)

    @staticmethod
    def around_enqueue(jobs, insert):
        from dataclasses import replace

        SEEN.append(("enqueue", len(jobs)))
        return insert([replace(j, metadata={**(j.metadata or {}), "tagged": True}) for j in jobs])


class Progressing(Executor):
    """Reports progress ``data["steps"]`` times in quick succession (within the throttle's
    second), then waits ``data.get("hold", 0)`` seconds, so a test can look while it runs."""

    name = "test.progressing"

    def execute(self, job: Job) -> None:
        import time

        steps = job.data["steps"]
        for step in range(1, steps + 1):
            job.report_progress(step / steps, note=f"step {step} of {steps}")
        # Short sleeps: an interrupt (a graceful stop) lands between two of them.
        deadline = time.monotonic() + job.data.get("hold", 0)
        while time.monotonic() < deadline:
            time.sleep(0.02)


class ProgressingAsync(Executor):
    name = "test.progressing_async"

    async def execute(self, job: Job) -> None:
        for step in range(1, 4):
            await job.areport_progress(step / 4, note=f"step {step}")


class BadProgress(Executor):
    name = "test.bad_progress"
    max_attempts = 1

    def execute(self, job: Job) -> None:
        job.report_progress(job.data)
