"""Running attempts and recording their results never stops the worker: results that cannot be
written as they are, raising signal receivers, exceptions that cannot be printed, async jobs that
lose their database connection, results that arrive after the job was rescued, and cancelling
running jobs (cooperatively, or at once without a grace).

The worker runs in the test process (``InProcessWorker``; the fallback for a write the backend
refuses for good against a backend that refuses it), except where PostgreSQL kills the
worker's connections: that one is a real worker process."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from demo.jobs import FetchExchangeRates, RecordEffect, SlowAsync, SlowSync
from demo.models import SideEffect
from django_rexecutor import DjangoBackend, InMemoryBackend, JobStatus, signals
from django_rexecutor.backends.base import TRUNCATED, ErrorDetails
from django_rexecutor.models import JobErrorRecord, JobRecord, WorkerRecord
from django_rexecutor.status import ERROR_TYPE_MAX_LENGTH
from django_rexecutor.worker import Worker
from tests.attempts_testapp.jobs import (
    AsyncOrm,
    BadStrAsync,
    BadStrSync,
    Cooperative,
    CooperativeAsync,
    Unwritable,
    _broken_receiver,
)
from tests.worker_support import (
    InProcessWorker,
    WorkerProcess,
    kill_other_connections,
    status_of,
    wait_until,
)

SETTINGS = "tests.settings_attempts"
FINISHED = (JobStatus.COMPLETE, JobStatus.RETRYABLE, JobStatus.DISCARDED, JobStatus.CANCELLED)


def start(**options: Any) -> InProcessWorker:
    worker = InProcessWorker(**options)
    worker.wait_for_output("started")
    return worker


def start_process(
    manage_py: list[str], env: dict[str, str], *args: str, **options: Any
) -> WorkerProcess:
    worker = WorkerProcess(manage_py, env, *args, settings=SETTINGS, **options)
    worker.wait_for_output("started")
    return worker


def finished(job_id: int) -> bool:
    return status_of(job_id) in FINISHED


def assert_alive_and_stops_cleanly(worker: WorkerProcess | InProcessWorker) -> None:
    """A job enqueued now still completes, and SIGTERM then ends the worker cleanly: exit 0,
    nothing left executing, no worker row left behind."""
    probe = RecordEffect.enqueue({"label": "still alive"})
    wait_until(lambda: status_of(probe) == JobStatus.COMPLETE, 15, worker)
    assert worker.stop() == 0, worker.output
    assert not JobRecord.objects.filter(status=JobStatus.EXECUTING).exists()
    assert not WorkerRecord.objects.exists()


# -- item: results that cannot be written as they are -------------------------------------------
@pytest.mark.parametrize("case", ["nul_message", "long_error_type", "int_backoff", "deleted"])
@pytest.mark.django_db(transaction=True)
def test_a_result_that_cannot_be_written_as_is_does_not_stop_the_worker(case) -> None:
    worker = start()
    other = RecordEffect.enqueue({"label": "other", "sleep": 0.5})
    job_id = Unwritable.enqueue({"case": case})
    before = timezone.now()
    try:
        if case == "deleted":
            wait_until(lambda: SideEffect.objects.filter(job_id=job_id).exists(), 15, worker)
            JobRecord.objects.filter(pk=job_id).delete()
            worker.wait_for_output(f"job {job_id} {Unwritable.name} attempt 1: deleted while")
        else:
            wait_until(lambda: finished(job_id), 15, worker)
        wait_until(lambda: status_of(other) == JobStatus.COMPLETE, 15, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    if case == "deleted":
        assert not JobRecord.objects.filter(pk=job_id).exists()
        return
    record = JobRecord.objects.get(pk=job_id)
    assert record.status == JobStatus.RETRYABLE
    (error,) = record.error_records.all()
    if case == "nul_message":
        assert error.message == "ValueError: bad byte \\x00 in the message"
        assert "\x00" not in error.traceback and "bad byte \\x00" in error.traceback
    elif case == "long_error_type":
        assert len(error.error_type) == ERROR_TYPE_MAX_LENGTH
        assert error.error_type.startswith("very_long_type_xxx")
        assert error.error_type.endswith(TRUNCATED)
    else:
        # The backoff's 120 (seconds) is used as it is.
        delay = (record.scheduled_at - before).total_seconds()
        assert 115 < delay < 130, delay


# -- item: signal receivers that raise -----------------------------------------------------------
@pytest.mark.parametrize("broken", ["job_started", "job_finished"])
@pytest.mark.django_db(transaction=True)
def test_a_raising_signal_receiver_cannot_break_the_worker(broken) -> None:
    signal = getattr(signals, broken)
    signal.connect(_broken_receiver, dispatch_uid="attempts-broken")
    try:
        worker = start()
        try:
            jobs = [RecordEffect.enqueue({"label": "sync"}), FetchExchangeRates.enqueue()]
            wait_until(lambda: all(status_of(j) == JobStatus.COMPLETE for j in jobs), 15, worker)
            assert_alive_and_stops_cleanly(worker)
        finally:
            worker.kill()
    finally:
        signal.disconnect(dispatch_uid="attempts-broken")
    assert (
        f"{broken} receiver tests.attempts_testapp.jobs._broken_receiver failed for job "
        f"{jobs[0]} {RecordEffect.name}: RuntimeError: this receiver is broken"
    ) in worker.output


# -- item: exceptions whose __str__ raises -------------------------------------------------------
@pytest.mark.parametrize("executor", [BadStrSync, BadStrAsync], ids=["sync", "async"])
@pytest.mark.django_db(transaction=True)
def test_an_exception_that_cannot_be_printed_still_ends_its_job(executor) -> None:
    # One slot: if the failed attempt kept it, the next job would never run.
    worker = start(concurrency=1)
    try:
        job_id = executor.enqueue()
        wait_until(lambda: finished(job_id), 15, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    record = JobRecord.objects.get(pk=job_id)
    assert record.status == JobStatus.DISCARDED
    (error,) = record.error_records.all()
    assert (error.error_type, error.message) == ("panic", "BadStr: <BadStr.__str__() failed>")
    assert "BadStr" in error.traceback


# -- item: async jobs and lost database connections ----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_async_job_reaches_the_database_after_the_previous_one_lost_its_connection() -> None:
    worker = start()
    try:
        broken = AsyncOrm.enqueue({"break": True})
        wait_until(lambda: status_of(broken) == JobStatus.COMPLETE, 15, worker)
        after = AsyncOrm.enqueue({})
        wait_until(lambda: finished(after), 15, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    record = JobRecord.objects.get(pk=after)
    assert (record.status, record.attempt) == (JobStatus.COMPLETE, 1), list(
        record.error_records.values_list("message", flat=True)
    )


@pytest.mark.server_db
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_async_jobs_reach_the_database_again_after_its_connections_are_killed(
    manage_py, subprocess_env
) -> None:
    # Persistent connections: the async ORM's connection is open when it is killed.
    worker = start_process(manage_py, subprocess_env, persistent_connections=True)
    try:
        first = AsyncOrm.enqueue({})
        wait_until(lambda: status_of(first) == JobStatus.COMPLETE, 15, worker)
        assert kill_other_connections(), "the worker had no connection to kill"
        time.sleep(0.3)
        # The next attempt may fail on the dead connection (as a sync job's would); the
        # worker must then replace it, so its retry and every later job reach the database.
        second = AsyncOrm.enqueue({})
        wait_until(lambda: finished(second), 20, worker)
        wait_until(lambda: status_of(second) == JobStatus.COMPLETE, 10, worker)
        third = AsyncOrm.enqueue({})
        wait_until(lambda: finished(third), 10, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    assert JobRecord.objects.get(pk=second).attempt <= 2
    assert (status_of(third), JobRecord.objects.get(pk=third).attempt) == ("complete", 1)


# -- item: cooperative cancel of running jobs ----------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cooperative_sync_job_sees_the_cancel_request_and_cleans_up(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup"
    worker = start()  # the default grace of 5 s
    try:
        job_id = Cooperative.enqueue({"seconds": 30, "marker": str(marker)})
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 15, worker)
        time.sleep(0.2)
        Cooperative.cancel_job(job_id, "changed my mind")
        took = wait_until(lambda: status_of(job_id) == JobStatus.CANCELLED, 10, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    assert marker.read_text() == "cleaned up"
    assert took < 2.5  # about a second, with room for a loaded machine; far below the grace
    assert "after its cancel request, interrupting it" not in worker.output
    error = JobErrorRecord.objects.get(job_id=job_id)
    assert (error.error_type, error.message) == ("cancelled", "changed my mind")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sync_job_that_ignores_the_cancel_request_is_interrupted_after_the_grace(
    settings,
) -> None:
    grace = 1.5
    settings.REXECUTOR = {**settings.REXECUTOR, "CANCEL_GRACE": grace}
    worker = start()
    try:
        job_id = SlowSync.enqueue({"seconds": 30})
        wait_until(lambda: SideEffect.objects.filter(job_id=job_id).exists(), 15, worker)
        SlowSync.cancel_job(job_id, "changed my mind")
        took = wait_until(lambda: status_of(job_id) == JobStatus.CANCELLED, 10, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    assert grace <= took < grace + 3
    assert f"job {job_id} {SlowSync.name}: still running 1.5s after its cancel request" in (
        worker.output
    )
    assert not SideEffect.objects.filter(job_id=job_id, label="finished").exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_async_job_is_cancelled_at_once_and_can_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup"
    worker = start()
    try:
        job_id = CooperativeAsync.enqueue({"seconds": 30, "marker": str(marker)})
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 15, worker)
        time.sleep(0.2)
        CooperativeAsync.cancel_job(job_id, "changed my mind")
        took = wait_until(lambda: status_of(job_id) == JobStatus.CANCELLED, 10, worker)
        assert_alive_and_stops_cleanly(worker)
    finally:
        worker.kill()
    assert took < 2.5
    assert marker.read_text() == "cleaned up"


# -- item: results that arrive too late, and cancel requests that need no grace ----------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stale_result_changes_nothing() -> None:
    job_id = SlowSync.enqueue({"seconds": 2, "blocking": True})
    worker = start(concurrency=1)
    try:
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 20, worker)
        # Another worker decides this one is dead (threshold 0) and rescues its job while
        # attempt 1 is still running; then attempt 2 runs and completes.
        assert DjangoBackend().rescue_orphaned_jobs(timedelta(0)) == [job_id]
        wait_until(lambda: status_of(job_id) == JobStatus.COMPLETE, 20, worker)
        worker.wait_for_output(f"job {job_id} test.slow_sync attempt 1/3 stale")
    finally:
        assert worker.stop() == 0
    record = JobRecord.objects.get(pk=job_id)
    assert record.attempt == 2
    assert [(e.attempt, e.error_type) for e in record.error_records.all()] == [(1, "orphaned")]


@pytest.mark.parametrize("executor", [SlowSync, SlowAsync], ids=["sync", "async"])
@pytest.mark.django_db(transaction=True)
def test_cancel_a_running_job(settings, executor) -> None:
    job_id = executor.enqueue({"seconds": 30})
    # SlowSync ignores job.cancel_requested: without a grace it is interrupted at once.
    settings.REXECUTOR = {**settings.REXECUTOR, "CANCEL_GRACE": 0}
    worker = start()
    try:
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 20, worker)
        executor.cancel_job(job_id, "changed my mind")
        took = wait_until(lambda: status_of(job_id) == JobStatus.CANCELLED, 10, worker)
    finally:
        assert worker.stop() == 0
    assert took < 3.0  # "within about a second", with room for a loaded CI machine
    record = JobRecord.objects.get(pk=job_id)
    assert record.cancelled_at is not None
    assert [(e.attempt, e.error_type) for e in record.error_records.all()] == [(1, "cancelled")]
    assert not SideEffect.objects.filter(job_id=job_id, label="finished").exists()


# -- a write the backend refuses for good (in-process) -------------------------------------------
class RefusingBackend(InMemoryBackend):
    """Refuses every retryable write (as PostgreSQL refuses a value it cannot store), and with
    ``refuse_all`` every discarded write too."""

    def __init__(self, *, refuse_all: bool = False) -> None:
        super().__init__()
        self.refuse_all = refuse_all

    def mark_job_retryable(self, *args: Any, **kwargs: Any) -> bool:
        raise ValueError("cannot store this")

    def mark_job_discarded(self, *args: Any, **kwargs: Any) -> bool:
        if self.refuse_all:
            raise ValueError("cannot store anything")
        return super().mark_job_discarded(*args, **kwargs)


def _burst(backend: InMemoryBackend) -> Worker:
    worker = Worker(
        [Unwritable.name, FetchExchangeRates.name],
        backend=backend,
        burst=True,
        cron=False,
        pruner=False,
        handle_signals=False,
    )
    assert worker.run() == 0
    return worker


@pytest.mark.django_db
def test_a_refused_write_is_recorded_as_a_failure_explaining_why() -> None:
    backend = RefusingBackend()
    failing = Unwritable.enqueue({"case": "plain"}, backend=backend)
    other = FetchExchangeRates.enqueue(backend=backend)
    worker = _burst(backend)
    job = backend.get_job(failing)
    assert job.status == JobStatus.DISCARDED
    assert [(e.error_type, e.message) for e in job.errors] == [
        (
            "panic",
            "the worker could not record this attempt's error result: "
            "ValueError: cannot store this",
        )
    ]
    assert backend.get_job(other).status == JobStatus.COMPLETE
    assert worker.stats == {"discarded": 1, "complete": 1}
    assert not backend.live_workers()


@pytest.mark.django_db
def test_a_job_whose_writes_are_all_refused_is_logged_and_left_to_rescue(caplog) -> None:
    backend = RefusingBackend(refuse_all=True)
    failing = Unwritable.enqueue({"case": "plain"}, backend=backend)
    other = FetchExchangeRates.enqueue(backend=backend)
    _burst(backend)
    assert backend.get_job(other).status == JobStatus.COMPLETE
    assert backend.get_job(failing).status == JobStatus.EXECUTING
    assert f"job {failing} {Unwritable.name} attempt 1: nothing could be recorded" in caplog.text
    assert not backend.live_workers()  # so the next rescue pass returns the job to the queue


def test_error_details_are_made_storable_on_creation() -> None:
    error = ErrorDetails("t" * 500, "a\x00b", "\udcff")
    assert len(error.error_type) == ERROR_TYPE_MAX_LENGTH
    assert (error.message, error.traceback) == ("a\\x00b", "\\udcff")
