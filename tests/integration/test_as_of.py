"""As-of queries from the event history: GET /orders/{id}?as_of= and GET /stock/{sku}?as_of= answer
what the order and the stock were at a past time, folded from their streams on the real platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from libs.security.dev_issuer import bearer
from tests.integration.conftest import Oms, money, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration


async def order_as_of(oms: Oms, order_id: str, as_of: str) -> httpx.Response:
    return await oms.order.get(f"/orders/{order_id}", params={"as_of": as_of})


async def stock_as_of(client: httpx.AsyncClient, sku: str, as_of: datetime) -> httpx.Response:
    return await client.get(f"/stock/{sku}", params={"as_of": as_of.isoformat()})


def event_time(order: dict[str, Any], event_type: str) -> str:
    return str(next(entry["at"] for entry in order["timeline"] if entry["type"] == event_type))


def recorded_by(order: dict[str, Any], moment: str) -> list[dict[str, Any]]:
    until = datetime.fromisoformat(moment)
    return [entry for entry in order["timeline"] if datetime.fromisoformat(entry["at"]) <= until]


async def test_order_as_of_answers_each_state_it_passed_through(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 10)
    order_id = await oms.place(order_body(sku, quantity=2, unit_price="25.00"))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    assert (await oms.pay(order_id, invoice["amount"])).status_code == 201
    await oms.wait_status(order_id, "confirmed")
    # Confirmed, it asks for its shipment; once the warehouse created it, nothing changes it
    # until someone picks: a still picture to compare with.
    now = await eventually_value(
        lambda: oms.get_order(order_id), lambda order: any(order["shipments"]), timeout=30
    )

    # The review's decision is recorded in the placement's transaction, at the same instant.
    placed_at = event_time(now, "OrderPlaced")
    at_placement = await order_as_of(oms, order_id, placed_at)
    assert at_placement.status_code == 200, at_placement.text
    then = at_placement.json()
    assert (then["status"], then["invoice_id"], then["total"]) == ("approved", None, None)
    assert then["timeline"] == recorded_by(now, placed_at)
    assert then["lines"] == now["lines"] and then["customer_name"] == now["customer_name"]

    waiting = (await order_as_of(oms, order_id, event_time(now, "OrderAwaitingPayment"))).json()
    assert (waiting["status"], waiting["payment_status"]) == ("awaiting_payment", "unpaid")
    assert money(waiting["total"]) == Decimal("60.00") and money(waiting["amount_paid"]) == 0
    assert waiting["timeline"] == recorded_by(now, event_time(now, "OrderAwaitingPayment"))

    # At the time of its last event (or any time after) the order is as the live read shows it.
    latest = (await order_as_of(oms, order_id, now["timeline"][-1]["at"])).json()
    later = (await order_as_of(oms, order_id, (datetime.now(UTC) + timedelta(days=1)).isoformat())).json()
    for field in (
        *("status", "stage", "total", "amount_paid", "payment_status", "invoice_id"),
        *("shipments", "timeline"),
    ):
        assert latest[field] == now[field] == later[field], field


async def test_order_as_of_before_it_was_placed_is_not_found(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 5)
    order_id = await oms.place(order_body(sku))
    placed_at = datetime.fromisoformat(event_time(await oms.get_order(order_id), "OrderPlaced"))

    before = await order_as_of(oms, order_id, (placed_at - timedelta(microseconds=1)).isoformat())

    assert before.status_code == 404, before.text
    assert before.json()["code"] == "unknown_order"


@pytest.mark.parametrize("as_of", ["yesterday", "2026-13-01T00:00:00Z", "2026-03-01T12:00:00"])
async def test_a_bad_as_of_is_refused_naming_it(oms: Oms, sku: str, as_of: str) -> None:
    # The last is well formed but has no time zone: which instant it means would be a guess.
    for response in (
        await oms.order.get("/orders/any-order", params={"as_of": as_of}),
        await oms.inventory.get(f"/stock/{sku}", params={"as_of": as_of}),
    ):
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == ["as_of"]


async def test_stock_as_of_answers_the_levels_then(oms: Oms, platform: Platform, sku: str) -> None:
    before_any = datetime.now(UTC)
    await oms.receive(sku, 10, "NORTH")
    after_north = datetime.now(UTC)
    await oms.receive(sku, 4, "SOUTH")
    after_south = datetime.now(UTC)
    await oms.place(order_body(sku, quantity=3))  # reserved while it awaits payment
    await eventually_value(lambda: oms.stock(sku), lambda stock: stock["reserved"] == 3)
    now = await oms.stock(sku)

    assert (await stock_as_of(oms.inventory, sku, before_any)).status_code == 404
    first = (await stock_as_of(oms.inventory, sku, after_north)).json()
    assert [(w["warehouse"], w["on_hand"], w["reserved"]) for w in first["warehouses"]] == [("NORTH", 10, 0)]
    second = (await stock_as_of(oms.inventory, sku, after_south)).json()
    assert (second["on_hand"], second["reserved"], second["available"]) == (14, 0, 14)
    assert (await stock_as_of(oms.inventory, sku, datetime.now(UTC))).json() == now

    # A warehouse clerk sees the warehouses of their token, then as now.
    async with httpx.AsyncClient(
        base_url=platform.url("inventory"), headers=bearer("warehouse", warehouses=["SOUTH"])
    ) as south_clerk:
        seen = (await stock_as_of(south_clerk, sku, after_south)).json()
    assert [(w["warehouse"], w["on_hand"]) for w in seen["warehouses"]] == [("SOUTH", 4)]
    assert seen["on_hand"] == 4
