"""LISTEN/NOTIFY wake-ups of ``DjangoBackend.wait_for_jobs`` (``notifiers.postgresql``), and of
an idle worker subscribed to the listener."""

from __future__ import annotations

import threading
import time

import pytest

from demo.jobs import Outcomes, RecordEffect
from django_rexecutor import DjangoBackend, JobStatus
from django_rexecutor.notifiers.postgresql import connection_kwargs, get_notifier
from tests.worker_support import InProcessWorker, status_of, wait_until


def test_connection_kwargs_from_a_databases_entry() -> None:
    kwargs = connection_kwargs(
        {
            "NAME": "jobs",
            "USER": "app",
            "PASSWORD": "secret",
            "HOST": "db.internal",
            "PORT": 6432,
            "OPTIONS": {"sslmode": "require", "isolation_level": 1, "pool": True},
        }
    )
    assert kwargs == {
        "dbname": "jobs",
        "user": "app",
        "password": "secret",
        "host": "db.internal",
        "port": "6432",
        "sslmode": "require",
        "application_name": "django-rexecutor listener",
    }


@pytest.fixture
def backend():
    backend = DjangoBackend()
    yield backend
    # The LISTEN connection must be gone before the test database is dropped.
    get_notifier(backend.alias).stop(wait=5)


@pytest.mark.django_db(transaction=True)
def test_sqlite_and_postgres_waits_are_bounded_by_the_timeout(backend) -> None:
    backend.wait_for_jobs([RecordEffect.name], 0.1)  # starts the listener on PostgreSQL
    started = time.monotonic()
    backend.wait_for_jobs([RecordEffect.name], 0.5)
    assert 0.45 <= time.monotonic() - started < 3


@pytest.mark.needs_notifications
@pytest.mark.django_db(transaction=True)
def test_a_committed_enqueue_wakes_a_waiter_of_that_executor_only(backend) -> None:
    assert get_notifier(backend.alias).start(wait=5)
    woke: dict[str, float] = {}

    def wait(name: str) -> None:
        started = time.monotonic()
        backend.wait_for_jobs([name], 5)
        woke[name] = time.monotonic() - started

    waiters = [threading.Thread(target=wait, args=(n,)) for n in (RecordEffect.name, Outcomes.name)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)
    RecordEffect.enqueue({"label": "wake up"})
    for waiter in waiters:
        waiter.join(10)
    assert woke[RecordEffect.name] < 1.5
    assert woke[Outcomes.name] >= 4.5


@pytest.mark.needs_notifications
@pytest.mark.django_db(transaction=True)
def test_listen_notify_wakes_an_idle_worker(settings) -> None:
    # Polling every 30 s: only a notification can explain a quick pickup.
    settings.REXECUTOR = {**settings.REXECUTOR, "POLL_INTERVAL": 30}
    worker = InProcessWorker(RecordEffect.name)
    try:
        worker.wait_for_output("started")
        time.sleep(0.5)
        latencies = []
        for _ in range(3):
            job_id = RecordEffect.enqueue({"label": "ping"})
            latencies.append(
                wait_until(lambda j=job_id: status_of(j) == JobStatus.COMPLETE, 10, worker)
            )
    finally:
        assert worker.stop() == 0
    assert max(latencies) < 1.0, latencies
