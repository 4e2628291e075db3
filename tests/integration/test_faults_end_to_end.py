"""Faults end to end: killed services, duplicate and poison intake messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.events import encode, make_envelope
from libs.events.order import SubmitOrder
from libs.events.topics import ORDER_INTAKE, dead_letter_topic
from libs.runtime.settings import RuntimeSettings
from tests.integration.conftest import Oms, money, order_body
from tools.processes import eventually_value

pytestmark = pytest.mark.integration


async def with_retries(call: Any, attempts: int = 200) -> httpx.Response:
    """What a channel or gateway does when the service is down: try again, same key."""
    for _ in range(attempts):
        try:
            response: httpx.Response = await call()
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("service did not come back")


async def test_services_killed_mid_saga_finish_every_saga_without_double_effects(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 100)
    bodies = [(str(uuid4()), order_body(sku)) for _ in range(30)]

    async def submit(key: str, body: dict[str, Any]) -> str:
        response = await with_retries(lambda: oms.submit(body, key=key))
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    placing = [asyncio.create_task(submit(key, body)) for key, body in bodies]
    await asyncio.sleep(0.3)
    oms.platform.kill("inventory")
    oms.platform.kill("order")
    await asyncio.sleep(0.5)
    oms.platform.start("order", "inventory")
    order_ids = await asyncio.gather(*placing)
    assert len(set(order_ids)) == 30

    async def pay(order_id: str) -> None:
        invoice = await eventually_value(
            lambda: _invoices(oms, order_id), lambda found: len(found) == 1, timeout=90
        )
        reference = f"gw-{order_id}"
        for _ in range(2):  # the gateway calls back twice with the same reference
            response = await with_retries(
                lambda: oms.pay(order_id, invoice[0]["amount"], reference=reference)
            )
            assert response.status_code in (200, 201), response.text

    paying = [asyncio.create_task(pay(order_id)) for order_id in order_ids]
    await asyncio.sleep(0.5)
    oms.platform.kill("billing")
    oms.platform.start("billing")
    await asyncio.gather(*paying)

    # Every saga finishes. A payment delayed past the (short, test) deadline by the billing
    # restart legitimately cancels its order, and the late money is refunded exactly once.
    confirmed = 0
    for order_id in order_ids:
        order = await eventually_value(
            lambda order_id=order_id: _order(oms, order_id),
            lambda o: o["status"] in ("confirmed", "cancelled") and _money_settled(o),
            timeout=90,
        )
        payments = (await oms.billing.get("/payments", params={"order_id": order_id})).json()
        refunds = await oms.refunds(order_id)
        assert len([p for p in payments if p["outcome"] == "succeeded"]) == 1
        assert money(order["amount_paid"]) == Decimal("30.00")
        if order["status"] == "confirmed":
            confirmed += 1
            assert refunds == []
        else:
            assert order["reason"] == "payment deadline passed"
            assert [money(r["amount"]) for r in refunds] == [Decimal("30.00")]
    assert confirmed > 0
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"]) == (100, confirmed)


def _money_settled(order: dict[str, Any]) -> bool:
    paid, refunded = money(order["amount_paid"]), money(order["amount_refunded"])
    return paid == Decimal("30.00") and (order["status"] == "confirmed" or refunded == paid)


async def _invoices(oms: Oms, order_id: str) -> list[dict[str, Any]]:
    try:
        response = await oms.billing.get("/invoices", params={"order_id": order_id})
    except httpx.TransportError:
        return []
    return list(response.json()) if response.status_code == 200 else []


async def _order(oms: Oms, order_id: str) -> dict[str, Any]:
    try:
        response = await oms.order.get(f"/orders/{order_id}")
    except httpx.TransportError:
        return {"status": "unreachable"}
    return dict(response.json())


async def test_intake_topic_submissions_are_idempotent_and_poison_is_dead_lettered(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 5)
    reference = f"mp-{uuid4().hex[:8]}"
    # On account: it ends confirmed, not cancelled by the short test payment deadline.
    body = order_body(sku, channel="offline", external_id=reference, terms="on_account")
    submission = SubmitOrder.model_validate(body)

    def envelope() -> bytes:
        return encode(
            make_envelope(
                submission,
                event_id=uuid4(),
                aggregate_id=reference,
                aggregate_version=0,
                occurred_at=datetime.now(UTC),
                correlation_id=reference,
                causation_id=None,
                actor="channel:offline",
            )
        )

    producer = AIOKafkaProducer(bootstrap_servers=e2e_settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = e2e_settings.topic(ORDER_INTAKE)
        for value in (envelope(), envelope(), b'{"event_type": "SubmitOrder"}'):
            await producer.send_and_wait(topic, value, key=reference.encode())
    finally:
        await producer.stop()

    async def listed() -> list[dict[str, Any]]:
        response = await oms.order.get(
            "/orders", params={"channel": "offline", "customer_id": f"email:{body['customer']['email']}"}
        )
        return list(response.json()["items"])

    # Generous: the previous test restarted the order service, whose group may still rebalance.
    orders = await eventually_value(listed, lambda items: len(items) >= 1, timeout=90)
    await oms.wait_status(orders[0]["order_id"], "confirmed", timeout=60)
    assert len(await listed()) == 1
    assert orders[0]["external_id"] == reference

    consumer = AIOKafkaConsumer(
        dead_letter_topic(e2e_settings.topic("order-intake")),
        bootstrap_servers=e2e_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=90)
    finally:
        await consumer.stop()
    assert dict(record.headers)["dlq.reason"].startswith(b"undecodable: invalid envelope")
