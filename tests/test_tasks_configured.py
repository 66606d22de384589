"""Which task backends are ours, and the task signals they send, as seen from beneath
``backend.py``: the executors and the task loading find our backends through the class that
``RexecutorTaskBackend`` registers, without importing it."""

from __future__ import annotations

import logging

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("RexecutorTaskBackend needs Django 6 (django.tasks)", allow_module_level=True)

import test_tasks_defs as defs
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings

from django_rexecutor.backends import get_backend
from django_rexecutor.outcomes import Cancel, Done
from django_rexecutor.tasks import RexecutorTaskBackend, TaskNotAllowed, executor_for_queue
from django_rexecutor.tasks.configured import backend_class, is_backend_class, rexecutor_backend

BACKEND = "django_rexecutor.tasks.RexecutorTaskBackend"


class CustomTaskBackend(RexecutorTaskBackend):
    """A project's own subclass: still one of ours."""


def test_our_backend_class_and_its_subclasses_are_ours() -> None:
    assert backend_class() is RexecutorTaskBackend
    assert is_backend_class(RexecutorTaskBackend)
    assert is_backend_class(CustomTaskBackend)
    assert not is_backend_class(ImmediateBackend)
    assert not is_backend_class(BACKEND)  # a path, not the class


def test_the_configured_backend_is_found_by_its_alias() -> None:
    tasks = {
        "default": {"BACKEND": BACKEND},
        "custom": {"BACKEND": f"{__name__}.CustomTaskBackend"},
    }
    with override_settings(TASKS=tasks):
        assert isinstance(rexecutor_backend("default"), RexecutorTaskBackend)
        assert isinstance(rexecutor_backend("custom"), CustomTaskBackend)


def test_an_unknown_alias_or_a_backend_not_ours_is_refused() -> None:
    tasks = {
        "default": {"BACKEND": BACKEND},
        "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    }
    with override_settings(TASKS=tasks):
        with pytest.raises(TaskNotAllowed, match="TASKS has no backend 'nope'"):
            rexecutor_backend("nope")
        with pytest.raises(TaskNotAllowed, match="is ImmediateBackend, not a Rexecutor"):
            rexecutor_backend("immediate")


@pytest.mark.django_db
def test_task_signals_are_sent_with_rexecutor_task_backend_as_sender() -> None:
    """As docs/tasks.md says, so receivers may connect with ``sender=RexecutorTaskBackend``."""
    seen: list[str] = []

    def receiver(signal, sender, task_result, **kwargs):
        seen.append(f"{signal_names[signal]} {task_result.id}")

    signal_names = {task_enqueued: "enqueued", task_started: "started", task_finished: "finished"}
    for signal in signal_names:
        signal.connect(receiver, sender=RexecutorTaskBackend)
    try:
        result = defs.add.enqueue(2, 40)
        run_one()
    finally:
        for signal in signal_names:
            signal.disconnect(receiver, sender=RexecutorTaskBackend)
    assert seen == [f"enqueued {result.id}", f"started {result.id}", f"finished {result.id}"]


@pytest.mark.django_db
def test_a_failing_signal_receiver_is_logged_and_the_task_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("receiver is broken")

    task_started.connect(broken)
    try:
        result = defs.add.enqueue(1, 2)
        with caplog.at_level(logging.ERROR, logger="django_rexecutor.tasks"):
            outcome = run_one()
    finally:
        task_started.disconnect(broken)
    assert outcome == Done(result=3)
    [record] = [r for r in caplog.records if r.name == "django_rexecutor.tasks"]
    assert f"failed for task result {result.id}" in record.getMessage()
    assert record.exc_info is not None and "receiver is broken" in str(record.exc_info[1])


def run_one() -> Done | Cancel:
    """Claim the next job of the default queue and run one attempt in-process."""
    [job] = get_backend().claim_jobs("test-worker", {"django_tasks.default": 1}, 1)
    return executor_for_queue("default")().execute(job)
