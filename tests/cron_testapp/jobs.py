"""Executors used by the cron and pruner tests; registered when this module is imported."""

from __future__ import annotations

import time

from django_rexecutor import Executor
from django_rexecutor.job import Job


class CronTick(Executor):
    name = "cron_test.tick"
    max_attempts = 2

    def execute(self, job: Job) -> None:
        return None


class CronWork(Executor):
    """A short job, so a worker is busy completing them while the pruner deletes."""

    name = "cron_test.work"

    def execute(self, job: Job) -> None:
        time.sleep(float((job.data or {}).get("sleep", 0)))


class CronOther(Executor):
    name = "cron_test.other"

    def execute(self, job: Job) -> None:
        return None
