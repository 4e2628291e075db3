"""Shipping fee rules (issue 9) through the real platform: billing started with a rule set in
OM_BILLING_SHIPPING_RULES charges each invoice the fee its method, destination, weight and
order value call for, and says on the invoice which rule applied.

Orders placed over HTTP show the method and free-shipping cases. The order service does not
send a destination or a weight yet, so those cases publish IssueInvoice commands to the
billing commands topic as the saga would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from libs.events import encode, make_envelope
from libs.events.billing import IssueInvoice
from libs.events.topics import BILLING_COMMANDS
from libs.events.values import OrderLine, ShippingMethod
from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tools.processes import Platform

pytestmark = pytest.mark.integration

RULES = {
    "EUR": {
        "standard": {
            "fee": "4.90",
            "free_from": "60.00",
            "destinations": [
                {"country": "CH", "fee": "19.90", "free_from": None},
                {"region": "islands", "fee": "9.90"},
            ],
            "weight": [
                {"above_kg": "5", "add": "3.00"},
                {"above_kg": "20", "add": "8.00", "per_kg": "0.50"},
            ],
        },
        "express": {"fee": "12.50"},
        "pickup": {"fee": "0.00"},
    },
    "*": {"standard": {"fee": "6.00"}, "express": {"fee": "16.00"}, "pickup": {"fee": "0.00"}},
}


@pytest.fixture(scope="module")
def shipping_settings() -> RuntimeSettings:
    return platform_settings(f"omship_{RUN_ID}", f"ts{RUN_ID}.")


@pytest.fixture(scope="module")
async def shipping_platform(shipping_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    env = {"OM_BILLING_SHIPPING_RULES": json.dumps(RULES)}
    async with running_platform("shipping", shipping_settings, env) as running:
        yield running


@pytest.fixture
async def oms(shipping_platform: Platform) -> AsyncIterator[Oms]:
    client = Oms(shipping_platform)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def saga(shipping_settings: RuntimeSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=shipping_settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send_issue_invoice(
    saga: AIOKafkaProducer,
    settings: RuntimeSettings,
    *,
    value: str,
    method: ShippingMethod = "standard",
    currency: str = "EUR",
    country: str | None = None,
    region: str | None = None,
    weight_kg: str | None = None,
) -> str:
    """An IssueInvoice for one line worth `value`, as the order saga sends it; its order id."""
    order_id = f"ORD-{uuid4().hex[:10]}"
    command = IssueInvoice(
        order_id=order_id,
        customer_id=f"CUST-{uuid4().hex[:6]}",
        currency=currency,
        lines=(OrderLine(sku="SKU-SHIP", quantity=1, unit_price=Decimal(value)),),
        payment_terms="prepaid",
        shipping_method=method,
        due_at=datetime.now(UTC) + timedelta(hours=1),
        destination_country=country,
        destination_region=region,
        weight_kg=None if weight_kg is None else Decimal(weight_kg),
    )
    envelope = make_envelope(
        command,
        event_id=uuid4(),
        aggregate_id=order_id,
        aggregate_version=0,
        occurred_at=datetime.now(UTC),
        correlation_id=order_id,
        causation_id=None,
        actor="service:order",
    )
    await saga.send_and_wait(settings.topic(BILLING_COMMANDS), encode(envelope), key=order_id.encode())
    return order_id


def delivery(method: ShippingMethod) -> dict[str, Any]:
    """To a country and (the customer's) region no rule names, whether or not the order
    service passes them on: only the method and the order value decide."""
    address = {"line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    return {"method": method, "address": address}


def charged(invoice: dict[str, Any]) -> tuple[str, str, str]:
    """Shipping fee, rule, and the total, which must include the fee and its 20% tax."""
    subtotal, fee = Decimal(invoice["subtotal"]), Decimal(invoice["shipping_fee"])
    assert Decimal(invoice["amount"]) == subtotal + fee + ((subtotal + fee) * Decimal("0.20")).quantize(
        Decimal("0.01")
    )
    return invoice["shipping_fee"], invoice["shipping_rule"], invoice["amount"]


async def test_orders_over_http_pay_their_methods_fee_unless_worth_the_free_threshold(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 10)
    standard = await oms.place(order_body(sku, 1, "25.00", shipping=delivery("standard")))
    express = await oms.place(order_body(sku, 1, "25.00", shipping=delivery("express")))
    free = await oms.place(order_body(sku, 3, "20.00", shipping=delivery("standard")))
    for order_id in (standard, express, free):
        await oms.wait_status(order_id, "awaiting_payment")

    fee, rule, total = charged(await oms.invoice(standard))
    assert (fee, total) == ("4.90", "35.88")
    assert rule.startswith("standard in EUR: base fee 4.90")
    fee, rule, total = charged(await oms.invoice(express))
    assert (fee, rule, total) == ("12.50", "express in EUR: base fee 12.50", "45.00")
    fee, rule, total = charged(await oms.invoice(free))
    assert (fee, total) == ("0.00", "72.00")
    assert rule == "standard in EUR: free from an order value of 60.00 (this order 60.00)"


async def test_invoices_are_charged_by_destination_weight_and_value(
    oms: Oms, saga: AIOKafkaProducer, shipping_settings: RuntimeSettings
) -> None:
    async def issue(**command: Any) -> str:
        return await send_issue_invoice(saga, shipping_settings, **command)

    orders = {
        "islands, light": await issue(value="20.00", region="islands", weight_kg="2"),
        "CH, light": await issue(value="20.00", country="CH", weight_kg="2"),
        "CH, over the threshold": await issue(value="100.00", country="ch", weight_kg="2"),
        "islands, over the threshold": await issue(value="75.00", region="Islands", weight_kg="30"),
        "no destination, 7.5 kg": await issue(value="20.00", weight_kg="7.5"),
        "no destination, 22.5 kg": await issue(value="20.00", weight_kg="22.5"),
        "CH, 22.5 kg": await issue(value="20.00", country="CH", weight_kg="22.5"),
        "weight unknown": await issue(value="20.00"),
        "USD": await issue(value="20.00", currency="USD", country="CH", weight_kg="30"),
    }

    found = {case: charged(await oms.invoice(order_id))[:2] for case, order_id in orders.items()}

    assert found == {
        "islands, light": ("9.90", "standard in EUR to region islands: 9.90"),
        "CH, light": ("19.90", "standard in EUR to country CH: 19.90"),
        "CH, over the threshold": ("19.90", "standard in EUR to country CH: 19.90"),
        "islands, over the threshold": (
            "0.00",
            "standard in EUR to region islands: free from an order value of 60.00 (this order 75.00)",
        ),
        "no destination, 7.5 kg": (
            "7.90",
            "standard in EUR: base fee 4.90 + 3.00 above 5 kg (7.5 kg) = 7.90",
        ),
        "no destination, 22.5 kg": (
            "14.40",
            "standard in EUR: base fee 4.90 + 8.00 + 0.50 per kg for 3 kg above 20 kg (22.5 kg) = 14.40",
        ),
        "CH, 22.5 kg": (
            "29.40",
            "standard in EUR to country CH: 19.90 + 8.00 + 0.50 per kg for 3 kg above 20 kg (22.5 kg)"
            " = 29.40",
        ),
        "weight unknown": ("4.90", "standard in EUR: base fee 4.90 (weight unknown: no weight surcharge)"),
        "USD": ("6.00", "standard in any currency: base fee 6.00"),
    }
