"""Per-worker metrics: what the worker's parts report, and their Prometheus exposition.

The parts call a ``WorkerMetrics`` (the base records nothing, so a worker without
``--metrics-port`` pays one no-op call per event). ``PrometheusWorkerMetrics`` keeps counters
and histograms in its own registry and serves them with prometheus-client's HTTP server
(``rexecutor_worker --metrics-port N``); it needs the ``prometheus`` extra."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from ..job import Job

#: Attempt durations, in seconds: from a quick job to a long batch.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: Claim round trips, in seconds.
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class WorkerMetrics:
    """What a worker reports as it runs; the base ignores it all."""

    def attempt_started(self, job: Job) -> None:
        """An attempt of ``job`` started."""

    def attempt_finished(self, job: Job, outcome: str, duration: float) -> None:
        """An attempt's result was recorded as ``outcome`` after ``duration`` seconds."""

    def claimed(self, seconds: float, asked: int, got: int) -> None:
        """A claim round trip took ``seconds``, asking for ``asked`` jobs and getting
        ``got``."""

    def watch_running(self, running: Callable[[], int]) -> None:
        """``running()`` tells how many attempts are running right now."""


#: The metrics of a worker that exports none.
NO_METRICS = WorkerMetrics()


def require_prometheus_client() -> Any:
    """The ``prometheus_client`` module, or a ``ConfigurationError`` naming the extra."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            "Prometheus metrics need the prometheus-client package: "
            "pip install 'django-rexecutor[prometheus]'."
        ) from exc
    return prometheus_client


class PrometheusWorkerMetrics(WorkerMetrics):
    """Counters and histograms of one worker process, in a registry of their own."""

    def __init__(self) -> None:
        prom = require_prometheus_client()
        self.registry = prom.CollectorRegistry()
        labels = {"registry": self.registry}
        self.started = prom.Counter(
            "rexecutor_worker_attempts_started",
            "Attempts this worker started, by executor.",
            ["executor"],
            **labels,
        )
        self.finished = prom.Counter(
            "rexecutor_worker_attempts_finished",
            "Attempts this worker finished, by executor and recorded outcome.",
            ["executor", "outcome"],
            **labels,
        )
        self.duration = prom.Histogram(
            "rexecutor_worker_attempt_duration_seconds",
            "How long attempts took, from start to recorded result, by executor.",
            ["executor"],
            buckets=DURATION_BUCKETS,
            **labels,
        )
        self.running = prom.Gauge(
            "rexecutor_worker_running_attempts", "Attempts running now.", **labels
        )
        self.claims = prom.Histogram(
            "rexecutor_worker_claim_duration_seconds",
            "Claim round trips to the store.",
            buckets=CLAIM_BUCKETS,
            **labels,
        )
        self.claimed_jobs = prom.Counter(
            "rexecutor_worker_claimed_jobs", "Jobs this worker claimed.", **labels
        )
        self.info = prom.Info("rexecutor_worker", "This worker's identity.", **labels)
        self._server: Any = None

    def attempt_started(self, job: Job) -> None:
        self.started.labels(job.executor).inc()

    def attempt_finished(self, job: Job, outcome: str, duration: float) -> None:
        self.finished.labels(job.executor, outcome).inc()
        self.duration.labels(job.executor).observe(duration)

    def claimed(self, seconds: float, asked: int, got: int) -> None:
        self.claims.observe(seconds)
        if got:
            self.claimed_jobs.inc(got)

    def watch_running(self, running: Callable[[], int]) -> None:
        self.running.set_function(running)

    def serve(self, port: int, *, worker: str, addr: str = "0.0.0.0") -> None:
        """Serve the metrics of ``worker`` on ``port`` (any path) from a daemon thread."""
        prom = require_prometheus_client()
        self.info.info({"worker": worker})
        self._server = prom.start_http_server(port, addr=addr, registry=self.registry)

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        if isinstance(server, tuple):  # (server, thread) since prometheus-client 0.20
            server[0].shutdown()
            server[0].server_close()
