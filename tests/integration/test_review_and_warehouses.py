"""The order desk and the warehouses end to end: an order held for its value and rejected by a
person, the review limit as a threshold, and one order's stock taken from two warehouses."""

from __future__ import annotations

from typing import Any

import pytest

from libs.security.dev_issuer import bearer
from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, order_body

pytestmark = pytest.mark.integration


def timeline_types(order: dict[str, Any]) -> list[str]:
    return [entry["type"] for entry in order["timeline"]]


async def test_order_over_the_amount_limit_is_held_with_that_reason_and_rejected_by_a_person(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    order_id = await oms.place(order_body(sku, quantity=2, unit_price="3000.00"))

    held = await oms.wait_status(order_id, "on_hold")
    assert held["reason"] == "order value 6000.00 EUR is over the review limit of 5000.00 EUR"

    no_reason = await oms.order.post(f"/orders/{order_id}/reject", json={})
    assert no_reason.status_code == 422
    assert {error["field"] for error in no_reason.json()["errors"]} == {"reason"}
    rejected = await oms.order.post(
        f"/orders/{order_id}/reject",
        json={"reason": "customer could not confirm"},
        headers=bearer("order_desk", subject="olga"),
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["order_id"], rejected.json()["status"]) == (order_id, "rejected")

    order = await oms.get_order(order_id)
    assert (order["status"], order["reason"]) == ("rejected", "customer could not confirm")
    assert timeline_types(order) == ["OrderPlaced", "OrderHeld", "OrderRejected"]
    rejection = order["timeline"][-1]
    assert rejection["actor"] == "user:olga"
    assert rejection["details"]["rejected_by"] == "user:olga"
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"]) == (0, 5)  # never reserved, never invoiced
    again = await oms.order.post(f"/orders/{order_id}/reject", json={"reason": "twice"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert "only held orders can be rejected" in again.json()["detail"]


async def test_an_order_at_the_amount_limit_is_not_held(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 2)
    order_id = await oms.place(order_body(sku, quantity=2, unit_price="2500.00"))  # exactly 5000.00

    order = await oms.wait_status(order_id, "awaiting_payment", "on_hold")

    assert order["status"] == "awaiting_payment", order["reason"]
    assert "OrderApproved" in timeline_types(order)


async def test_an_order_no_warehouse_can_fill_alone_is_split_and_released_from_both(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 2, warehouse="NORTH")
    await oms.receive(sku, 3, warehouse="SOUTH")
    customer = await account_customer(oms)
    order_id = await oms.place(
        order_body(sku, quantity=5, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )

    order = await oms.wait_status(order_id, "confirmed")

    split = [
        {"sku": sku, "warehouse": "NORTH", "quantity": 2},  # the customer's region first
        {"sku": sku, "warehouse": "SOUTH", "quantity": 3},
    ]
    allocated = next(e for e in order["timeline"] if e["type"] == "OrderStockAllocated")
    assert sorted(allocated["details"]["allocations"], key=lambda a: a["warehouse"]) == split
    reservation = (await oms.inventory.get(f"/reservations/{order_id}")).json()
    assert reservation["status"] == "reserved"
    assert sorted(reservation["allocations"], key=lambda a: a["warehouse"]) == split
    assert [(w["warehouse"], w["on_hand"], w["reserved"]) for w in (await oms.stock(sku))["warehouses"]] == [
        ("NORTH", 2, 2),
        ("SOUTH", 3, 3),
    ]

    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "changed mind"})
    assert cancelled.status_code == 202, cancelled.text  # its stock is being released
    await oms.wait_status(order_id, "cancelled")

    assert [(w["warehouse"], w["on_hand"], w["reserved"]) for w in (await oms.stock(sku))["warehouses"]] == [
        ("NORTH", 2, 0),
        ("SOUTH", 3, 0),
    ]
    assert (await oms.inventory.get(f"/reservations/{order_id}")).json()["status"] == "released"
