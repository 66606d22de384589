"""OpenTelemetry traces and metrics for jobs, as one middleware::

    REXECUTOR = {"MIDDLEWARE": ["django_rexecutor.contrib.otel.OpenTelemetryMiddleware"]}

* **Enqueue** (``Executor.enqueue``, builders, ``enqueue_many``): a ``PRODUCER`` span
  ``send <executor>``, child of whatever span is current (e.g. the web request's). Its W3C
  trace context is stored in the job's metadata under ``TRACE_CONTEXT_KEY``
  (``"_rexecutor_trace"``, reserved: ``{"traceparent": …, "tracestate": …}``). Metadata that is
  ``None`` becomes a dict holding only that key; metadata that is not a dict is left alone
  (the attempt's span then starts a trace of its own).
* **Each attempt**: a ``CONSUMER`` span ``process <executor>`` whose parent is the enqueue's
  span, so a trace runs from the request through every attempt of its job. Its status is
  ``ERROR`` when the attempt raised (an ``ExecutionError``, any exception, an interrupt), and
  unset otherwise; ``django_rexecutor.outcome`` tells ``done``, ``cancel``, ``snooze`` or
  ``error``.
* Attributes follow OpenTelemetry's messaging conventions: ``messaging.system`` =
  ``"django_rexecutor"``, ``messaging.operation.type`` (``send``/``process``),
  ``messaging.operation.name``, ``messaging.destination.name`` (the executor),
  ``messaging.message.id`` (the job id), plus ``django_rexecutor.attempt``,
  ``django_rexecutor.max_attempts``; a batch enqueue sets ``messaging.batch.message_count``.
* **Metrics** through the meter API: ``messaging.client.sent.messages`` and
  ``messaging.client.consumed.messages`` (counters; failures carry ``error.type``) and
  ``messaging.process.duration`` (a histogram, seconds).

It uses the global tracer and meter providers: configure the SDK (exporters, sampling) as
for any other instrumentation. Needs the ``otel`` extra."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured

try:
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImproperlyConfigured(
        "django_rexecutor.contrib.otel needs the OpenTelemetry packages: "
        "pip install 'django-rexecutor[otel]'."
    ) from exc

from ..outcomes import Cancel, Snooze

if TYPE_CHECKING:
    from ..backends.values import EnqueuableJob
    from ..job import Job, JobId

#: The metadata key holding a job's trace context (reserved for this integration).
TRACE_CONTEXT_KEY: Final = "_rexecutor_trace"
SYSTEM: Final = "django_rexecutor"
_SCOPE: Final = "django_rexecutor"


class _Instruments:
    """The meter's instruments, made on first use (so the SDK may be configured after the
    middleware is loaded)."""

    def __init__(self) -> None:
        meter = metrics.get_meter(_SCOPE)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Jobs enqueued."
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Attempts run, by executor (failed ones with error.type).",
        )
        self.duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="How long attempts took."
        )


_instruments: _Instruments | None = None


def _meters() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def _tracer() -> trace.Tracer:
    return trace.get_tracer(_SCOPE)


def with_trace_context(metadata: Any, carrier: Mapping[str, str]) -> Any:
    """``metadata`` with ``carrier`` (the W3C headers) under ``TRACE_CONTEXT_KEY``."""
    if not carrier:
        return metadata
    if metadata is None:
        return {TRACE_CONTEXT_KEY: dict(carrier)}
    if isinstance(metadata, dict):
        return {**metadata, TRACE_CONTEXT_KEY: dict(carrier)}
    return metadata  # a list or a scalar cannot carry it


def trace_context_of(job: Job) -> Any:
    """The OpenTelemetry context stored with ``job`` at enqueue, or ``None``."""
    metadata = job.metadata
    carrier = metadata.get(TRACE_CONTEXT_KEY) if isinstance(metadata, dict) else None
    if not isinstance(carrier, dict):
        return None
    return propagate.extract({str(k): str(v) for k, v in carrier.items()})


def _outcome_name(outcome: object) -> str:
    if isinstance(outcome, Cancel):
        return "cancel"
    if isinstance(outcome, Snooze):
        return "snooze"
    return "done"


class OpenTelemetryMiddleware:
    """A span per attempt (``CONSUMER``), one per enqueue (``PRODUCER``), and the messaging
    metrics. Serves sync and async jobs."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_outcome: Callable[[Job], Any]) -> None:
        self.get_outcome = get_outcome
        self.is_async = iscoroutinefunction(get_outcome)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, job: Job) -> Any:
        if self.is_async:
            return self.__acall__(job)
        with self._span(job) as span:
            started = time.monotonic()
            try:
                outcome = self.get_outcome(job)
            except BaseException as exc:
                self._failed(job, span, exc, time.monotonic() - started)
                raise
            self._succeeded(job, span, outcome, time.monotonic() - started)
            return outcome

    async def __acall__(self, job: Job) -> Any:
        with self._span(job) as span:
            started = time.monotonic()
            try:
                outcome = await self.get_outcome(job)
            except BaseException as exc:
                self._failed(job, span, exc, time.monotonic() - started)
                raise
            self._succeeded(job, span, outcome, time.monotonic() - started)
            return outcome

    @staticmethod
    def _span(job: Job) -> Any:
        return _tracer().start_as_current_span(
            f"process {job.executor}",
            context=trace_context_of(job),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.executor,
                "messaging.message.id": str(job.id),
                "django_rexecutor.attempt": job.attempt,
                "django_rexecutor.max_attempts": job.max_attempts,
            },
            # The exception is recorded by _failed, with the status.
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def _attributes(job: Job) -> dict[str, Any]:
        return {"messaging.system": SYSTEM, "messaging.destination.name": job.executor}

    def _succeeded(self, job: Job, span: Any, outcome: object, seconds: float) -> None:
        span.set_attribute("django_rexecutor.outcome", _outcome_name(outcome))
        attributes = self._attributes(job)
        _meters().consumed.add(1, attributes)
        _meters().duration.record(seconds, attributes)

    def _failed(self, job: Job, span: Any, exc: BaseException, seconds: float) -> None:
        error_type = getattr(exc, "error_type", None) or type(exc).__qualname__
        span.set_attribute("django_rexecutor.outcome", "error")
        span.set_attribute("error.type", str(error_type))
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        attributes = {**self._attributes(job), "error.type": str(error_type)}
        _meters().consumed.add(1, attributes)
        _meters().duration.record(seconds, attributes)

    @staticmethod
    def around_enqueue(
        jobs: list[EnqueuableJob], insert: Callable[[list[EnqueuableJob]], list[JobId]]
    ) -> list[JobId]:
        executors = sorted({j.executor for j in jobs})
        destination = executors[0] if len(executors) == 1 else "(several)"
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": destination,
        }
        if len(jobs) != 1:
            attributes["messaging.batch.message_count"] = len(jobs)
        with _tracer().start_as_current_span(
            f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            ids = insert(
                [replace(j, metadata=with_trace_context(j.metadata, carrier)) for j in jobs]
            )
            if len(ids) == 1:
                span.set_attribute("messaging.message.id", str(ids[0]))
        for job in jobs:
            _meters().sent.add(
                1, {"messaging.system": SYSTEM, "messaging.destination.name": job.executor}
            )
        return ids
