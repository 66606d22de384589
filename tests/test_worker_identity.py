"""Who a worker is and what time it is: one identity per process (a name is only a label), claims
whose reply was lost are given back unspent, and every time the worker writes or compares is
the database's, whatever its host's clock says.

In the test process, except where a process is the point: a killed one's restart, and a host
clock that is off (it is shifted for the whole worker process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from demo.jobs import Outcomes, RecordEffect, SlowSync
from demo.models import SideEffect
from django_rexecutor import DjangoBackend, Executor, InMemoryBackend, Job, JobStatus
from django_rexecutor.backends.base import Backend, EnqueuableJob
from django_rexecutor.exceptions import ConfigurationError
from django_rexecutor.models import JobRecord, WorkerRecord
from django_rexecutor.worker import Worker
from tests.worker_support import InProcessWorker, WorkerProcess, status_of, wait_until

FAST_RESCUE = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_AFTER": 2}

#: (job id, attempt) of every attempt ``Remember`` ran, in this process.
RAN: list[tuple[int, int]] = []


class Remember(Executor):
    """Notes each attempt in ``RAN``; sleeps ``data["sleep"]`` seconds first."""

    name = "identity_test.remember"

    def execute(self, job: Job) -> None:
        threading.Event().wait((job.data or {}).get("sleep", 0))
        RAN.append((job.id, job.attempt))


def _losing_replies(base: type[Backend]) -> type[Backend]:
    """``base`` whose claims that include a job of ``lose_reply_for`` commit, and then fail as
    a dropped connection does: the rows are claimed, the worker never sees them."""

    class LosesClaimReplies(base):  # type: ignore[misc,valid-type]
        lose_reply_for: set[int] = set()

        def claim_jobs(self, worker_id: str, capacity: Mapping[str, int], limit: int) -> list[Job]:
            jobs = super().claim_jobs(worker_id, capacity, limit)
            lost = {j.id for j in jobs} & self.lose_reply_for
            if lost:
                self.lose_reply_for -= lost
                raise OperationalError("server closed the connection unexpectedly")
            return jobs

    return LosesClaimReplies


@pytest.fixture(
    params=[
        "memory",
        # The worker's threads have their own connections: they need committed rows.
        pytest.param("django", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def flaky_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "django":
        yield _losing_replies(DjangoBackend)()
    else:
        yield _losing_replies(InMemoryBackend)()
    RAN.clear()


def _enqueue(backend: Backend, **data: object) -> int:
    return backend.enqueue(
        EnqueuableJob(Remember.name, data, None, max_attempts=1, scheduled_at=timezone.now())
    )


def _worker(backend: Backend, **options: object) -> Worker:
    return Worker(
        [Remember.name], backend=backend, cron=False, pruner=False, handle_signals=False,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


def _run_in_thread(worker: Worker) -> None:
    try:
        worker.run()
    finally:
        connections.close_all()  # the test database cannot be dropped while it is open


def test_a_claim_whose_reply_was_lost_is_run_without_spending_its_attempt(
    flaky_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    running = _enqueue(flaky_backend, sleep=1.0)
    worker = _worker(flaky_backend, concurrency=2)
    thread = threading.Thread(target=_run_in_thread, args=(worker,))
    thread.start()
    try:
        wait_until(lambda: worker.running_jobs == [running], 10)
        lost = _enqueue(flaky_backend)
        flaky_backend.lose_reply_for = {lost}  # type: ignore[attr-defined]
        wait_until(lambda: (lost, 1) in RAN and (running, 1) in RAN, 15)
        wait_until(
            lambda: (
                {flaky_backend.get_job(j).status for j in (running, lost)} == {JobStatus.COMPLETE}
            ),
            10,
        )
    finally:
        worker.stop()
        thread.join(10)
    # max_attempts=1: a spent attempt would have discarded the job that never ran. The job
    # that ran meanwhile under the same identity was left alone.
    assert sorted(RAN) == sorted([(running, 1), (lost, 1)])
    for job_id in (running, lost):
        job = flaky_backend.get_job(job_id)
        assert (job.status, job.attempt, job.errors) == (JobStatus.COMPLETE, 1, [])
    assert f"Gave back 1 job(s) claimed in a round trip whose reply was lost: {lost}" in (
        caplog.text
    )


def test_a_burst_gives_back_a_lost_claim_and_runs_it(flaky_backend: Backend) -> None:
    job_id = _enqueue(flaky_backend)
    flaky_backend.lose_reply_for = {job_id}  # type: ignore[attr-defined]
    assert _worker(flaky_backend, burst=True).run() == 0
    job = flaky_backend.get_job(job_id)
    assert (job.status, job.attempt, job.errors) == (JobStatus.COMPLETE, 1, [])
    assert [(job_id, 1)] == RAN


def _with_outage(base: type[Backend]) -> type[Backend]:
    """``base`` whose claims and result writes fail while ``outage`` is set, as on a
    connection the database dropped; heartbeats and rescue (other connections) still work."""

    class MainConnectionDown(base):  # type: ignore[misc,valid-type]
        outage = threading.Event()
        failed_claims = 0

        def claim_jobs(self, worker_id: str, capacity: Mapping[str, int], limit: int) -> list[Job]:
            if self.outage.is_set():
                type(self).failed_claims += 1
                raise OperationalError("terminating connection due to administrator command")
            return super().claim_jobs(worker_id, capacity, limit)

        def complete_jobs(self, claims: object) -> int:
            if self.outage.is_set():
                raise OperationalError("the database system is shutting down")
            return super().complete_jobs(claims)

    return MainConnectionDown


@pytest.mark.parametrize(
    "base",
    [InMemoryBackend, pytest.param(DjangoBackend, marks=pytest.mark.django_db(transaction=True))],
    ids=["memory", "django"],
)
def test_a_job_whose_result_waits_out_an_outage_is_not_rescued(settings, base) -> None:
    # A claim fails while a job runs; the job ends while its result cannot be written; heartbeats
    # and rescue passes go on meanwhile. Nothing of this worker may be taken for orphaned.
    settings.REXECUTOR = {**settings.REXECUTOR, "HEARTBEAT_INTERVAL": 0.1, "RESCUE_AFTER": 5}
    backend = _with_outage(base)()
    ended = _enqueue(backend, sleep=0.8)
    worker = _worker(backend, concurrency=2)
    thread = threading.Thread(target=_run_in_thread, args=(worker,))
    thread.start()
    try:
        wait_until(lambda: worker.running_jobs == [ended], 10)
        backend.outage.set()  # type: ignore[attr-defined]
        waiting = _enqueue(backend)  # wakes the worker, whose claim fails
        wait_until(lambda: backend.failed_claims > 0 and (ended, 1) in RAN, 10)  # type: ignore[attr-defined]
        time.sleep(0.5)  # several beats and rescue passes with the result still unwritten
        backend.outage.clear()  # type: ignore[attr-defined]
        wait_until(
            lambda: {backend.get_job(j).status for j in (ended, waiting)} == {JobStatus.COMPLETE},
            15,
        )
    finally:
        backend.outage.clear()  # type: ignore[attr-defined]
        worker.stop()
        thread.join(10)
        RAN.clear()
    for job_id in (ended, waiting):
        job = backend.get_job(job_id)
        assert (job.status, job.attempt, job.errors) == (JobStatus.COMPLETE, 1, [])


def test_each_worker_process_has_its_own_identity() -> None:
    backend = InMemoryBackend()
    first, second = (_worker(backend, name="web-1") for _ in range(2))
    assert first.name == second.name == "web-1"
    assert first.worker_id != second.worker_id
    assert first.worker_id.startswith("web-1@") and second.worker_id.startswith("web-1@")


def test_a_name_too_long_for_an_identity_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="246"):
        _worker(InMemoryBackend(), name="w" * 247)
    assert len(_worker(InMemoryBackend(), name="w" * 246).worker_id) == 255


@pytest.mark.django_db(transaction=True)
def test_two_workers_with_the_same_name_both_work() -> None:
    ids = RecordEffect.enqueue_many([{"data": {"sleep": 0.2}} for _ in range(16)])
    twins = [InProcessWorker(name="twin", concurrency=2) for _ in range(2)]
    try:
        wait_until(lambda: WorkerRecord.objects.count() == 2, 20, *twins)
        wait_until(
            lambda: JobRecord.objects.filter(status=JobStatus.COMPLETE).count() == len(ids),
            30,
            *twins,
        )
    finally:
        codes = [twin.stop() for twin in twins]
    assert codes == [0, 0]
    per_job = list(SideEffect.objects.values_list("job_id", flat=True))
    assert sorted(per_job) == sorted(ids)
    workers = set(SideEffect.objects.values_list("worker", flat=True))
    assert len(workers) == 2 and all(w.startswith("twin@") for w in workers)
    assert not JobRecord.objects.filter(error_records__isnull=False).exists()


# -- real worker processes ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_restart_under_the_same_name_rescues_the_killed_incarnations_job(
    manage_py, subprocess_env
) -> None:
    job_id = RecordEffect.enqueue({"sleep": 2, "label": "slow"})
    victim = WorkerProcess(manage_py, subprocess_env, "--name", "box", overrides=FAST_RESCUE)
    try:
        wait_until(lambda: status_of(job_id) == JobStatus.EXECUTING, 20, victim)
    finally:
        victim.kill()
    [dead] = WorkerRecord.objects.values_list("worker_id", flat=True)
    # Same host, same name: the new incarnation must not keep the dead one's job alive.
    heir = WorkerProcess(manage_py, subprocess_env, "--name", "box", overrides=FAST_RESCUE)
    try:
        wait_until(lambda: status_of(job_id) == JobStatus.COMPLETE, 30, heir)
    finally:
        assert heir.stop() == 0
    record = JobRecord.objects.get(pk=job_id)
    assert record.attempt == 2
    assert [(e.attempt, e.error_type) for e in record.error_records.all()] == [(1, "orphaned")]
    [effect] = SideEffect.objects.filter(job_id=job_id)
    assert effect.attempt == 2 and effect.worker.startswith("box@") and effect.worker != dead


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shift", [-60, 600], ids=["behind-60s", "ahead-10min"])
def test_a_worker_keeps_to_the_database_clock_whatever_its_host_clock_says(
    manage_py, subprocess_env, shift: int
) -> None:
    # Rescue after 2 s: a worker stamping its rows by a clock 60 s behind would rescue its own
    # running job on every beat.
    slow = SlowSync.enqueue({"seconds": 3})
    later = RecordEffect.enqueue({"label": "later"}, schedule_in=timedelta(minutes=5))
    failing = Outcomes.enqueue({"outcome": "panic"})  # retried 60 s after it fails
    env = dict(subprocess_env, REXECUTOR_TEST_CLOCK_SHIFT=str(shift))
    worker = WorkerProcess(manage_py, env, overrides=FAST_RESCUE)
    try:
        wait_until(lambda: status_of(failing) == JobStatus.RETRYABLE, 20, worker)
        failed_at = timezone.now()
        wait_until(lambda: status_of(slow) == JobStatus.COMPLETE, 20, worker)
        worker.wait_for_output("ahead of" if shift > 0 else "behind")
    finally:
        assert worker.stop() == 0
    # The 3 s job ran once and was never taken for orphaned.
    assert list(SideEffect.objects.filter(job_id=slow).values_list("label", "attempt")) == [
        ("started", 1),
        ("finished", 1),
    ]
    assert not JobRecord.objects.get(pk=slow).error_records.exists()
    # Not due for 5 minutes by the database's clock: not claimed, however late the host thinks.
    assert (status_of(later), JobRecord.objects.get(pk=later).attempt) == ("scheduled", 0)
    # The retry is due 60 s after the failure, by the database's clock.
    retry_in = JobRecord.objects.get(pk=failing).scheduled_at - failed_at
    assert timedelta(seconds=50) < retry_in <= timedelta(seconds=60), retry_in
