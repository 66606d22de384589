"""Wake-ups (``worker.wakeups.Wakeups``) on their own, in-process against the in-memory backend:
the waker thread while the worker is hungry (the backend's ``wait_for_jobs``, the next scheduled
job), and notifications through the backend's notifier (a ``LocalNotifier``) for new jobs,
cancel requests and reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from django_rexecutor import InMemoryBackend
from django_rexecutor.notifiers.base import CANCEL_CHANNEL, JOBS_CHANNEL
from django_rexecutor.worker.clock import WorkerClock
from django_rexecutor.worker.wakeups import Wakeups
from tests.worker_parts_support import Gate, Quick, claim, enqueue

#: Long enough that a wake-up within a test can only come from what the test did.
POLL = 30.0


class AnnouncingBackend(InMemoryBackend):
    """The in-memory backend as if its notifier reached other processes: the worker then
    subscribes to it instead of blocking in ``wait_for_jobs``."""

    supports_notifications = True


def wakeups_for(
    backend: InMemoryBackend, wake: threading.Event, cancels: list[int] | None = None
) -> Wakeups:
    return Wakeups(
        backend,
        [Quick.name, Gate.name],
        WorkerClock(backend),
        poll_interval=POLL,
        wake=wake,
        on_cancel=lambda: (cancels if cancels is not None else []).append(1),
    )


@pytest.fixture
def wake() -> threading.Event:
    return threading.Event()


@pytest.fixture
def polling(wake: threading.Event) -> Iterator[tuple[InMemoryBackend, Wakeups]]:
    backend = InMemoryBackend()
    wakeups = wakeups_for(backend, wake)
    wakeups.start()
    yield backend, wakeups
    wakeups.stop()


def test_a_hungry_worker_is_woken_by_a_new_job(polling, wake) -> None:
    backend, wakeups = polling
    wakeups.hungry([Quick.name])
    assert not wake.wait(0.2)
    enqueue(backend, Quick)
    assert wake.wait(2)


def test_a_worker_that_is_not_hungry_is_not_woken(polling, wake) -> None:
    backend, wakeups = polling
    enqueue(backend, Quick)
    assert not wake.wait(0.8)
    assert not wakeups.is_hungry


def test_a_hungry_worker_is_woken_when_the_next_scheduled_job_is_due(polling, wake) -> None:
    backend, wakeups = polling
    enqueue(backend, Quick, scheduled_at=timezone.now() + timedelta(seconds=0.4))
    wakeups.hungry([Quick.name])
    # The enqueue above may wake the waker once; what matters is the wake-up at the due time.
    wake.wait(0.2)
    wake.clear()
    assert wake.wait(1.5)


@pytest.fixture
def announcing(wake: threading.Event) -> Iterator[tuple[AnnouncingBackend, Wakeups, list[int]]]:
    backend = AnnouncingBackend()
    cancels: list[int] = []
    wakeups = wakeups_for(backend, wake, cancels)
    wakeups.start()
    yield backend, wakeups, cancels
    wakeups.stop()


def test_a_notification_of_a_new_job_wakes_a_hungry_worker_at_once(announcing, wake) -> None:
    backend, wakeups, _ = announcing
    wakeups.hungry([Quick.name])
    wake.clear()
    enqueue(backend, Quick)
    # Set by the notifier's callback itself, in the enqueuing thread.
    assert wake.is_set()


def test_notifications_of_other_executors_do_not_wake(announcing, wake) -> None:
    backend, wakeups, _ = announcing
    wakeups.hungry([Quick.name])
    wake.clear()
    backend.notifier().notify(JOBS_CHANNEL, "someone.else")
    assert not wake.wait(0.3)


def test_a_notification_while_sated_does_not_wake(announcing, wake) -> None:
    backend, wakeups, _ = announcing
    wakeups.sated()
    backend.notifier().notify(JOBS_CHANNEL, Quick.name)
    assert not wake.wait(0.3)


def test_a_reconnect_of_the_listener_wakes_a_hungry_worker(announcing, wake) -> None:
    backend, wakeups, _ = announcing
    wakeups.hungry([Quick.name])
    wake.clear()
    backend.notifier().notify("", "")  # notifications may have been missed
    assert wake.is_set()


def test_a_cancel_announcement_has_the_running_jobs_checked_at_once(announcing, wake) -> None:
    backend, _, cancels = announcing
    enqueue(backend, Gate)
    [job] = claim(backend, Gate)
    wake.clear()
    backend.cancel_job(job.id, "changed my mind")  # announced on CANCEL_CHANNEL
    assert cancels == [1] and wake.is_set()
    backend.notifier().notify(CANCEL_CHANNEL, "12345")
    assert cancels == [1, 1]


def test_a_stopped_wakeups_unsubscribes_and_its_thread_ends(wake) -> None:
    backend = AnnouncingBackend()
    wakeups = wakeups_for(backend, wake)
    wakeups.start()
    wakeups.hungry([Quick.name])
    notifier = backend.notifier()
    started = time.monotonic()
    wakeups.stop()
    assert notifier.stopped
    assert wakeups._thread is not None and not wakeups._thread.is_alive()
    assert time.monotonic() - started < 1.0
    # A later notifier is a new one: the stopped one announces nothing any more.
    wake.clear()
    notifier.notify(JOBS_CHANNEL, Quick.name)
    assert not wake.is_set()
