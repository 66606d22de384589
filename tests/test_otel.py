"""OpenTelemetry, with the real SDK and its in-memory exporter and reader: a producer span at
enqueue, a consumer span per attempt that is its child (across a real worker), attributes of
the messaging conventions, span status from the outcome, and the messaging metrics."""

from __future__ import annotations

import pytest
from django.test import override_settings

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from demo.jobs import Outcomes, RecordEffect
from django_rexecutor import InMemoryBackend, JobStatus
from django_rexecutor.contrib.otel import TRACE_CONTEXT_KEY
from django_rexecutor.testing import drain_jobs
from tests.observe_support import MiddlewareAsync, MiddlewareSync
from tests.worker_support import InProcessWorker, status_of, wait_until

OTEL = {"MIDDLEWARE": ["django_rexecutor.contrib.otel.OpenTelemetryMiddleware"]}
EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


def _install_sdk() -> None:
    """The global providers can be set once per process: this module sets them once."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


_install_sdk()


@pytest.fixture(autouse=True)
def _fresh() -> None:
    EXPORTER.clear()


def spans(kind: SpanKind) -> list:
    return [s for s in EXPORTER.get_finished_spans() if s.kind == kind]


def metric_points() -> dict[str, list]:
    data = READER.get_metrics_data()
    out: dict[str, list] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_enqueue_makes_a_producer_span_and_the_attempt_a_consumer_child() -> None:
    backend = InMemoryBackend()
    tracer = trace.get_tracer("test")
    with override_settings(REXECUTOR=OTEL):
        with tracer.start_as_current_span("request") as request:
            job_id = MiddlewareSync.enqueue(1, backend=backend)
        assert TRACE_CONTEXT_KEY in backend.get_job(job_id).metadata
        drain_jobs(backend=backend)
    [producer] = spans(SpanKind.PRODUCER)
    [consumer] = spans(SpanKind.CONSUMER)
    assert producer.name == "send test.mw_sync"
    assert producer.parent.span_id == request.get_span_context().span_id
    assert producer.attributes["messaging.system"] == "django_rexecutor"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert producer.attributes["messaging.destination.name"] == "test.mw_sync"
    assert producer.attributes["messaging.message.id"] == str(job_id)
    assert consumer.name == "process test.mw_sync"
    assert consumer.context.trace_id == request.get_span_context().trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.message.id"] == str(job_id)
    assert consumer.attributes["django_rexecutor.attempt"] == 1
    assert consumer.attributes["django_rexecutor.outcome"] == "done"
    assert consumer.status.status_code == StatusCode.UNSET


def test_a_failing_attempt_has_an_error_status_and_async_jobs_are_traced() -> None:
    backend = InMemoryBackend()
    with override_settings(REXECUTOR=OTEL):
        failing = Outcomes.enqueue({"outcome": "typed"}, backend=backend)
        MiddlewareAsync.enqueue(backend=backend)
        many = MiddlewareSync.enqueue_many([{"data": 1}, {"data": 2}], backend=backend)
        drain_jobs(Outcomes, backend=backend)
        drain_jobs(MiddlewareAsync, backend=backend)
    assert backend.get_job(failing).status == JobStatus.RETRYABLE
    by_name = {s.name: s for s in spans(SpanKind.CONSUMER)}
    failed = by_name["process test.outcomes"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "payment_declined"
    assert failed.events[0].name == "exception"
    assert by_name["process test.mw_async"].attributes["django_rexecutor.outcome"] == "done"
    batch = [s for s in spans(SpanKind.PRODUCER) if "messaging.batch.message_count" in s.attributes]
    assert batch[0].attributes["messaging.batch.message_count"] == 2
    parents = {backend.get_job(i).metadata[TRACE_CONTEXT_KEY]["traceparent"][:52] for i in many}
    assert parents == {f"00-{batch[0].context.trace_id:032x}-{batch[0].context.span_id:016x}"}
    points = metric_points()
    consumed = points["messaging.client.consumed.messages"]
    assert any(
        p.attributes.get("error.type") == "payment_declined" and p.value >= 1 for p in consumed
    )
    assert any(p.attributes["messaging.destination.name"] == "test.mw_async" for p in consumed)
    assert sum(p.count for p in points["messaging.process.duration"]) >= 2
    assert sum(p.value for p in points["messaging.client.sent.messages"]) >= 4


@pytest.mark.django_db(transaction=True)
def test_the_trace_runs_from_the_request_through_a_real_worker() -> None:
    tracer = trace.get_tracer("test")
    with override_settings(REXECUTOR=OTEL):
        with tracer.start_as_current_span("POST /signup") as request:
            job_id = RecordEffect.enqueue({"label": "traced"})
        with InProcessWorker(RecordEffect.name) as worker:
            wait_until(lambda: status_of(job_id) == JobStatus.COMPLETE, 15, worker)
            wait_until(lambda: spans(SpanKind.CONSUMER), 5, worker)
            assert worker.stop() == 0
    [producer] = spans(SpanKind.PRODUCER)
    [consumer] = spans(SpanKind.CONSUMER)
    assert consumer.context.trace_id == request.get_span_context().trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes["messaging.message.id"] == str(job_id)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_continues_the_trace_of_the_enqueue(
    manage_py, subprocess_env, tmp_path
) -> None:
    import json

    from tests.worker_support import WorkerProcess

    spans_file = tmp_path / "spans.jsonl"
    tracer = trace.get_tracer("test")
    with (
        override_settings(REXECUTOR=OTEL),
        tracer.start_as_current_span("POST /signup") as request,
    ):
        job_id = RecordEffect.enqueue({"label": "traced"})
    worker = WorkerProcess(
        manage_py,
        {**subprocess_env, "REXECUTOR_TEST_OTEL_SPANS": str(spans_file)},
        "--burst",
        overrides=OTEL,
    )
    assert worker.wait(60) == 0, worker.output
    assert status_of(job_id) == JobStatus.COMPLETE
    [consumer] = [json.loads(line) for line in spans_file.read_text().splitlines()]
    [producer] = spans(SpanKind.PRODUCER)
    assert consumer["kind"] == "SpanKind.CONSUMER"
    assert consumer["context"]["trace_id"] == f"0x{request.get_span_context().trace_id:032x}"
    assert consumer["parent_id"] == f"0x{producer.context.span_id:016x}"
    assert consumer["attributes"]["messaging.message.id"] == str(job_id)
    assert consumer["attributes"]["messaging.system"] == "django_rexecutor"
