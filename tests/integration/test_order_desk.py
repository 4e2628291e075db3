"""The order desk's changes through the real order, inventory and billing services
(docs/order-desk.md): a paid order amended up (the difference is charged, its shipments made
again once paid) and down (the difference refunded), only the changed lines re-reserved; a
backordered order split so the in-stock part ships now and the rest follows with its money;
two orders merged into one with one shipping fee, and the merges that are refused."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from tests.integration.conftest import Oms, money, order_body
from tests.integration.test_shipping_end_to_end import confirmed_order, step
from tools import invariants
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration

ADDRESS = {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
DELIVERY = {"method": "standard", "address": ADDRESS}


def two_line_body(first: str, second: str, *, customer: dict[str, Any] | None = None) -> dict[str, Any]:
    body = order_body(first, 2, "10.00", shipping=DELIVERY, customer=customer)
    body["lines"].append({"sku": second, "quantity": 1, "unit_price": "5.00"})
    return body


async def change_done(oms: Oms, order_id: str, *statuses: str) -> dict[str, Any]:
    """The order once no change is under way, in one of `statuses`."""
    return dict(
        await eventually_value(
            lambda: oms.get_order(order_id),
            lambda o: o.get("change") is None and o["status"] in statuses,
            timeout=60,
        )
    )


async def live_shipments(oms: Oms, order_id: str, count: int) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return [s for s in response.json() if s["status"] != "cancelled"]

    try:
        return list(await eventually_value(fetch, lambda found: len(found) == count, timeout=60))
    except AssertionError as missing:
        # What the order and inventory knew, so a failure says where the shipments stopped.
        timeline = [
            (entry["type"], entry["details"]) for entry in (await oms.get_order(order_id))["timeline"]
        ]
        every = (await oms.inventory.get("/shipments", params={"order_id": order_id})).json()
        raise AssertionError(f"{missing}; shipments {every}; order timeline {timeline[-8:]}") from None


async def invoice_when(oms: Oms, order_id: str, done: Any) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await oms.billing.get("/invoices", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        found = response.json()
        return dict(found[0]) if found else {}

    return dict(await eventually_value(fetch, lambda invoice: bool(invoice) and done(invoice), timeout=60))


async def test_a_paid_order_amended_up_then_down_keeps_its_money_and_only_the_changed_line_moves(
    oms: Oms, e2e_settings: RuntimeSettings
) -> None:
    a, b = f"SKU-{uuid4().hex[:10]}", f"SKU-{uuid4().hex[:10]}"
    await oms.receive(a, 2)  # exactly what the order holds: a release would hand it to the waiter
    await oms.receive(b, 5)
    order_id = await confirmed_order(oms, two_line_body(a, b))
    paid = money((await oms.invoice(order_id))["amount"])
    (first_shipment,) = await live_shipments(oms, order_id, 1)
    # Another customer waits for SKU a: were the order's units of a released and reserved
    # again, first-in-first-out would give them to this order.
    waiter = await oms.place(order_body(a, 1, "10.00"))
    await oms.wait_status(waiter, "awaiting_stock")

    up = await oms.order.post(
        f"/orders/{order_id}/amend",
        json={
            "lines": [
                {"sku": a, "quantity": 2, "unit_price": "10.00"},
                {"sku": b, "quantity": 3, "unit_price": "5.00"},
            ],
            "reason": "customer called: two more",
        },
    )
    assert up.status_code == 202, up.text
    assert up.json()["state"] == "under_way"
    owed = await change_done(oms, order_id, "awaiting_payment")
    assert [(line["sku"], line["quantity"]) for line in owed["lines"]] == [(a, 2), (b, 3)]
    invoice = await oms.invoice(order_id)
    total = money(invoice["amount"])
    assert total > paid and money(invoice["amount_paid"]) == paid, "the money paid is kept"
    assert any(change["document_kind"] == "supplementary_invoice" for change in invoice["changes"])
    assert (await oms.stock(a))["reserved"] == 2 and (await oms.get_order(waiter))[
        "status"
    ] == "awaiting_stock"
    assert (await oms.stock(b))["reserved"] == 3
    # The parcel not yet dispatched was cancelled; the new one is made once the difference is paid.
    response = await oms.inventory.get(f"/shipments/{first_shipment['shipment_id']}")
    assert response.json()["status"] == "cancelled"
    assert (await oms.pay(order_id, str(total - paid))).status_code == 201
    await change_done(oms, order_id, "confirmed")
    (shipment,) = await live_shipments(oms, order_id, 1)
    assert sorted((line["sku"], line["quantity"]) for line in shipment["lines"]) == sorted([(a, 2), (b, 3)])

    down = await oms.order.post(
        f"/orders/{order_id}/amend",
        json={
            "lines": [
                {"sku": a, "quantity": 2, "unit_price": "10.00"},
                {"sku": b, "quantity": 1, "unit_price": "5.00"},
            ],
            "reason": "two fewer after all",
        },
    )
    assert down.status_code == 202, down.text
    order = await change_done(oms, order_id, "confirmed")
    invoice = await invoice_when(oms, order_id, lambda i: money(i["amount"]) < total)
    refunds = await oms.refunds(order_id)
    assert [money(r["amount"]) for r in refunds] == [total - money(invoice["amount"])], (
        "exactly the difference"
    )
    assert money(order["amount_refunded"]) == total - money(invoice["amount"])
    assert (await oms.stock(b))["reserved"] == 1 and (await oms.stock(a))["reserved"] == 2
    timeline = [entry["type"] for entry in order["timeline"]]
    assert timeline.count("OrderAmended") == 2

    # A parcel that left the warehouse cannot be amended any more.
    (shipment,) = await live_shipments(oms, order_id, 1)
    for action in ("pick", "pack"):
        await step(oms, shipment["shipment_id"], action)
    await step(
        oms, shipment["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"T-{order_id}"}
    )
    await oms.wait_status(order_id, "shipped")
    late = await oms.order.post(
        f"/orders/{order_id}/amend",
        json={"shipping": {"method": "express", "address": ADDRESS}, "reason": "faster"},
    )
    assert late.status_code == 409 and "left the warehouse" in late.json()["detail"]
    report = await invariants.check(e2e_settings, [order_id, waiter])
    assert report.violations == [], report.as_dict()


async def test_a_backordered_order_split_ships_the_in_stock_part_now_and_the_rest_with_its_money(
    oms: Oms, e2e_settings: RuntimeSettings
) -> None:
    a, b = f"SKU-{uuid4().hex[:10]}", f"SKU-{uuid4().hex[:10]}"
    await oms.receive(a, 2)
    order_id = await oms.place(two_line_body(a, b))  # b has no stock: the order waits for it
    await oms.wait_status(order_id, "awaiting_stock")
    invoice = await oms.invoice(order_id)
    paid = money(invoice["amount"])
    assert (await oms.pay(order_id, str(paid))).status_code == 201  # paid up front

    split = await oms.order.post(
        f"/orders/{order_id}/split",
        json={"lines": [{"sku": b, "quantity": 1}], "reason": "ship what we have"},
    )
    assert split.status_code == 202, split.text
    new_id = split.json()["new_order_id"]

    source = await change_done(oms, order_id, "confirmed")
    assert source["split_into"] == [new_id]
    assert [(line["sku"], line["quantity"]) for line in source["lines"]] == [(a, 2)]
    (shipment,) = await live_shipments(oms, order_id, 1)
    assert [(line["sku"], line["quantity"]) for line in shipment["lines"]] == [(a, 2)]
    new = await oms.wait_status(new_id, "awaiting_stock")
    assert new["split_from"] == order_id
    moved = await invoice_when(oms, new_id, lambda i: i["status"] == "paid")
    kept = await oms.invoice(order_id)
    assert money(kept["amount"]) + money(moved["amount"]) == paid, "no cent appears or vanishes"
    assert money(moved["amount_paid"]) == money(moved["amount"])
    assert await oms.refunds(order_id) == [] and await oms.refunds(new_id) == []

    await oms.receive(b, 1)
    await oms.wait_status(new_id, "confirmed")
    (later,) = await live_shipments(oms, new_id, 1)
    assert [(line["sku"], line["quantity"]) for line in later["lines"]] == [(b, 1)]
    report = await invariants.check(e2e_settings, [order_id, new_id])
    assert report.violations == [], report.as_dict()


async def test_two_orders_of_one_customer_merge_into_one_with_one_shipping_fee(
    oms: Oms, e2e_settings: RuntimeSettings
) -> None:
    a, b = f"SKU-{uuid4().hex[:10]}", f"SKU-{uuid4().hex[:10]}"
    await oms.receive(a, 3)
    await oms.receive(b, 3)
    customer = {"name": "Grace Hopper", "email": f"{uuid4().hex[:8]}@example.com", "region": "north"}
    first = await confirmed_order(oms, order_body(a, 1, "10.00", shipping=DELIVERY, customer=customer))
    second = await confirmed_order(oms, order_body(b, 2, "5.00", shipping=DELIVERY, customer=customer))
    invoices = [await oms.invoice(order_id) for order_id in (first, second)]
    paid = sum(money(i["amount"]) for i in invoices)
    # One parcel's shipping, tax included: what the first invoice asks beyond its lines.
    fee = money(invoices[0]["amount"]) - sum(money(line["gross"]) for line in invoices[0]["lines"])
    assert fee > 0

    merged = await oms.order.post(
        "/orders/merge", json={"order_ids": [first, second], "reason": "one parcel"}
    )
    assert merged.status_code == 202, merged.text
    new_id = merged.json()["order_id"]

    new = await oms.wait_status(new_id, "confirmed")
    assert sorted(new["merged_from"]) == sorted([first, second])
    for order_id in (first, second):
        old = await change_done(oms, order_id, "merged")
        assert old["merged_into"] == new_id
    (shipment,) = await live_shipments(oms, new_id, 1)
    assert sorted((line["sku"], line["quantity"]) for line in shipment["lines"]) == sorted([(a, 1), (b, 2)])
    invoice = await invoice_when(oms, new_id, lambda i: i["status"] == "paid")
    refunds = await eventually_value(lambda: oms.refunds(new_id), lambda found: len(found) == 1, timeout=60)
    assert money(invoice["amount"]) == paid - fee, "one shipping fee instead of two"
    assert money(refunds[0]["amount"]) == fee, "what was paid beyond the merged total goes back"
    assert (await oms.stock(a))["reserved"] == 1 and (await oms.stock(b))["reserved"] == 2
    report = await invariants.check(e2e_settings, [first, second, new_id])
    assert report.violations == [], report.as_dict()


async def test_merges_of_other_customers_currencies_or_unknown_orders_are_refused(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 3)
    first = await confirmed_order(oms, order_body(sku, 1, "10.00", shipping=DELIVERY))
    other = await confirmed_order(oms, order_body(sku, 1, "10.00", shipping=DELIVERY))  # another guest
    refused = await oms.order.post("/orders/merge", json={"order_ids": [first, other], "reason": "r"})
    assert refused.status_code == 409 and "customer" in refused.json()["detail"]
    unknown = await oms.order.post("/orders/merge", json={"order_ids": [first, str(uuid4())], "reason": "r"})
    assert unknown.status_code == 404
    same = await oms.order.post("/orders/merge", json={"order_ids": [first, first], "reason": "r"})
    assert same.status_code == 422
    # Nothing moved: both orders are as they were.
    for order_id in (first, other):
        order = await oms.get_order(order_id)
        assert order["status"] == "confirmed" and order.get("change") is None


async def test_amending_needs_the_amend_permission(platform: Platform) -> None:
    async with _client(platform, "finance") as finance:
        response = await finance.post(
            f"/orders/{uuid4()}/amend", json={"shipping": {"method": "pickup"}, "reason": "r"}
        )
    assert response.status_code == 403


def _client(platform: Platform, role: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=platform.url("order"), headers=bearer(role, subject=f"test-{role}"))
