"""Faults end to end: killed services, duplicate and poison intake messages."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from libs.events import encode, make_envelope
from libs.events.order import SubmitOrder
from libs.events.topics import ORDER_INTAKE, dead_letter_topic
from libs.runtime.settings import RuntimeSettings
from tests.conftest import consumed_through, eventually
from tests.integration.accounts import INTAKE_ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, money, order_body
from tools import invariants
from tools.chaos import read_all
from tools.processes import eventually_value

pytestmark = pytest.mark.integration


async def with_retries(call: Any, timeout: float = 180) -> httpx.Response:
    """What a channel or gateway does when the service is down: try again, same key."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            response: httpx.Response = await call()
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"service did not come back within {timeout}s")


async def test_services_killed_mid_saga_give_every_order_the_outcome_it_would_have_had(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    count = 30
    await oms.receive(sku, 100)
    bodies = [(str(uuid4()), order_body(sku)) for _ in range(count)]
    # A few at a time, as a channel sends them: the kills meet orders answered, orders being
    # submitted and orders not sent yet.
    channel = asyncio.Semaphore(3)

    async def submit(key: str, body: dict[str, Any]) -> str:
        async with channel:
            response = await with_retries(lambda: oms.submit(body, key=key))
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    placing = [asyncio.create_task(submit(key, body)) for key, body in bodies]

    def accepted() -> list[str]:
        return [task.result() for task in placing if task.done() and not task.exception()]

    await eventually_value(lambda: _value(accepted()), lambda ids: len(ids) >= count // 3, timeout=60)
    oms.platform.kill("inventory")
    # Orders placed from now on ask a dead inventory for stock and wait. Kill the order service
    # once several do: with it dead too, its database shows the moment of the kill.
    await eventually_value(
        lambda: _stages(e2e_settings, accepted()),
        lambda stages: list(stages.values()).count("reserving") >= 3,
        timeout=60,
    )
    oms.platform.kill("order")
    at_kill = await _stages(e2e_settings, accepted())
    assert list(at_kill.values()).count("reserving") >= 3, at_kill  # sagas provably mid-flight
    assert not all(task.done() for task in placing)  # and submissions still to come
    await asyncio.to_thread(oms.platform.start, "order", "inventory")
    order_ids = await asyncio.gather(*placing)
    assert len(set(order_ids)) == count

    gateway = asyncio.Semaphore(3)
    paid: list[str] = []

    async def pay(order_id: str) -> None:
        invoice = await eventually_value(
            lambda: _invoices(oms, order_id), lambda found: len(found) == 1, timeout=90
        )
        reference = f"gw-{order_id}"
        async with gateway:
            for _ in range(2):  # the gateway calls back twice with the same reference
                response = await with_retries(
                    lambda: oms.pay(order_id, invoice[0]["amount"], reference=reference)
                )
                assert response.status_code in (200, 201), response.text
        paid.append(order_id)

    paying = [asyncio.create_task(pay(order_id)) for order_id in order_ids]
    await eventually_value(lambda: _value(len(paid)), lambda n: n >= count // 3, timeout=120)
    oms.platform.kill("billing")
    paid_at_kill = await _orders_paid(e2e_settings, order_ids)
    assert count // 3 <= paid_at_kill < count  # payments provably mid-flight
    await asyncio.to_thread(oms.platform.start, "billing")
    await asyncio.gather(*paying)

    # Without the kills every order would be paid once and confirmed: so it must be now.
    for order_id in order_ids:
        await eventually_value(
            lambda order_id=order_id: _outcome(oms, order_id),
            lambda outcome: outcome["status"] == "confirmed",
            timeout=90,
        )
        order = await oms.get_order(order_id)
        payments = (await oms.billing.get("/payments", params={"order_id": order_id})).json()
        assert [p["outcome"] for p in payments] == ["succeeded"], payments
        assert money(order["amount_paid"]) == Decimal("30.00")
        assert await oms.refunds(order_id) == []
    assert sorted(await _orders_of_sku(e2e_settings, sku)) == sorted(order_ids)  # no duplicate order
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"]) == (100, count)
    report = await invariants.check(e2e_settings, order_ids)
    assert report.violations == [], report.as_dict()


async def _value(value: Any) -> Any:
    return value


async def _stages(settings: RuntimeSettings, order_ids: list[str]) -> dict[str, str]:
    """Each order's saga stage, straight from the order service's database."""
    conn = await asyncpg.connect(settings.dsn("order"))
    try:
        rows = await conn.fetch(
            "SELECT order_id, stage FROM orders WHERE order_id = ANY($1::text[])", order_ids
        )
    finally:
        await conn.close()
    return {row["order_id"]: row["stage"] for row in rows}


async def _orders_paid(settings: RuntimeSettings, order_ids: list[str]) -> int:
    conn = await asyncpg.connect(settings.dsn("billing"))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(DISTINCT payload->>'order_id') FROM events"
                " WHERE event_type = 'PaymentReceived' AND payload->>'order_id' = ANY($1::text[])",
                order_ids,
            )
        )
    finally:
        await conn.close()


async def _orders_of_sku(settings: RuntimeSettings, sku: str) -> list[str]:
    conn = await asyncpg.connect(settings.dsn("order"))
    try:
        rows = await conn.fetch(
            "SELECT order_id FROM orders WHERE lines @> $1::jsonb", json.dumps([{"sku": sku}])
        )
    finally:
        await conn.close()
    return [row["order_id"] for row in rows]


async def _invoices(oms: Oms, order_id: str) -> list[dict[str, Any]]:
    try:
        response = await oms.billing.get("/invoices", params={"order_id": order_id})
    except httpx.TransportError:
        return []
    return list(response.json()) if response.status_code == 200 else []


async def _outcome(oms: Oms, order_id: str) -> dict[str, Any]:
    try:
        response = await oms.order.get(f"/orders/{order_id}")
    except httpx.TransportError:
        return {"status": "unreachable"}
    order = response.json()
    return {"status": order.get("status"), "reason": order.get("reason")}


async def test_intake_topic_submissions_are_idempotent_and_poison_is_dead_lettered(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 5)
    reference = f"mp-{uuid4().hex[:8]}"
    # On account: confirmed as soon as it is invoiced, nobody has to pay.
    customer = await account_customer(oms)
    body = order_body(
        sku, channel=INTAKE_ACCOUNT_CHANNEL, customer=customer, external_id=reference, terms="on_account"
    )
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
                actor=f"channel:{INTAKE_ACCOUNT_CHANNEL}",
            )
        )

    poison = b'{"event_type": "SubmitOrder"}'
    producer = AIOKafkaProducer(bootstrap_servers=e2e_settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = e2e_settings.topic(ORDER_INTAKE)
        for value in (envelope(), envelope(), poison):
            last = await producer.send_and_wait(topic, value, key=reference.encode())
    finally:
        await producer.stop()

    async def listed() -> list[dict[str, Any]]:
        response = await oms.order.get(
            "/orders", params={"channel": INTAKE_ACCOUNT_CHANNEL, "customer_id": customer["id"]}
        )
        return list(response.json()["items"])

    # Generous: the previous test restarted the order service, whose group may still rebalance.
    orders = await eventually_value(listed, lambda items: len(items) >= 1, timeout=90)
    await oms.wait_status(orders[0]["order_id"], "confirmed", timeout=60)
    assert len(await listed()) == 1
    assert orders[0]["external_id"] == reference

    group = e2e_settings.topic("order-intake")
    await eventually(lambda: consumed_through(e2e_settings, group, last), timeout=60)
    # This test's messages only: the intake tests dead-letter refused messages of their own.
    dead = [r for r in await read_all(e2e_settings, dead_letter_topic(group)) if r.key == reference.encode()]
    # The poison once, and neither submission.
    assert [record.value for record in dead] == [poison]
    assert dict(dead[0].headers)["dlq.reason"].startswith(b"undecodable: invalid envelope")
