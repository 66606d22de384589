"""Example executors. django_rexecutor imports every installed app's ``jobs.py`` (as the admin
does with ``admin.py``), so defining an ``Executor`` subclass here registers it.

The first group is what ``manage.py rexecutor_demo`` enqueues; the second group exists for the
test suite, whose worker subprocesses load this module too."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from django_rexecutor import (
    BackoffStrategy,
    Cancel,
    Done,
    ExecutionError,
    Executor,
    Job,
    RateLimit,
    Snooze,
    UniquenessCriteria,
)

from .models import SideEffect

QUICK_RETRY = BackoffStrategy.constant(timedelta(milliseconds=200))


# -- the demo ---------------------------------------------------------------------------------
class SendWelcomeEmail(Executor):
    """Always succeeds."""

    name = "demo.send_welcome_email"

    def execute(self, job: Job) -> None:
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="email sent")


class FlakyImport(Executor):
    """Fails its first attempt, succeeds on the retry."""

    name = "demo.flaky_import"
    max_attempts = 3
    backoff_strategy = QUICK_RETRY

    def execute(self, job: Job) -> None:
        if job.attempt == 1:
            raise ConnectionError("upstream API timed out (it will work next time)")


class PaymentDeclined(ExecutionError):
    error_type = "payment_declined"


class ChargeCard(Executor):
    """Always fails with a typed error, so it is discarded after its last attempt."""

    name = "demo.charge_card"
    max_attempts = 2
    backoff_strategy = QUICK_RETRY

    def execute(self, job: Job) -> None:
        raise PaymentDeclined(f"card ending {job.data['last4']} declined")


class WaitForStock(Executor):
    """Snoozes once (the attempt is given back), then succeeds."""

    name = "demo.wait_for_stock"

    def execute(self, job: Job) -> Snooze | None:
        _, created = SideEffect.objects.get_or_create(
            job_id=job.id, label="stock checked", defaults={"attempt": job.attempt}
        )
        if created:
            return Snooze(timedelta(milliseconds=300))
        return None


class CleanupAccount(Executor):
    """Decides there is nothing to do and cancels itself."""

    name = "demo.cleanup_account"

    def execute(self, job: Job) -> Cancel:
        return Cancel("account already deleted")


class FetchExchangeRates(Executor):
    """An ``async def`` executor, run on the worker's event loop."""

    name = "demo.fetch_exchange_rates"

    async def execute(self, job: Job) -> None:
        await asyncio.sleep(0.05)


# -- used by the test suite -------------------------------------------------------------------
class RecordEffect(Executor):
    """Records one side effect per attempt; ``data["sleep"]`` seconds of work first."""

    name = "test.record"

    def execute(self, job: Job) -> None:
        data = job.data or {}
        if data.get("sleep"):
            time.sleep(data["sleep"])
        SideEffect.objects.create(
            job_id=job.id,
            attempt=job.attempt,
            label=str(data.get("label", "")),
            worker=job.claimed_by or "",
        )


class Outcomes(Executor):
    """Produces the outcome named in ``data["outcome"]``."""

    name = "test.outcomes"
    max_attempts = 2
    backoff_strategy = BackoffStrategy.constant(timedelta(seconds=60))

    def execute(self, job: Job) -> object:
        outcome = job.data["outcome"]
        if outcome == "done":
            return None
        if outcome == "cancel":
            return Cancel("not needed")
        if outcome == "snooze":
            if job.attempt == 1 and not SideEffect.objects.filter(job_id=job.id).exists():
                SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="snoozed")
                return Snooze(timedelta(milliseconds=100))
            return None
        if outcome == "typed":
            raise PaymentDeclined("declined")
        if outcome == "panic":
            raise ValueError("boom")
        if outcome == "bad_return":
            return 42
        raise AssertionError(f"unknown outcome {outcome!r}")


class SlowSync(Executor):
    """Sleeps in small steps (interruptible), or in one C call with ``data["blocking"]``."""

    name = "test.slow_sync"
    max_attempts = 3

    def timeout(self, job: Job) -> timedelta | None:
        limit = (job.data or {}).get("timeout")
        return timedelta(seconds=limit) if limit else None

    def execute(self, job: Job) -> None:
        data = job.data or {}
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="started")
        if data.get("blocking"):
            time.sleep(data["seconds"])
        else:
            deadline = time.monotonic() + data["seconds"]
            while time.monotonic() < deadline:
                time.sleep(0.01)
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="finished")


class SlowAsync(Executor):
    """Awaits ``data["seconds"]``; honours ``data["timeout"]``."""

    name = "test.slow_async"
    max_attempts = 3

    def timeout(self, job: Job) -> timedelta | None:
        limit = (job.data or {}).get("timeout")
        return timedelta(seconds=limit) if limit else None

    async def execute(self, job: Job) -> None:
        await asyncio.sleep(job.data["seconds"])


class Limited(Executor):
    """At most two at once per worker; records when each attempt ran."""

    name = "test.limited"
    max_concurrency = 2

    def execute(self, job: Job) -> None:
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="start")
        time.sleep(0.2)
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="end")


# -- used by the chaos suite (tests/chaos) ----------------------------------------------------
class ChaosEffect(Executor):
    """A short job with one database side effect per attempt (duplicates must show)."""

    name = "chaos.effect"
    max_attempts = 10
    # An attempt whose own connection is killed fails; retry it soon, not after minutes.
    backoff_strategy = QUICK_RETRY

    def execute(self, job: Job) -> None:
        seconds = (job.data or {}).get("sleep")
        if seconds:
            time.sleep(seconds)
        SideEffect.objects.create(
            job_id=job.id, attempt=job.attempt, label="effect", worker=job.claimed_by or ""
        )


class ChaosPoison(Executor):
    """Kills its own worker process on every attempt."""

    name = "chaos.poison"
    max_attempts = 3

    def execute(self, job: Job) -> None:
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label="poison")
        os.kill(os.getpid(), signal.SIGKILL)


class ChaosExclusive(Executor):
    """Runs ``data["seconds"]`` and notices when another attempt of the same job runs at the
    same time: a lock file per job in ``data["dir"]`` (files, so an unreachable database does
    not hide anything). Every attempt appends a line to ``<dir>/runs``."""

    name = "chaos.exclusive"
    max_attempts = 10

    def execute(self, job: Job) -> None:
        folder = Path(job.data["dir"])
        lock = folder / f"{job.id}.running"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(folder / "overlaps", "a") as out:
                out.write(f"{job.id} {job.attempt} {os.getpid()}\n")
            fd = -1
        started = time.time()
        try:
            deadline = time.monotonic() + job.data["seconds"]
            while time.monotonic() < deadline:
                time.sleep(0.01)
            with open(folder / "runs", "a") as out:
                out.write(f"{job.id} {job.attempt} {os.getpid()} {started:.3f} {time.time():.3f}\n")
        finally:
            if fd >= 0:
                os.close(fd)
                lock.unlink(missing_ok=True)


class ChaosUnique(Executor):
    """At most one live job at a time."""

    name = "chaos.unique"
    uniqueness_criteria = UniquenessCriteria.by_executor()

    def execute(self, job: Job) -> None:
        return None


class ChaosNeedsData(Executor):
    """Reads ``data["n"]``: a row whose data is not an object fails its attempt."""

    name = "chaos.needs_data"
    max_attempts = 1

    def execute(self, job: Job) -> None:
        SideEffect.objects.create(job_id=job.id, attempt=job.attempt, label=str(job.data["n"]))


class AppendLine(Executor):
    """Appends ``"<id> <attempt>"`` to the file ``data["path"]`` after ``data["sleep"]``
    seconds: counts executions without the database, for tests that take the database away."""

    name = "test.append_line"

    def execute(self, job: Job) -> None:
        time.sleep(job.data.get("sleep", 0))
        # One short write to a file opened for appending: lines from concurrent jobs and
        # processes never interleave.
        with open(job.data["path"], "a") as out:
            out.write(f"{job.id} {job.attempt}\n")


class WorkflowStepEffect(Executor):
    """A workflow step for the tests: records ``start:<step>`` and ``end:<step>`` side effects
    (their ``created_at`` and ids give the order the steps ran in), sleeps ``data["sleep"]``
    seconds between them, fails for good if ``data["fail"]``, and returns its step's name with
    its upstream results."""

    name = "test.workflow_step"
    max_attempts = 1

    def execute(self, job: Job) -> Done:
        data = job.data or {}
        step = job.step or ""
        SideEffect.objects.create(
            job_id=job.id, attempt=job.attempt, label=f"start:{step}", worker=job.claimed_by or ""
        )
        if data.get("sleep"):
            time.sleep(data["sleep"])
        if data.get("fail"):
            raise ExecutionError("step failed on purpose", error_type="test_failure")
        upstream = job.upstream_results()
        SideEffect.objects.create(
            job_id=job.id, attempt=job.attempt, label=f"end:{step}", worker=job.claimed_by or ""
        )
        return Done(result={"step": step, "value": data.get("value"), "upstream": upstream})


# -- flow control (tests/test_flow_control_workers.py) ----------------------------------------
class FlowRecord(Executor, abstract=True):
    """Appends ``start <id> <time>`` and ``end <id> <time>`` to ``data["path"]`` around
    ``data["seconds"]`` of work: each job's own record of when it ran."""

    def execute(self, job: Job) -> None:
        path = job.data["path"]
        with open(path, "a") as out:
            out.write(f"start {job.id} {time.time():.4f} {job.data.get('account', '')}\n")
        time.sleep(job.data.get("seconds", 0))
        with open(path, "a") as out:
            out.write(f"end {job.id} {time.time():.4f} {job.data.get('account', '')}\n")


class FlowGlobal(FlowRecord):
    name = "test.flow_global"
    global_concurrency = 2


class FlowRate(FlowRecord):
    name = "test.flow_rate"
    rate_limit = RateLimit(allowed=3, period=timedelta(seconds=2))


class FlowPartition(FlowRecord):
    name = "test.flow_partition"
    global_concurrency = 1
    partition_by = "data.account"


class FlowPaused(FlowRecord):
    name = "test.flow_paused"
