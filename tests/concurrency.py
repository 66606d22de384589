"""Running one call in many threads at once, for tests of races between enqueues."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection

from django_rexecutor import JobId


def hammer(threads: int, rounds: int, enqueue: Callable[[], JobId]) -> list[JobId]:
    """Run ``enqueue`` ``rounds`` times in each of ``threads`` threads, every round started by
    all threads at once; each thread uses (and closes) its own database connection."""
    barrier = threading.Barrier(threads)
    results: list[JobId] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=60)
                job_id = enqueue()
                with lock:
                    results.append(job_id)
        except Exception as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results
