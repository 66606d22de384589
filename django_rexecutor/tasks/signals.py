"""Sending Django's task signals (``task_enqueued``, ``task_started``, ``task_finished``) for
our tasks, with ``RexecutorTaskBackend`` as the sender."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal
from django.tasks import TaskResult

from .configured import backend_class

logger = logging.getLogger("django_rexecutor.tasks")


def send_task_signal(signal: Signal, result: TaskResult[..., Any]) -> None:
    """Send ``signal`` for ``result``; a failing receiver is logged, never fails (and so
    re-runs) the task."""
    for receiver, response in signal.send_robust(sender=backend_class(), task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "%r receiver %r failed for task result %s",
                signal,
                receiver,
                result.id,
                exc_info=response,
            )
