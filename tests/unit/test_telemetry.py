"""Tracing as the OTEL_* variables configure it: which exporter, which sampler, what the FastAPI
instrumentation names and marks, how a stored trace context becomes the parent of the span that
sends an outbox row, and that with tracing off nothing is built."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from libs.runtime import telemetry
from libs.runtime.telemetry import (
    QueriesOutsideWork,
    TracingConfigError,
    build_tracer_provider,
    chosen_exporters,
    instrument_app,
)

# -- which exporter -----------------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_is_asked_for() -> None:
    assert chosen_exporters({}) == ()
    assert chosen_exporters({"OTEL_TRACES_EXPORTER": "none"}) == ()


def test_the_standard_variable_names_the_exporters() -> None:
    assert chosen_exporters({"OTEL_TRACES_EXPORTER": "otlp"}) == ("otlp",)
    assert chosen_exporters({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ("otlp", "console")


def test_the_deprecated_variable_still_works_and_the_standard_one_wins() -> None:
    assert chosen_exporters({}, deprecated_exporter="console") == ("console",)
    assert chosen_exporters({"OTEL_TRACES_EXPORTER": "none"}, deprecated_exporter="otlp") == ()


def test_the_sdk_switch_turns_tracing_off() -> None:
    assert chosen_exporters({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == ()


def test_an_unknown_exporter_fails_at_start_naming_the_variable() -> None:
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        chosen_exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_otlp_exporter_is_installed_and_reads_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    provider = build_tracer_provider("order", ["otlp"], {"OTEL_SERVICE_NAME": "shop-orders"})
    try:
        processor = provider._active_span_processor._span_processors[0]
        exporter: Any = processor.span_exporter  # type: ignore[attr-defined]
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "http://collector:4318/v1/traces"
        assert provider.resource.attributes["service.name"] == "shop-orders"
    finally:
        provider.shutdown()


def test_a_service_is_named_after_itself_by_default() -> None:
    provider = build_tracer_provider("billing", [], {})
    assert provider.resource.attributes["service.name"] == "ordermesh-billing"


def test_an_otlp_protocol_that_is_not_installed_is_refused_by_name() -> None:
    with pytest.raises(TracingConfigError, match="http/protobuf"):
        build_tracer_provider("order", ["otlp"], {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_the_sampler_comes_from_the_standard_variables() -> None:
    provider = build_tracer_provider(
        "order", [], {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_SAMPLER"):
        build_tracer_provider("order", [], {"OTEL_TRACES_SAMPLER": "sometimes"})


# -- what is sampled ----------------------------------------------------------------------------


def _parent(sampled: bool = True) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(1, 2, is_remote=True, trace_flags=flags)))


def test_a_query_no_request_or_message_caused_starts_no_trace() -> None:
    sampler = QueriesOutsideWork(ALWAYS_ON)
    assert sampler.should_sample(None, 7, "SELECT", SpanKind.CLIENT).decision is Decision.DROP
    assert (
        sampler.should_sample(_parent(), 7, "SELECT", SpanKind.CLIENT).decision is Decision.RECORD_AND_SAMPLE
    )
    assert (
        sampler.should_sample(None, 7, "POST /orders", SpanKind.SERVER).decision is Decision.RECORD_AND_SAMPLE
    )


# -- spans --------------------------------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_requests_are_named_by_route_template_and_a_5xx_is_an_error(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, str]:
        return {"order_id": order_id}

    @app.post("/orders/{order_id}/cancel")
    async def cancel(order_id: str) -> None:
        raise RuntimeError("the database went away")

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    instrument_app(app, provider)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
        assert (await client.get("/orders/o-1", headers={"x-correlation-id": "o-1"})).status_code == 200
        assert (await client.get("/orders/o-2")).status_code == 200
        assert (await client.post("/orders/o-3/cancel")).status_code == 500
        assert (await client.get("/ready")).status_code == 200

    finished = exporter.get_finished_spans()
    names = [span.name for span in finished]
    assert names == ["GET /orders/{order_id}", "GET /orders/{order_id}", "POST /orders/{order_id}/cancel"]
    assert [span.kind for span in finished] == [SpanKind.SERVER] * 3
    assert [span.status.status_code for span in finished] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert finished[0].attributes is not None
    assert finished[0].attributes[telemetry.CORRELATION_ATTRIBUTE] == "o-1"


async def test_a_stored_trace_context_is_the_parent_of_the_send_and_its_header_is_replaced(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    seen: dict[str, Any] = {}

    async def send(topic: str, value: bytes | None = None, key: bytes | None = None, **kwargs: Any) -> None:
        seen["context"] = trace.get_current_span().get_span_context()
        seen["headers"] = kwargs["headers"]

    stored = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("event_type", b"OrderPlaced"), ("traceparent", stored.encode())]
    await telemetry._send_in_stored_trace(send, None, ("oms.order.events.v1",), {"headers": headers})

    assert format(seen["context"].trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert seen["headers"] == [("event_type", b"OrderPlaced")]
    assert trace.get_current_span().get_span_context().is_valid is False  # detached afterwards


def test_with_tracing_off_nothing_is_built_or_carried() -> None:
    telemetry.reset_for_tests()
    assert telemetry.configure_tracing("order", environ={}) is False
    assert telemetry.trace_headers() == {}
    with telemetry.consuming_span("group handle X", {"traceparent": "garbage"}, "o-1") as span:
        assert span is trace.INVALID_SPAN
        assert telemetry.correlation_id_var.get() == "o-1"
    assert telemetry.correlation_id_var.get() is None
    telemetry.reset_for_tests()
