"""Executors the benchmark runs: a no-op, and one that stamps when it started."""

from __future__ import annotations

import time

from django.db import connection

from django_rexecutor import Executor, Job

#: Side table written by ``BenchStamp``; created by ``bench.py`` (no migration: benchmark only).
STAMP_TABLE = "rexecutor_bench_stamp"


class BenchNoop(Executor):
    """Does nothing: what is left is the queue's own cost per job."""

    name = "bench_noop"

    def execute(self, job: Job) -> None:
        return None


class BenchStamp(Executor):
    """Records the wall-clock time at which ``execute`` was entered. The benchmark process
    runs on the same host, so its ``time.time()`` at enqueue commit and this one share a clock;
    the insert happens after the reading and is not part of the measured latency."""

    name = "bench_stamp"

    def execute(self, job: Job) -> None:
        started = time.time()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {STAMP_TABLE} (job_id, started) VALUES (%s, %s)", [job.id, started]
            )
