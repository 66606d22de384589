"""One read of the queue's health, through ``Backend`` only: jobs per executor and status,
queue lag, recent failures, live workers (and paused executors where the backend knows them).
``rexecutor_status`` prints it; the Prometheus view exposes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .backends.base import Backend
from .backends.values import WorkerInfo
from .status import JobStatus

#: The window of ``Snapshot.discarded_last_hour``.
HOUR = timedelta(hours=1)


@dataclass
class ExecutorHealth:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    #: How long its oldest due ready job has waited; ``None`` when none is due.
    lag: timedelta | None = None
    discarded_last_hour: int = 0
    paused: bool = False


@dataclass
class Snapshot:
    at: datetime
    executors: dict[str, ExecutorHealth]
    estimated: frozenset[str]
    workers: list[WorkerInfo]
    #: Whether the backend reports paused executors at all.
    knows_paused: bool = False

    @property
    def max_lag(self) -> timedelta | None:
        lags = [e.lag for e in self.executors.values() if e.lag is not None]
        return max(lags) if lags else None

    @property
    def discarded_last_hour(self) -> int:
        return sum(e.discarded_last_hour for e in self.executors.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "estimated_statuses": sorted(self.estimated),
            "max_lag_seconds": _seconds(self.max_lag),
            "discarded_last_hour": self.discarded_last_hour,
            "executors": {
                name: {
                    "counts": {s.value: e.counts.get(s.value, 0) for s in JobStatus},
                    "lag_seconds": _seconds(e.lag),
                    "discarded_last_hour": e.discarded_last_hour,
                    "paused": e.paused if self.knows_paused else None,
                }
                for name, e in sorted(self.executors.items())
            },
            "workers": [
                {
                    "worker": w.worker_id,
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "executors": list(w.executors),
                    "concurrency": w.concurrency,
                    "started_at": w.started_at.isoformat(),
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                    "heartbeat_age_seconds": _seconds(self.at - w.heartbeat_at),
                    "running": list(w.running),
                }
                for w in self.workers
            ],
        }


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(max(0.0, value.total_seconds()), 3)


def take_snapshot(backend: Backend, executors: list[str] | None = None) -> Snapshot:
    """Read the store's state now (in its clock); ``executors``: names that are listed even
    without jobs (e.g. the registered ones)."""
    now = backend.current_time()
    counted = backend.job_counts()
    rows: dict[str, ExecutorHealth] = {n: ExecutorHealth(n) for n in executors or ()}

    def row(name: str) -> ExecutorHealth:
        return rows.setdefault(name, ExecutorHealth(name))

    for (executor, status), n in counted.counts.items():
        row(executor).counts[status] = n
    for executor, oldest in backend.oldest_ready_at().items():
        row(executor).lag = max(timedelta(0), now - oldest)
    for (executor, status), n in backend.finished_since(now - HOUR).items():
        if status == JobStatus.DISCARDED.value:
            row(executor).discarded_last_hour = n
    paused_of = getattr(backend, "paused_executors", None)
    knows_paused = callable(paused_of)
    if knows_paused:
        for name in paused_of():  # type: ignore[misc]
            row(name).paused = True
    return Snapshot(now, rows, frozenset(counted.estimated), backend.live_workers(), knows_paused)
