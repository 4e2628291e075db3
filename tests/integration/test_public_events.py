"""What oms.order.events.v1 carries, read from Kafka while orders go through the real saga:
the public contract only (OrderPlaced, OrderStatusChanged, OrderRefunded, customer events),
one OrderStatusChanged per status transition, each chained to the one before, with the
fields a reader acts on. With OM_PUBLIC_EVENTS_ONLY=false the order's own events are public
again (tests/unit/test_public_events.py), and this module checks that instead."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from libs.events import decode
from libs.events.order import OrderRefunded, OrderStatusChanged
from libs.events.topics import ORDER_EVENTS
from libs.runtime.settings import RuntimeSettings
from tests.integration.conftest import Oms, money, order_body
from tools.chaos import read_all
from tools.processes import eventually_value

PUBLIC = {
    "OrderPlaced",
    "OrderStatusChanged",
    "OrderRefunded",
    "CustomerRegistered",
    "CustomerBlocked",
    "CustomerUnblocked",
    "CustomerErased",
}


async def order_messages(settings: RuntimeSettings, order_id: str) -> list[Any]:
    """The order's messages on its topic, in order, each once (a relay may publish twice)."""
    seen, messages = set(), []
    records = await read_all(settings, settings.topic(ORDER_EVENTS))
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key != order_id.encode():
            continue
        decoded = decode(record.value)
        if decoded.envelope.event_id not in seen:
            seen.add(decoded.envelope.event_id)
            messages.append(decoded)
    return messages


async def status_chain(settings: RuntimeSettings, order_id: str, last: str) -> list[Any]:
    """The order's messages once its status change to `last` is on the topic."""

    def reached(messages: list[Any]) -> bool:
        return any(isinstance(m.message, OrderStatusChanged) and m.message.status == last for m in messages)

    return list(await eventually_value(lambda: order_messages(settings, order_id), reached, timeout=60))


def transitions(messages: list[Any]) -> list[tuple[str, str]]:
    return [
        (m.message.previous_status, m.message.status)
        for m in messages
        if isinstance(m.message, OrderStatusChanged)
    ]


def changed_to(messages: list[Any], status: str) -> OrderStatusChanged:
    (change,) = [
        m.message
        for m in messages
        if isinstance(m.message, OrderStatusChanged) and m.message.status == status
    ]
    return change


@pytest.fixture(autouse=True)
def _public_only(e2e_settings: RuntimeSettings) -> None:
    if not e2e_settings.public_events_only:
        pytest.fail("these tests read the public contract: run them with OM_PUBLIC_EVENTS_ONLY unset or true")


async def pay_in_full(oms: Oms, order_id: str) -> Decimal:
    await oms.wait_status(order_id, "awaiting_payment")
    amount = money((await oms.invoice(order_id))["amount"])
    response = await oms.pay(order_id, str(amount))
    assert response.status_code in (200, 201, 202), response.text
    return amount


async def test_a_paid_order_then_cancelled_tells_each_status_once_and_the_refund(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 3)
    order_id = await oms.place(order_body(sku, quantity=2, unit_price="12.50"))
    total = await pay_in_full(oms, order_id)
    await oms.wait_status(order_id, "confirmed")
    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "changed my mind"})
    assert cancelled.status_code == 202, cancelled.text

    messages = await status_chain(e2e_settings, order_id, "cancelled")

    assert {m.envelope.event_type for m in messages} <= PUBLIC
    assert transitions(messages) == [
        ("placed", "approved"),
        ("approved", "awaiting_payment"),
        ("awaiting_payment", "confirmed"),
        ("confirmed", "cancelled"),
    ]
    assert messages[0].envelope.event_type == "OrderPlaced"
    versions = [m.envelope.aggregate_version for m in messages]
    assert versions == sorted(versions)  # in the order's stream order
    waiting = changed_to(messages, "awaiting_payment")
    assert (waiting.channel, waiting.currency, waiting.payment_terms) == ("web", "EUR", "prepaid")
    assert waiting.subtotal == Decimal("25.00") and waiting.total == total
    assert waiting.invoice_id and waiting.payment_deadline is not None and waiting.amount_paid == 0
    assert [(a.sku, a.warehouse, a.quantity) for a in waiting.allocations] == [(sku, "NORTH", 2)]
    confirmed = changed_to(messages, "confirmed")
    assert (confirmed.amount_paid, confirmed.invoice_id, confirmed.payment_deadline) == (
        total,
        waiting.invoice_id,
        None,
    )
    (refund,) = [m.message for m in messages if isinstance(m.message, OrderRefunded)]
    assert refund.amount == total
    ended = changed_to(messages, "cancelled")
    assert ended.reason is not None and "changed my mind" in ended.reason
    assert (ended.amount_paid, ended.amount_refunded) == (total, total)
    assert ended.customer_id == waiting.customer_id


async def test_a_held_order_tells_its_hold_with_the_reasons_then_its_approval(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(order_body(sku, unit_price="6000.00"))  # over the review's limit
    await oms.wait_status(order_id, "on_hold")
    approved = await oms.order.post(f"/orders/{order_id}/approve")
    assert approved.status_code in (200, 202), approved.text
    await pay_in_full(oms, order_id)

    messages = await status_chain(e2e_settings, order_id, "confirmed")

    assert {m.envelope.event_type for m in messages} <= PUBLIC
    assert transitions(messages) == [
        ("placed", "on_hold"),
        ("on_hold", "approved"),
        ("approved", "awaiting_payment"),
        ("awaiting_payment", "confirmed"),
    ]
    held = changed_to(messages, "on_hold")
    assert held.hold_reasons and held.reason == "; ".join(held.hold_reasons)
    assert any("6000.00" in reason for reason in held.hold_reasons), held.hold_reasons
    assert changed_to(messages, "approved").reason is None
    assert changed_to(messages, "confirmed").amount_paid == changed_to(messages, "confirmed").total
