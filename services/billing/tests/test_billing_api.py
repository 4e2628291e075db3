"""The billing service end to end on the real PostgreSQL and Kafka broker: commands arrive as
Kafka messages, payments through the HTTP API, and the read API shows the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy import text

from libs.events import decode, encode, make_envelope
from libs.events.billing import BillingCommand, InvoiceIssued, IssueInvoice, VoidInvoice
from libs.events.topics import BILLING_COMMANDS, BILLING_EVENTS
from libs.events.values import OrderLine, PaymentTerms
from libs.runtime.db import admin_connection
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from services.billing.bootstrap import NAME, build_app
from tests.conftest import RUN_ID, eventually

pytestmark = pytest.mark.integration

TOTAL = "29.88"  # two at 10.00, standard shipping 4.90, 20% tax 4.98


@dataclass(frozen=True)
class Saga:
    """Stands in for the order saga: sends billing commands as it does."""

    producer: AIOKafkaProducer
    topic: str

    async def send(self, command: BillingCommand) -> None:
        """A new message id every time, as when the saga re-sends a command."""
        envelope = make_envelope(
            command,
            event_id=uuid4(),
            aggregate_id=command.order_id,
            aggregate_version=0,
            occurred_at=datetime.now(UTC),
            correlation_id=command.order_id,
            causation_id=None,
            actor="service:order",
        )
        await self.producer.send_and_wait(self.topic, encode(envelope), key=command.order_id.encode())


@pytest.fixture(scope="module")
def billing_settings(settings: RuntimeSettings) -> RuntimeSettings:
    """This run's own topics and consumer groups: the shared ones may be in use by a running
    platform or another test session."""
    namespace = settings.topic_namespace or f"test.{RUN_ID}."
    return settings.model_copy(update={"topic_namespace": namespace})


@pytest.fixture(scope="module")
async def app(billing_settings: RuntimeSettings) -> AsyncIterator[FastAPI]:
    """The real app; its runtime is started here because ASGITransport skips the lifespan."""
    app = build_app(billing_settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        yield app
    finally:
        await runtime.stop()
        await _drop_database(billing_settings)


@pytest.fixture(scope="module")
def service(app: FastAPI) -> ServiceRuntime:
    runtime: ServiceRuntime = app.state.runtime
    return runtime


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://billing", headers=bearer("admin")
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def saga(billing_settings: RuntimeSettings) -> AsyncIterator[Saga]:
    kafka = AIOKafkaProducer(bootstrap_servers=billing_settings.kafka_bootstrap, acks="all")
    await kafka.start()
    yield Saga(kafka, billing_settings.topic(BILLING_COMMANDS))
    await kafka.stop()


async def _drop_database(settings: RuntimeSettings) -> None:
    admin = await admin_connection(settings)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database_name(NAME)}" WITH (FORCE)')
    finally:
        await admin.close()


# -- helpers ------------------------------------------------------------------------------


def new_order() -> str:
    return f"ORD-{uuid4().hex[:10]}"


def issue(order_id: str, customer_id: str = "CUST-A", terms: PaymentTerms = "prepaid") -> IssueInvoice:
    return IssueInvoice(
        order_id=order_id,
        customer_id=customer_id,
        currency="EUR",
        lines=(OrderLine(sku="SKU-1", quantity=2, unit_price=Decimal("10.00")),),
        payment_terms=terms,
        shipping_method="standard",
        due_at=datetime.now(UTC) + timedelta(days=14),
    )


async def invoice_of(api: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    response = await api.get("/invoices", params={"order_id": order_id})
    assert response.status_code == 200
    invoices: list[dict[str, Any]] = response.json()
    return invoices[0] if invoices else None


async def issued_invoice(api: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        return await invoice_of(api, order_id)

    invoice: dict[str, Any] = await eventually(check, timeout=60)
    return invoice


async def pay(
    api: httpx.AsyncClient,
    order_id: str,
    amount: str,
    reference: str | None = None,
    method: str = "card",
    outcome: str = "succeeded",
) -> httpx.Response:
    return await api.post(
        "/payments",
        json={
            "order_id": order_id,
            "amount": amount,
            "method": method,
            "reference": reference or f"PAY-{uuid4().hex[:10]}",
            "outcome": outcome,
        },
    )


async def stream_event_count(service: ServiceRuntime, order_id: str, event_type: str) -> int:
    async with service.engine.connect() as conn:
        count = await conn.execute(
            text("SELECT count(*) FROM events WHERE stream_id = :s AND event_type = :t"),
            {"s": f"invoice-{order_id}", "t": event_type},
        )
        return int(count.scalar_one())


# -- tests --------------------------------------------------------------------------------


async def test_prepaid_invoice_is_paid_in_two_parts(api: httpx.AsyncClient, saga: Saga) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    invoice = await issued_invoice(api, order_id)
    assert (invoice["amount"], invoice["subtotal"], invoice["shipping_fee"], invoice["tax"]) == (
        TOTAL,
        "20.00",
        "4.90",
        "4.98",
    )
    assert invoice["status"] == "open" and invoice["invoice_id"].startswith("INV-")

    first = await pay(api, order_id, "10.00")
    rest = await pay(api, order_id, "19.88")

    assert first.status_code == 201, first.text
    assert (first.json()["amount_paid"], first.json()["invoice_status"]) == ("10.00", "open")
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount_paid"], rest.json()["invoice_status"]) == (TOTAL, "paid")
    single = await api.get(f"/invoices/{invoice['invoice_id']}")
    assert (single.json()["status"], single.json()["amount_paid"]) == ("paid", TOTAL)


async def test_repeated_payment_reference_is_applied_once(api: httpx.AsyncClient, saga: Saga) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    await issued_invoice(api, order_id)

    first = await pay(api, order_id, "5.00", reference=f"GW-{order_id}")
    repeat = await pay(api, order_id, "5.00", reference=f"GW-{order_id}")

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == first.json()
    payments = (await api.get("/payments", params={"order_id": order_id})).json()
    assert [(p["reference"], p["amount"]) for p in payments] == [(f"GW-{order_id}", "5.00")]
    assert (await invoice_of(api, order_id) or {})["amount_paid"] == "5.00"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"amount": "6.00"}, "a succeeded card payment of 6.00"),
        ({"method": "bank-transfer"}, "a succeeded bank-transfer payment of 5.00"),
        ({"outcome": "failed"}, "a failed card payment of 5.00"),
    ],
    ids=["amount", "method", "outcome"],
)
async def test_a_payment_reference_reused_for_another_payment_is_refused_naming_the_difference(
    api: httpx.AsyncClient, saga: Saga, change: dict[str, str], says: str
) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    await issued_invoice(api, order_id)
    reference = f"GW-{order_id}"
    assert (await pay(api, order_id, "5.00", reference=reference)).status_code == 201

    reused = await pay(api, order_id, reference=reference, **{"amount": "5.00", **change})

    assert reused.status_code == 409, reused.text
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["detail"] == (
        f"payment reference {reference} was already used for a succeeded card payment of 5.00"
        f" for order {order_id}; this request says {says} for order {order_id}"
    )
    payments = (await api.get("/payments", params={"order_id": order_id})).json()
    assert [(p["reference"], p["amount"], p["outcome"]) for p in payments] == [
        (reference, "5.00", "succeeded")
    ]


async def test_a_payment_reference_reused_for_another_order_is_refused(
    api: httpx.AsyncClient, saga: Saga
) -> None:
    first, second = new_order(), new_order()
    for order_id in (first, second):
        await saga.send(issue(order_id))
        await issued_invoice(api, order_id)
    assert (await pay(api, first, "5.00", reference=f"GW-{first}")).status_code == 201

    reused = await pay(api, second, "5.00", reference=f"GW-{first}")

    assert reused.status_code == 409, reused.text
    assert f"this request says a succeeded card payment of 5.00 for order {second}" in reused.json()["detail"]
    assert (await api.get("/payments", params={"order_id": second})).json() == []


async def test_concurrent_reports_of_one_reference_apply_one_payment(
    api: httpx.AsyncClient, saga: Saga
) -> None:
    """Concurrent requests share a transaction (group commit): the second report of a
    reference meets the first before the payments table does."""
    order_id = new_order()
    await saga.send(issue(order_id))
    await issued_invoice(api, order_id)

    same = await asyncio.gather(*(pay(api, order_id, "1.00", reference=f"GW1-{order_id}") for _ in range(2)))
    other = await asyncio.gather(
        pay(api, order_id, "2.00", reference=f"GW2-{order_id}"),
        pay(api, order_id, "3.00", reference=f"GW2-{order_id}"),
    )

    assert sorted(r.status_code for r in same) == [200, 201], [r.text for r in same]
    assert sorted(r.status_code for r in other) == [201, 409], [r.text for r in other]
    assert (await invoice_of(api, order_id) or {})["amount_paid"] == "3.00"


async def test_void_after_payment_refunds_once_even_if_delivered_twice(
    api: httpx.AsyncClient, saga: Saga, service: ServiceRuntime
) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    await issued_invoice(api, order_id)
    assert (await pay(api, order_id, "7.00")).status_code == 201

    # The saga may re-send its compensation: a new message id, the same intent.
    await saga.send(VoidInvoice(order_id=order_id, reason="out of stock"))
    await saga.send(VoidInvoice(order_id=order_id, reason="out of stock"))

    async def both_answered() -> bool:
        return await stream_event_count(service, order_id, "InvoiceVoided") == 2

    await eventually(both_answered, timeout=60)
    refunds = (await api.get("/refunds", params={"order_id": order_id})).json()
    assert [(r["amount"], r["reason"]) for r in refunds] == [("7.00", "out of stock")]
    assert (await invoice_of(api, order_id) or {})["status"] == "void"


async def test_payment_after_the_void_is_refunded(api: httpx.AsyncClient, saga: Saga) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    await issued_invoice(api, order_id)
    await saga.send(VoidInvoice(order_id=order_id, reason="customer cancelled"))

    async def voided() -> bool:
        return (await invoice_of(api, order_id) or {}).get("status") == "void"

    await eventually(voided, timeout=60)
    late = await pay(api, order_id, TOTAL)

    assert late.status_code == 201 and late.json()["invoice_status"] == "void"
    refunds = (await api.get("/refunds", params={"order_id": order_id})).json()
    assert [(r["amount"], r["reason"]) for r in refunds] == [(TOTAL, "invoice void")]


async def test_on_account_credit_is_checked_charged_and_released_by_payment(
    api: httpx.AsyncClient, saga: Saga, service: ServiceRuntime
) -> None:
    customer_id = f"CUST-{uuid4().hex[:8]}"
    limit = await api.put(f"/customers/{customer_id}/credit-limit", json={"credit_limit": "50.00"})
    assert limit.json() == {
        "customer_id": customer_id,
        "credit_limit": "50.00",
        "open_balance": "0.00",
        "available_credit": "50.00",
    }
    accepted, refused = new_order(), new_order()

    await saga.send(issue(accepted, customer_id, "on_account"))
    await issued_invoice(api, accepted)
    await saga.send(issue(refused, customer_id, "on_account"))  # 29.88 + 29.88 > 50.00

    async def credit_check_failed() -> bool:
        return await stream_event_count(service, refused, "CreditCheckFailed") == 1

    await eventually(credit_check_failed, timeout=60)
    assert await invoice_of(api, refused) is None
    account = (await api.get(f"/customers/{customer_id}/account")).json()
    assert (account["open_balance"], account["available_credit"]) == (TOTAL, "20.12")

    assert (await pay(api, accepted, TOTAL)).status_code == 201
    account = (await api.get(f"/customers/{customer_id}/account")).json()
    assert (account["open_balance"], account["available_credit"]) == ("0.00", "50.00")


async def test_payment_problems_are_reported_as_problem_json(api: httpx.AsyncClient, saga: Saga) -> None:
    order_id = new_order()
    await saga.send(issue(order_id))
    invoice = await issued_invoice(api, order_id)

    unknown = await pay(api, new_order(), "1.00")
    too_much = await pay(api, order_id, "30.00")
    missing = await api.get("/invoices/INV-000000000000")

    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert too_much.status_code == 422 and too_much.json()["code"] == "overpayment"
    assert invoice["invoice_id"] in too_much.json()["detail"]
    assert missing.status_code == 404


async def test_invoice_issued_is_published_for_the_saga(
    saga: Saga, billing_settings: RuntimeSettings
) -> None:
    order_id = new_order()
    consumer = AIOKafkaConsumer(
        billing_settings.topic(BILLING_EVENTS),
        bootstrap_servers=billing_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await saga.send(issue(order_id))

        async def published() -> InvoiceIssued | None:
            batches = await consumer.getmany(timeout_ms=200)
            for record in (r for records in batches.values() for r in records):
                message = decode(record.value or b"").message
                if isinstance(message, InvoiceIssued) and message.order_id == order_id:
                    assert record.key == order_id.encode()
                    return message
            return None

        issued: InvoiceIssued = await eventually(published, timeout=60)
    finally:
        await consumer.stop()
    assert issued.total == Decimal(TOTAL)
