"""Structured logging with correlation ids, OpenTelemetry tracing across HTTP and Kafka hops."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)


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


def configure_tracing(service: str, exporter: str = "none") -> None:
    """Install a tracer provider; spans are always created (trace ids reach logs and headers),
    and recorded and exported only when an exporter is chosen."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":  # pragma: no cover - needs the optional OTLP exporter package
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        span_exporter = OTLPSpanExporter()
    # With nowhere to send spans, recording them is pure cost (a tenth of a busy service's
    # CPU, measured): spans are then created unrecorded, which still gives every hop its
    # trace id in logs and in the traceparent header.
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"ordermesh-{service}"}),
        sampler=ParentBased(ALWAYS_ON) if span_exporter is not None else ALWAYS_OFF,
    )
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)


tracer = trace.get_tracer("ordermesh")


def trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, to travel in Kafka headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextmanager
def consuming_span(name: str, headers: Mapping[str, str], correlation_id: str | None) -> Iterator[trace.Span]:
    """A consumer span that continues the trace carried in the message headers."""
    parent = extract(dict(headers))
    token = otel_context.attach(parent)
    correlation_token = correlation_id_var.set(correlation_id)
    try:
        with tracer.start_as_current_span(name, kind=trace.SpanKind.CONSUMER) as span:
            yield span
    finally:
        correlation_id_var.reset(correlation_token)
        otel_context.detach(token)
