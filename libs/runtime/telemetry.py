"""Structured logging with correlation ids; tracing through OpenTelemetry's own instrumentations.

Tracing is configured by the standard variables (OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SDK_DISABLED). With no
exporter (the default) nothing is instrumented and no span is built: tracing then costs
nothing, and the correlation id (the order id) is what joins the log lines of one order.

With an exporter, the instrumentations made for our libraries make the spans: FastAPI's (one
server span per request, named by the route template, 5xx marked as errors), asyncpg's (a span
per query) and aiokafka's (a producer span per message sent, a receive span per message
consumed, in the trace of the message). The trace crosses the outbox: the context of whatever
recorded an outgoing message is stored in its headers (`trace_headers`) and the producer span
that finally sends it, by the relay or the after-commit publisher, is made a child of that
stored context (`_send_in_stored_trace`), so one order's trace spans every hop.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

EXPORTERS = ("otlp", "console")
# Probes and scrapes every few seconds would bury the traces of real work.
UNTRACED_URLS = "/health$,/ready$,/metrics$"
# Kafka header keys of the W3C trace context (what `trace_headers` stores in the outbox).
TRACE_HEADER_KEYS = frozenset({"traceparent", "tracestate"})
CORRELATION_ATTRIBUTE = "ordermesh.correlation_id"
# On every message-handling span: what the message is about (for an order's messages, the
# order id), to find an order's traces in a trace viewer by tag.
AGGREGATE_ID_ATTRIBUTE = "ordermesh.aggregate_id"

_enabled = False
_configured = False
# With tracing off, the caller's trace context (an HTTP request's or a consumed message's) is
# still passed on unchanged in what the work publishes, as W3C Trace Context asks of a hop that
# does not trace: a traced caller and traced services downstream keep one trace across this one.
_passed_on: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "ordermesh_trace_passed_on", default=None
)


def pass_on(carrier: Mapping[str, str]) -> contextvars.Token[dict[str, str] | None] | None:
    """Remember the trace context of `carrier` (W3C headers) for `trace_headers` while tracing
    is off; None (nothing to undo) while it is on. Undo with `stop_passing_on`."""
    if _enabled:
        return None
    context = {key: value for key, value in carrier.items() if key in TRACE_HEADER_KEYS}
    return _passed_on.set(context or None)


def stop_passing_on(token: contextvars.Token[dict[str, str] | None] | None) -> None:
    if token is not None:
        _passed_on.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        document: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (correlation := correlation_id_var.get()) is not None:
            document["correlation_id"] = correlation
        if span.is_valid:
            document["trace_id"] = format(span.trace_id, "032x")
        for key in ("order_id", "event_type", "event_id", "topic"):
            if hasattr(record, key):
                document[key] = getattr(record, key)
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if as_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- configuration ------------------------------------------------------------------------------


class TracingConfigError(ValueError):
    """A tracing variable holds a value this build cannot honour; raised at start-up."""


def chosen_exporters(environ: Mapping[str, str], deprecated_exporter: str = "none") -> tuple[str, ...]:
    """Which span exporters the environment asks for: OTEL_TRACES_EXPORTER (a comma-separated
    list of otlp, console, none), else the deprecated OM_OTEL_EXPORTER; none by default.

    The default differs from the SDK's (otlp) on purpose: a developer's platform and `make
    bench` have no collector, and tracing switched off costs nothing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    if "OTEL_TRACES_EXPORTER" in environ:
        raw, variable = environ["OTEL_TRACES_EXPORTER"], "OTEL_TRACES_EXPORTER"
    else:
        raw, variable = deprecated_exporter, "OM_OTEL_EXPORTER"
        if raw.strip().lower() not in ("", "none"):
            log.warning("OM_OTEL_EXPORTER is deprecated; set OTEL_TRACES_EXPORTER=%s instead", raw)
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*EXPORTERS, "none")]
    if unknown:
        raise TracingConfigError(
            f"{variable}={raw!r}: unknown exporter {unknown[0]!r} (use otlp, console or none)"
        )
    return tuple(dict.fromkeys(name for name in names if name != "none"))


def span_exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    )
    if protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not installed; OrderMesh ships the http/protobuf exporter"
            " (a collector's port 4318): set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT and _COMPRESSION itself.
    return OTLPSpanExporter()


class QueriesOutsideWork(Sampler):
    """Samples as `inner` says (OTEL_TRACES_SAMPLER), except root client spans: a query that no
    request or message caused (a relay's poll, a deadline scan, every second) would otherwise
    start a trace of its own, and those would bury the traces of orders."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"QueriesOutsideWork{{{self.inner.get_description()}}}"


def sampler_from(environ: Mapping[str, str]) -> Sampler:
    """OTEL_TRACES_SAMPLER (+ _ARG) as the SDK reads it, default parentbased_always_on."""
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "")
    ratio = float(argument) if argument else 1.0
    samplers: dict[str, Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER={name!r}: use one of {', '.join(samplers)}")
    return QueriesOutsideWork(samplers[name])


def build_tracer_provider(
    service: str, exporters: Sequence[str], environ: Mapping[str, str]
) -> TracerProvider:
    """A provider that exports to `exporters`, named `ordermesh-<service>` unless
    OTEL_SERVICE_NAME says otherwise (OTEL_RESOURCE_ATTRIBUTES adds to it)."""
    name = environ.get("OTEL_SERVICE_NAME") or f"ordermesh-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}), sampler=sampler_from(environ))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(span_exporter(name, environ)))
    return provider


def configure_tracing(
    service: str, deprecated_exporter: str = "none", environ: Mapping[str, str] | None = None
) -> bool:
    """Install tracing once per process, as the environment says; returns whether it is on.
    A value that cannot be honoured fails here, at start-up, naming the variable."""
    global _configured, _enabled
    if _configured:
        return _enabled
    environ = os.environ if environ is None else environ
    exporters = chosen_exporters(environ, deprecated_exporter)
    _configured = True
    if not exporters:
        return False
    provider = build_tracer_provider(service, exporters, environ)
    trace.set_tracer_provider(provider)
    instrument_libraries(provider)
    _enabled = True
    log.info("tracing on: exporting spans to %s", ", ".join(exporters))
    return True


def tracing_enabled() -> bool:
    return _enabled


# -- instrumentation ----------------------------------------------------------------------------


def instrument_libraries(provider: trace.TracerProvider) -> None:
    """asyncpg (a span per query) and aiokafka (producer and consumer spans), process-wide."""
    import aiokafka
    import wrapt
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    instrumentor = AIOKafkaInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
        # Outside the instrumentation's wrapper, so its producer span has the stored parent.
        wrapt.wrap_function_wrapper(aiokafka.AIOKafkaProducer, "send", _send_in_stored_trace)


async def _send_in_stored_trace(
    wrapped: Any, _instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Send a message whose headers carry a stored trace context (an outbox row's, a dead
    letter's copy of the original) as part of that trace: the context becomes the parent of
    the producer span, and the stale header gives way to the one the instrumentation writes
    (a consumer reads the first traceparent it finds)."""
    if len(args) > 5:
        args, kwargs = args[:5], {**kwargs, "headers": args[5]}
    headers = kwargs.get("headers")
    if not headers or not any(key in TRACE_HEADER_KEYS for key, _ in headers):
        return await wrapped(*args, **kwargs)
    stored = extract({key: _text(value) for key, value in headers if key in TRACE_HEADER_KEYS})
    kwargs["headers"] = [(key, value) for key, value in headers if key not in TRACE_HEADER_KEYS]
    token = otel_context.attach(stored)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        otel_context.detach(token)


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def instrument_app(app: Any, provider: trace.TracerProvider | None = None) -> None:
    """FastAPI's instrumentation: a server span per request named `METHOD /route/{template}`,
    continuing the caller's traceparent, marked as an error on a 5xx answer. The ASGI
    send/receive spans are left out (two per request, nothing an operator reads)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    def name_the_correlation(span: trace.Span, scope: dict[str, Any]) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"x-correlation-id" and span.is_recording():
                span.set_attribute(CORRELATION_ATTRIBUTE, value.decode("latin-1"))

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_URLS,
        exclude_spans=["receive", "send"],
        server_request_hook=name_the_correlation,
    )


# -- spans of our own ---------------------------------------------------------------------------

tracer = trace.get_tracer("ordermesh")


def trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, to travel in Kafka headers (via the outbox)."""
    if not _enabled:
        return dict(_passed_on.get() or {})
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextmanager
def consuming_span(
    name: str,
    headers: Mapping[str, str],
    correlation_id: str | None,
    attributes: Mapping[str, str] | None = None,
) -> Iterator[trace.Span]:
    """A span for handling one consumed message, in the trace its headers carry; the
    correlation id is set for the log lines written meanwhile."""
    correlation_token = correlation_id_var.set(correlation_id)
    try:
        if not _enabled:
            passed_on = pass_on(headers)
            try:
                yield trace.INVALID_SPAN
            finally:
                stop_passing_on(passed_on)
            return
        parent = extract(dict(headers))
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=dict(attributes or {})
        ) as span:
            if correlation_id is not None:
                span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)
            yield span
    finally:
        correlation_id_var.reset(correlation_token)


@contextmanager
def batch_span(name: str, headers: Sequence[Mapping[str, str]]) -> Iterator[None]:
    """A span around one consumed batch (its transaction, its commit), linked to the traces of
    its messages: the batch's own queries belong to no single message's trace."""
    if not _enabled:
        yield
        return
    links = [
        Link(context)
        for context in (trace.get_current_span(extract(dict(h))).get_span_context() for h in headers)
        if context.is_valid
    ]
    with tracer.start_as_current_span(name, kind=SpanKind.CONSUMER, links=links) as span:
        span.set_attribute("messaging.batch.message_count", len(headers))
        yield


def reset_for_tests() -> None:
    """Forget the process's tracing choice (the unit tests configure it several times)."""
    global _configured, _enabled
    _configured = _enabled = False
