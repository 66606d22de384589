"""One process of the unique race: ``THREADS`` threads enqueue the same unique job per round,
all at the wall-clock instants given on the command line. Prints one JSON line of results."""

from __future__ import annotations

import json
import sys
import threading
import time

import django


def main() -> None:
    django.setup()
    from django.db import connection

    from demo.jobs import ChaosUnique
    from django_rexecutor import UniquenessCriteria

    threads, start_at, rounds, gap = (
        int(sys.argv[1]),
        float(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def enqueue() -> None:
        connection.ensure_connection()  # connect before the start, so the enqueues collide
        for round_ in range(rounds):
            time.sleep(max(0.0, start_at + round_ * gap - time.time()))
            try:
                job = ChaosUnique.enqueue(
                    {"round": round_}, unique=UniquenessCriteria.by_key({"chaos-round": round_})
                )
                outcome = {"round": round_, "id": int(job), "inserted": bool(job.inserted)}
            except Exception as exc:  # noqa: BLE001 - reported, the parent fails on it
                outcome = {"round": round_, "error": f"{type(exc).__name__}: {exc}"}
            with lock:
                results.append(outcome)
        connection.close()

    workers = [threading.Thread(target=enqueue) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
