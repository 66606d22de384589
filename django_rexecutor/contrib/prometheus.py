"""Prometheus metrics of the job store, as a view to mount in ``urls.py``::

    from django_rexecutor.contrib.prometheus import metrics_view

    urlpatterns = [path("rexecutor/metrics", metrics_view)]

It answers staff users' sessions, and requests with ``Authorization: Bearer <token>`` when
``REXECUTOR["METRICS_TOKEN"]`` is set; anyone else gets 403. Every scrape reads the store once
(``snapshot.take_snapshot``): jobs per executor and status (waiting and running counted
exactly; on a big PostgreSQL table finished ones are estimated from a sample), queue lag,
discarded jobs of the last hour and live workers. Per-worker counters and histograms come from
each worker's own endpoint (``rexecutor_worker --metrics-port``). Needs the ``prometheus``
extra."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImproperlyConfigured(
        "django_rexecutor.contrib.prometheus needs the prometheus-client package: "
        "pip install 'django-rexecutor[prometheus]'."
    ) from exc

from ..backends import get_backend
from ..conf import rexecutor_settings
from ..registry import all_executors
from ..snapshot import Snapshot, take_snapshot
from ..status import JobStatus


class StoreCollector:
    """The store's state as metric families, read once per ``collect``."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        snapshot = self._snapshot or take_snapshot(get_backend(), sorted(all_executors()))
        jobs = GaugeMetricFamily(
            "rexecutor_jobs",
            "Jobs by executor and status (finished statuses of a big table are estimates).",
            labels=["executor", "status"],
        )
        lag = GaugeMetricFamily(
            "rexecutor_queue_lag_seconds",
            "How long the oldest due ready job of the executor has waited (0: none waiting).",
            labels=["executor"],
        )
        discarded = GaugeMetricFamily(
            "rexecutor_jobs_discarded_last_hour",
            "Jobs discarded (failed on their last attempt) in the last hour.",
            labels=["executor"],
        )
        estimated = GaugeMetricFamily(
            "rexecutor_jobs_estimated",
            "1 if rexecutor_jobs of this status is an estimate, else 0.",
            labels=["status"],
        )
        for name, health in sorted(snapshot.executors.items()):
            for status in JobStatus:
                jobs.add_metric([name, status.value], health.counts.get(status.value, 0))
            lag.add_metric([name], 0.0 if health.lag is None else health.lag.total_seconds())
            discarded.add_metric([name], health.discarded_last_hour)
        for status in JobStatus:
            estimated.add_metric([status.value], 1 if status.value in snapshot.estimated else 0)
        workers = GaugeMetricFamily("rexecutor_live_workers", "Workers with a recorded heartbeat.")
        workers.add_metric([], len(snapshot.workers))
        running = GaugeMetricFamily(
            "rexecutor_worker_running_jobs",
            "Jobs each live worker runs, as of its last heartbeat.",
            labels=["worker"],
        )
        age = GaugeMetricFamily(
            "rexecutor_worker_heartbeat_age_seconds",
            "Seconds since each live worker's last heartbeat.",
            labels=["worker"],
        )
        for w in snapshot.workers:
            running.add_metric([w.worker_id], len(w.running))
            age.add_metric([w.worker_id], max(0.0, (snapshot.at - w.heartbeat_at).total_seconds()))
        yield from (jobs, estimated, lag, discarded, workers, running, age)


def allowed(request: HttpRequest) -> bool:
    """A staff user's session, or the configured bearer token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = rexecutor_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of the store's metrics."""
    if not allowed(request):
        return HttpResponse("Forbidden: staff session or bearer token required.\n", status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
