"""Tracing and the sampled metrics on the real platform: the services run as processes with
OTEL_TRACES_EXPORTER=otlp, exporting to an OTLP/HTTP receiver in this test, and one order's
trace is read back from what they sent: the request's server span named by its route, a
database span, a Kafka producer span and the participants' consumer spans, all in one trace.
The order service runs as two replicas; their /metrics (summed, as Prometheus does) then show
the saga's duration to its outcome and the time spent in each stage, sampled from what
committed, each order placed counted once, a 5xx answer counted by its route template, and
the stuck-order gauge counting an order that waits."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from libs.runtime.metrics import ORDERS_STUCK
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from services.order.app.saga_metrics import SagaMetrics
from tests.conftest import RUN_ID, eventually
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tools import saga_inspect
from tools.processes import Platform

pytestmark = pytest.mark.integration

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP's span kinds
STATUS_ERROR = 2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status: int


class OtlpReceiver:
    """A collector's OTLP/HTTP traces endpoint (POST /v1/traces, protobuf), keeping every span."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                receiver.keep(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def keep(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status=span.status.code,
                        )
                    )

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in list(self.spans) if s.trace_id == trace_id]


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    running.thread.start()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def traced_settings() -> RuntimeSettings:
    return platform_settings(f"omobs_{RUN_ID}", f"obs{RUN_ID}.")


@pytest.fixture(scope="module")
async def traced(receiver: OtlpReceiver, traced_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OM_METRICS_SAMPLE_SECONDS": "0.5",
    }
    async with running_platform("obs", traced_settings, env, replicas=("order#2",)) as running:
        yield running


async def metric(platform: Platform, of: str, sample: str, /, **labels: str) -> float:
    """A sample summed over every replica of the service `of`, as a dashboard's sum() reads it."""
    total = 0.0
    async with httpx.AsyncClient() as http:
        for url in platform.urls(of):
            for family in text_string_to_metric_families((await http.get(f"{url}/metrics")).text):
                total += sum(
                    found.value
                    for found in family.samples
                    if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
                )
    return total


@pytest.fixture
async def client(traced: Platform) -> AsyncIterator[Oms]:
    oms = Oms(traced)
    try:
        yield oms
    finally:
        await oms.close()


async def test_one_order_is_one_trace_from_the_request_through_every_participant(
    client: Oms, receiver: OtlpReceiver, sku: str
) -> None:
    await client.receive(sku, 5)
    order_id = await client.place(order_body(sku))
    await client.wait_status(order_id, "awaiting_payment")  # stock reserved and invoice issued
    await client.get_order(order_id)

    placed = await eventually(
        lambda: _first(receiver, lambda s: s.name == "POST /orders" and s.service == "ordermesh-order")
    )
    assert placed.kind == SERVER and placed.status != STATUS_ERROR

    def hops() -> set[tuple[str, int]]:
        return {(s.service, s.kind) for s in receiver.trace(placed.trace_id)}

    def sent_inventory_command(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.kind == PRODUCER
            and s.service == "ordermesh-order"
            and s.name.endswith("oms.inventory.commands.v1 send")
            for s in spans
        )

    def saga_handled_inventory_answer(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.kind == CONSUMER and s.service == "ordermesh-order" and s.name.endswith("handle StockReserved")
            for s in spans
        )

    # The request's trace reaches inventory and billing through Kafka and comes back to the
    # order service's saga: consumer spans in all three, producer spans where they answer.
    # Each service exports on its own timer, so the wait names every span asserted below: the
    # billing span can arrive before the order service has exported its command or its saga's span.
    await eventually(
        lambda: _now(
            {
                ("ordermesh-order", CONSUMER),
                ("ordermesh-inventory", CONSUMER),
                ("ordermesh-billing", CONSUMER),
                ("ordermesh-inventory", PRODUCER),
            }
            <= hops()
            and sent_inventory_command(receiver.trace(placed.trace_id))
            and saga_handled_inventory_answer(receiver.trace(placed.trace_id))
        )
    )
    spans = receiver.trace(placed.trace_id)
    database = [s for s in spans if s.kind == CLIENT and s.attributes.get("db.system") == "postgresql"]
    assert {s.service for s in database} >= {"ordermesh-order", "ordermesh-inventory"}
    sent = [s for s in spans if s.kind == PRODUCER and s.service == "ordermesh-order"]
    assert sent and all(s.attributes.get("messaging.system") == "kafka" for s in sent)
    assert any(s.attributes.get("ordermesh.aggregate_id") == order_id for s in spans if s.kind == CONSUMER)

    read = await eventually(lambda: _first(receiver, lambda s: s.name == "GET /orders/{order_id}"))
    assert read.attributes.get("http.route") == "/orders/{order_id}"
    assert not [s for s in receiver.spans if s.name.endswith(("/ready", "/health", "/metrics"))]


async def test_saga_duration_is_observed_per_outcome_and_a_waiting_order_leads_to_its_trace(
    client: Oms, traced: Platform, traced_settings: RuntimeSettings, receiver: OtlpReceiver, sku: str
) -> None:
    await client.receive(sku, 5)
    paid_id = await client.place(order_body(sku))
    await client.wait_status(paid_id, "awaiting_payment")
    invoice = await client.invoice(paid_id)
    assert (await client.pay(paid_id, invoice["amount"])).status_code == 201
    await client.wait_status(paid_id, "confirmed")
    waiting_id = await client.place(order_body(sku))
    await client.wait_status(waiting_id, "awaiting_payment")  # and nobody pays

    async def confirmed_count() -> float:
        return await metric(traced, "order", "ordermesh_saga_seconds_count", outcome="confirmed")

    assert await eventually(confirmed_count) >= 1

    # The stuck-order query against the platform's own order database, with a threshold a test
    # can wait for (the service's are a minute and more), on a lock of its own so the running
    # service's sampler does not keep it out.
    sampler = SagaMetrics(traced_settings.dsn("order"), stuck_after=(0.5, 60, 3600), lock_key=RUN_ID_LOCK)
    try:

        async def waiting_orders() -> float:
            await sampler(None)  # type: ignore[arg-type]
            return float(ORDERS_STUCK.labels("awaiting_payment", "0.5s")._value.get())

        assert await eventually(waiting_orders) >= 1
    finally:
        await sampler.close()

    # From the stuck order to its trace, as docs/operations.md tells the operator: saga inspect
    # says where it waits and which trace its messages belong to; the trace holds its request.
    view = await saga_inspect.inspect(traced_settings, waiting_id)
    assert (view.status, view.stage) == ("awaiting_payment", "awaiting_payment")
    assert [d["kind"] for d in view.deadlines] and view.steps["stock"]["allocated"] is True
    assert view.trace_ids, "the order's messages carry its trace"
    spans = await eventually(lambda: _now(receiver.trace(view.trace_ids[0])))
    assert any(s.name == "POST /orders" and s.service == "ordermesh-order" for s in spans)


# The sampler's round asks the broker for lag and DLQ depth before the order service's saga
# metrics: on a loaded machine, or while a consumer group rebalances, a round takes seconds.
SAMPLED_WITHIN = 60.0


async def test_time_in_each_stage_is_observed_once_an_order_confirms(
    client: Oms, traced: Platform, sku: str
) -> None:
    stages = ("review", "reserving", "invoicing", "awaiting_payment", "done")

    async def left(stage: str) -> float:
        return await metric(traced, "order", "ordermesh_saga_stage_seconds_count", stage=stage)

    before = {stage: await left(stage) for stage in stages}
    await client.receive(sku, 5)
    order_id = await client.place(order_body(sku))
    await client.wait_status(order_id, "awaiting_payment")
    invoice = await client.invoice(order_id)
    assert (await client.pay(order_id, invoice["amount"])).status_code == 201
    await client.wait_status(order_id, "confirmed")

    async def every_stage_left() -> dict[str, float]:
        now = {stage: await left(stage) - before[stage] for stage in stages}
        return now if all(now.values()) else {}

    assert await eventually(every_stage_left, timeout=SAMPLED_WITHIN)


async def test_each_order_placed_is_counted_once_whatever_the_replica_and_the_retries(
    client: Oms, traced: Platform, sku: str
) -> None:
    channel = f"obs-{RUN_ID}"
    await client.receive(sku, 10)
    replicas = [httpx.AsyncClient(base_url=url, headers=bearer("admin")) for url in traced.urls("order")]
    assert len(replicas) == 2
    try:
        key = str(uuid4())
        body = order_body(sku, channel=channel)
        first = await replicas[0].post("/orders", json=body, headers={"Idempotency-Key": key})
        again = await replicas[1].post("/orders", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 202 and again.is_success
        assert again.json()["order_id"] == first.json()["order_id"]  # a retry: the same order
        for replica in (replicas[1], replicas[0]):
            answer = await replica.post(
                "/orders", json=order_body(sku, channel=channel), headers={"Idempotency-Key": str(uuid4())}
            )
            assert answer.status_code == 202, answer.text
    finally:
        for replica in replicas:
            await replica.aclose()

    async def placed(on: str) -> float:
        return await metric(traced, "order", "ordermesh_orders_placed_total", channel=on)

    assert await eventually(lambda: _now_equal(placed(channel), 3), timeout=SAMPLED_WITHIN)
    # One more order, on a channel of its own, counted: the sampler has run again since, and
    # the three are still counted once.
    await client.place(order_body(sku, channel=f"{channel}-later"))
    assert await eventually(lambda: _now_equal(placed(f"{channel}-later"), 1), timeout=SAMPLED_WITHIN)
    assert await placed(channel) == 3


async def test_a_server_error_is_counted_by_route_template_and_status_class(
    traced: Platform, traced_settings: RuntimeSettings, sku: str
) -> None:
    # A real 500 through the service's own error handling: the order database refuses to
    # store this one order (a trigger raising an error that is neither bad input nor transient).
    marker = f"obs-5xx-{RUN_ID}"
    conn = await asyncpg.connect(traced_settings.dsn("order"))
    await conn.execute(
        f"CREATE FUNCTION refuse_{RUN_ID}() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
    )
    await conn.execute(
        f"CREATE TRIGGER refuse_{RUN_ID} BEFORE INSERT ON orders FOR EACH ROW"
        f" WHEN (NEW.external_id = '{marker}') EXECUTE FUNCTION refuse_{RUN_ID}()"
    )
    try:
        posted = {"service": "order", "method": "POST", "route": "/orders"}
        read = {"service": "order", "method": "GET", "route": "/orders/{order_id}"}
        count = "ordermesh_http_requests_total"
        failed_before = await metric(traced, "order", count, status_class="5xx", **posted)
        missing_before = await metric(traced, "order", count, status_class="4xx", **read)
        async with httpx.AsyncClient(base_url=traced.url("order"), headers=bearer("admin")) as http:
            failed = await http.post("/orders", json=order_body(sku, external_id=marker))
            missing = await http.get(f"/orders/no-such-order-{RUN_ID}")
        assert failed.status_code == 500, failed.text
        assert missing.status_code == 404, missing.text

        assert await metric(traced, "order", count, status_class="5xx", **posted) == failed_before + 1
        assert await metric(traced, "order", count, status_class="4xx", **read) == missing_before + 1
        assert not await metric(traced, "order", count, route=f"/orders/no-such-order-{RUN_ID}")
    finally:
        await conn.execute(f"DROP TRIGGER refuse_{RUN_ID} ON orders; DROP FUNCTION refuse_{RUN_ID}()")
        await conn.close()


async def _now_equal(value: Any, expected: float) -> bool:
    return bool(await value == expected)


RUN_ID_LOCK = int(RUN_ID, 16) % 1_000_000 + 8_000_000


async def _first(receiver: OtlpReceiver, match: Any) -> ReceivedSpan | None:
    return next((s for s in list(receiver.spans) if match(s)), None)


async def _now(value: Any) -> Any:
    return value
