"""Two inventory replicas on scarce stock, and a compensation nobody answers. On a platform of
their own: one runs a second inventory replica, the other stops billing and needs compensations
retried within seconds, neither of which the shared platform's tests should meet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer, account_customers
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tools import invariants
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration

INVENTORY_REPLICAS = ("inventory", "inventory#2")
COMPENSATION_MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def own_settings() -> RuntimeSettings:
    return platform_settings(f"omrep_{RUN_ID}", f"r{RUN_ID}.")


@pytest.fixture(scope="module")
async def own(own_settings: RuntimeSettings) -> AsyncIterator[Oms]:
    env = {
        "OM_ORDER_COMPENSATION_RETRY_SECONDS": "1",
        "OM_ORDER_COMPENSATION_MAX_ATTEMPTS": str(COMPENSATION_MAX_ATTEMPTS),
    }
    async with running_platform("replicas", own_settings, env, replicas=("inventory#2",)) as platform:
        oms = Oms(platform)
        try:
            yield oms
        finally:
            await oms.close()


async def metric(platform: Platform, name: str, sample: str, **labels: str) -> float:
    """A counter as one process's /metrics shows it (0 if it has no such sample yet)."""
    async with httpx.AsyncClient(base_url=platform.url(name), timeout=10) as client:
        text = (await client.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


async def reservations_handled(platform: Platform) -> dict[str, float]:
    return {
        name: await metric(
            platform, name, "ordermesh_messages_handled_total", event_type="ReserveStock", outcome="handled"
        )
        for name in INVENTORY_REPLICAS
    }


async def test_two_inventory_replicas_never_oversell_scarce_stock(
    own: Oms, own_settings: RuntimeSettings, sku: str
) -> None:
    # Both replicas must hold partitions of the command topic before the burst: place orders
    # of another SKU until each replica has reserved stock for one.
    warm_up = f"SKU-{uuid4().hex[:10]}"
    await own.receive(warm_up, 1000)

    async def place_one_and_count() -> dict[str, float]:
        customer = await account_customer(own)
        await own.place(order_body(warm_up, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer))
        return await reservations_handled(own.platform)

    await eventually_value(place_one_and_count, lambda handled: min(handled.values()) > 0, timeout=90)
    await own.receive(sku, 12, warehouse="NORTH")
    await own.receive(sku, 8, warehouse="SOUTH")
    before = await reservations_handled(own.platform)
    in_flight = asyncio.Semaphore(20)

    async def place(customer: dict[str, Any]) -> str:
        async with in_flight:
            return await own.place(
                order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
            )

    order_ids = await asyncio.gather(*(place(customer) for customer in await account_customers(own, 60)))

    async def statuses() -> dict[str, int]:
        counts: dict[str, int] = {}
        for order_id in order_ids:
            status = (await own.get_order(order_id))["status"]
            counts[status] = counts.get(status, 0) + 1
        return counts

    counts = await eventually_value(
        statuses, lambda c: c.get("confirmed", 0) + c.get("awaiting_stock", 0) == 60, timeout=120
    )
    assert counts == {"confirmed": 20, "awaiting_stock": 40}
    stock = await own.stock(sku)
    assert [(w["warehouse"], w["on_hand"], w["reserved"]) for w in stock["warehouses"]] == [
        ("NORTH", 12, 12),
        ("SOUTH", 8, 8),
    ]
    assert len(stock["backorders"]) == 40
    after = await reservations_handled(own.platform)
    assert all(after[name] > before[name] for name in INVENTORY_REPLICAS), (before, after)  # both took part
    report = await invariants.check(own_settings, order_ids)
    assert report.violations == [], report.as_dict()


async def test_a_compensation_nobody_answers_parks_the_order_until_the_answer_comes(
    own: Oms, sku: str
) -> None:
    await own.receive(sku, 3)
    order_id = await own.place(order_body(sku, quantity=2))
    await own.wait_status(order_id, "awaiting_payment")
    parked_before = await metric(own.platform, "order", "ordermesh_needs_attention_total")
    own.platform.kill("billing")  # VoidInvoice will go unanswered
    try:
        cancelled = await own.order.post(f"/orders/{order_id}/cancel", json={"reason": "changed mind"})
        assert cancelled.status_code == 202, cancelled.text  # its compensations are under way

        parked = await own.wait_status(order_id, "needs_attention", timeout=60)

        assert parked["reason"] == (
            f"void_invoice got no answer from billing after {COMPENSATION_MAX_ATTEMPTS} attempts"
        )
        requested = [
            e["details"]["attempt"]
            for e in parked["timeline"]
            if e["type"] == "CompensationStepRequested" and e["details"]["step"] == "void_invoice"
        ]
        assert requested == list(range(1, COMPENSATION_MAX_ATTEMPTS + 1))
        completed = [
            e["details"]["step"] for e in parked["timeline"] if e["type"] == "CompensationStepCompleted"
        ]
        assert completed == ["release_stock"]  # inventory answered; its part is undone
        assert (await own.stock(sku))["reserved"] == 0
        assert await metric(own.platform, "order", "ordermesh_needs_attention_total") == parked_before + 1
    finally:
        await asyncio.to_thread(own.platform.start, "billing")

    # Billing back: the VoidInvoice commands waiting for it are answered, and the saga ends.
    order = await own.wait_status(order_id, "cancelled", timeout=90)
    assert order["reason"] == "cancelled: changed mind"
    assert (await own.invoice(order_id))["status"] == "void"
