"""The heartbeat after an outage: a worker whose own beats failed does not rescue the jobs of
workers that lost the database with it, until they have had ``RESCUE_AFTER`` to beat again.

Without that rule, the first worker back from a database outage longer than ``RESCUE_AFTER``
rescued the running jobs of every other (live) worker, and ran them a second time while the
first copy was still running."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from django_rexecutor import DjangoBackend, InMemoryBackend, JobStatus
from django_rexecutor.backends.base import Backend, EnqueuableJob
from django_rexecutor.worker.clock import WorkerClock
from django_rexecutor.worker.heartbeat import Heartbeat

RESCUE_AFTER = timedelta(seconds=0.6)
EXECUTOR = "heartbeat_test.job"


def _cut_off(base: type[Backend]) -> type[Backend]:
    """``base`` whose heartbeats fail while ``down`` is true, as when the database is gone."""

    class CutOff(base):  # type: ignore[misc,valid-type]
        down = False

        def record_heartbeat(self, worker_id: str, **kwargs: object) -> None:
            if self.down:
                raise OperationalError("connection refused")
            super().record_heartbeat(worker_id, **kwargs)

        def mark_down(self, down: bool) -> None:
            type(self).down = down

    return CutOff


@pytest.fixture(
    params=[
        "memory",
        pytest.param("django", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield _cut_off(InMemoryBackend if request.param == "memory" else DjangoBackend)()
    connections.close_all()


def _other_workers_running_job(backend: Backend) -> int:
    """A job claimed by another worker, ``other``, whose heartbeat then stops."""
    job_id = backend.enqueue(
        EnqueuableJob(EXECUTOR, {}, None, max_attempts=3, scheduled_at=timezone.now())
    )
    backend.record_heartbeat("other", executors=[EXECUTOR], concurrency=1, running=[job_id])
    [job] = backend.claim_jobs("other", {EXECUTOR: 1}, 1)
    assert job.id == job_id
    return job_id


def _heartbeat(backend: Backend) -> Heartbeat:
    running: Collection[int] = ()
    return Heartbeat(
        backend,
        "me",
        lambda: list(running),
        WorkerClock(backend),
        executors=[EXECUTOR],
        concurrency=1,
        interval=timedelta(seconds=0.1),
        rescue_after=RESCUE_AFTER,
    )


def _beat_for(heartbeat: Heartbeat, seconds: float) -> None:
    """Beat every 0.1 s for ``seconds``, as the heartbeat thread does."""
    deadline = time.monotonic() + seconds
    while True:
        heartbeat.beat()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def test_a_live_worker_rescues_a_silent_workers_job(backend: Backend) -> None:
    job_id = _other_workers_running_job(backend)
    heartbeat = _heartbeat(backend)
    _beat_for(heartbeat, RESCUE_AFTER.total_seconds() + 0.2)  # "other" never beats again
    assert heartbeat.rescue() == [job_id]
    assert backend.get_job(job_id).status == JobStatus.RETRYABLE


def test_a_worker_back_from_an_outage_waits_before_rescuing(backend: Backend) -> None:
    job_id = _other_workers_running_job(backend)
    heartbeat = _heartbeat(backend)
    heartbeat.beat()
    backend.mark_down(True)  # type: ignore[attr-defined]
    try:
        with pytest.raises(OperationalError):
            heartbeat.beat()
        time.sleep(RESCUE_AFTER.total_seconds() + 0.2)  # every heartbeat goes stale
    finally:
        backend.mark_down(False)  # type: ignore[attr-defined]
    heartbeat.beat()
    # "other" may be alive and about to beat again: nothing is rescued yet.
    assert heartbeat.rescue() == []
    assert backend.get_job(job_id).status == JobStatus.EXECUTING
    # It stays silent for a whole RESCUE_AFTER more: now it is dead.
    _beat_for(heartbeat, RESCUE_AFTER.total_seconds() + 0.1)
    assert heartbeat.rescue() == [job_id]


def test_a_worker_paused_past_rescue_after_waits_before_rescuing(backend: Backend) -> None:
    # A process stopped (SIGSTOP, a VM pause) sees the same as an outage: a gap in its beats.
    job_id = _other_workers_running_job(backend)
    heartbeat = _heartbeat(backend)
    heartbeat.beat()
    time.sleep(RESCUE_AFTER.total_seconds() + 0.2)
    heartbeat.beat()
    assert heartbeat.rescue() == []
    assert backend.get_job(job_id).status == JobStatus.EXECUTING
    _beat_for(heartbeat, RESCUE_AFTER.total_seconds() + 0.1)
    assert heartbeat.rescue() == [job_id]
