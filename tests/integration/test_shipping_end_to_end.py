"""From confirmed to completed, through the real order, inventory and billing services: the
order follows its shipments (one per warehouse) as the warehouse picks, packs and dispatches
them and the carrier delivers them; it completes when delivered and paid in full."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, money, order_body
from tools.processes import eventually_value

pytestmark = pytest.mark.integration

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


async def shipments_of(oms: Oms, order_id: str, count: int) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return list(response.json())

    found = await eventually_value(fetch, lambda shipments: len(shipments) == count, timeout=60)
    return sorted(found, key=lambda s: s["warehouse"])


async def step(oms: Oms, shipment_id: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await oms.inventory.post(f"/shipments/{shipment_id}/{action}", json=body or {})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def confirmed_order(oms: Oms, body: dict[str, Any]) -> str:
    order_id = await oms.place(body)
    if body["payment_terms"] == "prepaid":
        invoice = await oms.invoice(order_id)
        assert (await oms.pay(order_id, invoice["amount"])).status_code == 201
    await oms.wait_status(order_id, "confirmed")
    return order_id


async def test_an_order_reserved_in_two_warehouses_ships_as_two_parcels_and_completes(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 2, "NORTH")
    await oms.receive(sku, 3, "SOUTH")
    body = order_body(sku, 5, "10.00", shipping={"method": "standard", "address": ADDRESS})
    order_id = await confirmed_order(oms, body)

    north, south = await shipments_of(oms, order_id, 2)
    assert [(s["warehouse"], s["lines"], s["status"]) for s in (north, south)] == [
        ("NORTH", [{"sku": sku, "quantity": 2}], "pending"),
        ("SOUTH", [{"sku": sku, "quantity": 3}], "pending"),
    ]
    for shipment in (north, south):
        await step(oms, shipment["shipment_id"], "pick")
        await step(oms, shipment["shipment_id"], "pack", {"weight_kg": "1.5", "parcels": 1})
    await step(
        oms, north["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"TRK-{order_id}-N"}
    )

    partly = await oms.wait_status(order_id, "partially_shipped")
    refused = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "too late"})
    assert refused.status_code == 409, refused.text
    assert "left the warehouse" in refused.json()["detail"]
    assert partly["status"] == "partially_shipped"

    await step(
        oms, south["shipment_id"], "dispatch", {"carrier": "UPS", "tracking_number": f"TRK-{order_id}-S"}
    )
    shipped = await oms.wait_status(order_id, "shipped")
    assert {(s["warehouse"], s["status"], s["tracking_number"]) for s in shipped["shipments"]} == {
        ("NORTH", "dispatched", f"TRK-{order_id}-N"),
        ("SOUTH", "dispatched", f"TRK-{order_id}-S"),
    }
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (0, 0, 0)  # fell together

    carrier = await oms.inventory.post(
        "/carrier-events",
        json={
            "tracking_number": f"TRK-{order_id}-N",
            "status": "delivered",
            "location": "Springfield",
            "occurred_at": "2026-11-22T10:00:00Z",
        },
    )
    assert carrier.status_code in (200, 201), carrier.text
    await step(oms, south["shipment_id"], "deliver")

    completed = await oms.wait_status(order_id, "completed")
    kinds = [entry["type"] for entry in completed["timeline"]]
    assert kinds[-2:] == ["OrderDelivered", "OrderCompleted"]
    assert (kinds.count("OrderPartiallyShipped"), kinds.count("OrderShipped")) == (1, 1)


async def test_a_pickup_order_is_completed_when_collected(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 1, "NORTH")
    order_id = await confirmed_order(oms, order_body(sku))  # pickup, prepaid

    (shipment,) = await shipments_of(oms, order_id, 1)
    for action in ("pick", "pack", "ready-for-pickup", "collect"):
        await step(oms, shipment["shipment_id"], action)

    completed = await oms.wait_status(order_id, "completed")
    assert completed["shipments"][0]["status"] == "collected"


async def test_an_on_account_order_delivered_completes_only_when_paid_in_full(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 1, "NORTH")
    body = order_body(
        sku,
        1,
        "10.00",
        terms="on_account",
        channel=ACCOUNT_CHANNEL,
        customer=await account_customer(oms),
        shipping={"method": "standard", "address": ADDRESS},
    )
    order_id = await confirmed_order(oms, body)
    (shipment,) = await shipments_of(oms, order_id, 1)
    await step(oms, shipment["shipment_id"], "pick")
    await step(oms, shipment["shipment_id"], "pack")
    await step(
        oms, shipment["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"T-{order_id}"}
    )
    await step(oms, shipment["shipment_id"], "deliver")
    delivered = await oms.wait_status(order_id, "delivered")
    assert delivered["status"] == "delivered"

    invoice = await oms.invoice(order_id)
    assert (await oms.pay(order_id, invoice["amount"])).status_code == 201

    completed = await oms.wait_status(order_id, "completed")
    assert money(completed["amount_paid"]) == money(invoice["amount"])


async def test_cancelling_before_dispatch_cancels_the_shipments_and_releases_the_stock(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 2, "NORTH")
    order_id = await confirmed_order(oms, order_body(sku, 2))
    (shipment,) = await shipments_of(oms, order_id, 1)
    await step(oms, shipment["shipment_id"], "pick")

    response = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "customer changed mind"})

    assert response.status_code in (200, 202), response.text
    await oms.wait_status(order_id, "cancelled")
    cancelled = await eventually_value(
        lambda: oms.inventory.get(f"/shipments/{shipment['shipment_id']}"),
        lambda r: r.json()["status"] == "cancelled",
        timeout=30,
    )
    assert cancelled.json()["status"] == "cancelled"
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (2, 0, 2)


async def put_product(oms: Oms, sku: str, **overrides: Any) -> None:
    body = {
        "name": "Garden chair",
        "category": "garden",
        "unit": "piece",
        "weight_kg": "4.250",
        "manufactured": False,
        "list_prices": {"EUR": "40.00"},
        **overrides,
    }
    response = await oms.inventory.put(f"/products/{sku}", json=body)
    assert response.status_code in (200, 201), response.text


async def test_a_line_priced_far_below_its_list_price_is_held_with_that_reason(oms: Oms, sku: str) -> None:
    await put_product(oms, sku)
    await oms.receive(sku, 5)

    async def held_for_price() -> dict[str, Any]:
        order_id = await oms.place(order_body(sku, 1, "4.00"))  # a typo for 40.00
        return await oms.wait_status(order_id, "on_hold", "awaiting_payment")

    # The order service learns the catalogue from inventory's events: wait until it has.
    order = await eventually_value(held_for_price, lambda o: o["status"] == "on_hold", timeout=60)

    assert "line " + sku + " is priced 4.00 EUR, 90.0% below its list price of 40.00" in order["reason"]
    fair = await oms.place(order_body(sku, 1, "39.00"))
    assert (await oms.wait_status(fair, "awaiting_payment"))["status"] == "awaiting_payment"


async def test_an_unknown_sku_is_sold_but_flagged_and_a_known_one_carries_its_weight(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    unknown = await oms.place(order_body(sku))
    placed = (await oms.get_order(unknown))["timeline"][0]
    assert placed["type"] == "OrderPlaced"
    assert (placed["details"]["unknown_skus"], placed["details"]["weight_kg"]) == ([sku], None)
    await oms.wait_status(unknown, "awaiting_payment")

    await put_product(oms, sku, list_prices={})

    async def weight_of_new_order() -> Any:
        order_id = await oms.place(order_body(sku, 2))
        return (await oms.get_order(order_id))["timeline"][0]["details"]

    details = await eventually_value(weight_of_new_order, lambda d: d["unknown_skus"] == [], timeout=60)
    assert money(details["weight_kg"]) == money("8.500")
