"""Executors the benchmark runs: a no-op, and one that stamps when it started."""

from __future__ import annotations

import os
import time

from django_rexecutor import Executor, Job

#: The file ``BenchStamp`` appends to (set by ``bench.py`` for the worker it starts).
STAMP_FILE_ENV = "REXECUTOR_BENCH_STAMPS"


class BenchNoop(Executor):
    """Does nothing: what is left is the queue's own cost per job."""

    name = "bench_noop"

    def execute(self, job: Job) -> None:
        return None


class BenchStamp(Executor):
    """Records the wall-clock time at which ``execute`` was entered, as one appended line.

    The benchmark process runs on the same host, so its ``time.time()`` at enqueue commit and
    this one share a clock. A file append (not a database write, which would open a connection
    per job and load the machine) keeps the measured worker as idle as a no-op one."""

    name = "bench_stamp"

    def execute(self, job: Job) -> None:
        started = time.time()
        fd = os.open(os.environ[STAMP_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job.id} {started!r}\n".encode())
        finally:
            os.close(fd)
