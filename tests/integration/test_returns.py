"""Returns after delivery and goodwill refunds, through the real order, inventory and billing
services: a delivered order's goods come back (one unit resellable, one damaged), the
resellable one is back in stock, the damaged one is booked as a loss, and what was paid for
them is refunded once; finance's goodwill refund never exceeds what was paid and not yet
refunded (docs/returns.md)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from libs.runtime.settings import RuntimeSettings
from tests.integration.conftest import Oms, money, order_body
from tests.integration.test_shipping_end_to_end import confirmed_order, shipments_of, step
from tools import invariants
from tools.processes import eventually_value

pytestmark = pytest.mark.integration

ADDRESS = {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}


async def delivered_order(oms: Oms, sku: str, quantity: int) -> str:
    body = order_body(sku, quantity, "10.00", shipping={"method": "standard", "address": ADDRESS})
    order_id = await confirmed_order(oms, body)
    (shipment,) = await shipments_of(oms, order_id, 1)
    await step(oms, shipment["shipment_id"], "pick")
    await step(oms, shipment["shipment_id"], "pack")
    await step(
        oms, shipment["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"T-{order_id}"}
    )
    await step(oms, shipment["shipment_id"], "deliver")
    await oms.wait_status(order_id, "completed")  # delivered and paid in full
    return order_id


async def return_of(oms: Oms, return_id: str, *statuses: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await oms.order.get(f"/returns/{return_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return dict(await eventually_value(fetch, lambda found: found["status"] in statuses, timeout=60))


async def test_a_return_with_one_resellable_and_one_damaged_unit_restocks_one_and_refunds_both_once(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 3, "NORTH")
    order_id = await delivered_order(oms, sku, 2)
    invoice = await oms.invoice(order_id)
    paid_for_the_lines = sum(money(line["gross"]) for line in invoice["lines"])
    assert money(invoice["shipping_fee"]) > 0  # so a refund of everything paid would show
    assert (await oms.stock(sku))["on_hand"] == 1

    body = {
        "order_id": order_id,
        "lines": [{"sku": sku, "quantity": 2, "reason": "arrived scratched"}],
        "resolution": "refund",
    }
    key = {"Idempotency-Key": str(uuid4())}
    requested = await oms.order.post("/returns", json=body, headers=key)
    assert requested.status_code == 201, requested.text
    assert requested.json()["status"] == "requested"
    return_id = requested.json()["return_id"]
    repeated = await oms.order.post("/returns", json=body, headers=key)
    assert (repeated.status_code, repeated.json()["return_id"]) == (200, return_id)
    approved = await oms.order.post(f"/returns/{return_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"

    received = await oms.order.post(
        f"/returns/{return_id}/receive",
        json={
            "lines": [
                {"sku": sku, "quantity": 1, "condition": "resellable"},
                {"sku": sku, "quantity": 1, "condition": "damaged"},
            ]
        },
    )
    assert received.status_code == 200, received.text
    assert {(line["condition"], line["warehouse"]) for line in received.json()["received"]} == {
        ("resellable", "NORTH"),
        ("damaged", "NORTH"),
    }

    done = await return_of(oms, return_id, "completed")
    assert money(done["credit_amount"]) == paid_for_the_lines
    assert money(done["refund_amount"]) == paid_for_the_lines  # the shipping fee is not refunded
    refunds = await oms.refunds(order_id)
    assert [(r["refund_id"], money(r["amount"])) for r in refunds] == [
        (done["refund_id"], paid_for_the_lines)
    ]
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["available"]) == (2, 2)  # the resellable unit only

    order = await oms.wait_status(order_id, "returned")
    assert money(order["amount_refunded"]) == paid_for_the_lines
    kinds = [entry["type"] for entry in order["timeline"]]
    assert kinds.count("OrderReturnRequested") == kinds.count("OrderGoodsReturned") == 1
    listed = await oms.order.get("/returns", params={"order_id": order_id, "status": "completed"})
    assert [r["return_id"] for r in listed.json()] == [return_id]

    again = await oms.order.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"sku": sku, "quantity": 1, "reason": "x"}],
            "resolution": "refund",
        },
    )
    assert again.status_code == 409, again.text
    assert "can still be returned" in again.json()["detail"]
    report = await invariants.check(e2e_settings, [order_id])
    assert report.violations == [], report.as_dict()
    assert report.counts["returns_credited_twice"] == report.counts["returned_over_dispatched"] == 0


async def test_goods_not_yet_delivered_cannot_be_returned(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 1, "NORTH")
    order_id = await confirmed_order(oms, order_body(sku, 1, "10.00"))

    refused = await oms.order.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"sku": sku, "quantity": 1, "reason": "x"}],
            "resolution": "refund",
        },
    )

    assert refused.status_code == 409, refused.text
    assert "only delivered goods can be returned" in refused.json()["detail"]


async def test_a_goodwill_refund_never_exceeds_what_was_paid_and_not_refunded(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 1, "NORTH")
    order_id = await delivered_order(oms, sku, 1)
    paid = money((await oms.invoice(order_id))["amount_paid"])

    too_much = await oms.billing.post(
        "/refunds", json={"order_id": order_id, "amount": str(paid + Decimal("0.01")), "reason": "late"}
    )
    assert too_much.status_code == 409, too_much.text
    assert f"at most {paid:.2f} EUR can be refunded" in too_much.json()["detail"]

    key = str(uuid4())
    first = await oms.billing.post(
        "/refunds",
        json={"order_id": order_id, "amount": "5.00", "reason": "late delivery"},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 201, first.text
    assert money(first.json()["refundable"]) == paid - Decimal("5.00")
    repeated = await oms.billing.post(
        "/refunds",
        json={"order_id": order_id, "amount": "5.00", "reason": "late delivery"},
        headers={"Idempotency-Key": key},
    )
    assert repeated.status_code == 200, repeated.text
    assert repeated.json()["refund_id"] == first.json()["refund_id"]

    over_the_rest = await oms.billing.post(
        "/refunds", json={"order_id": order_id, "amount": str(paid - Decimal("4.99")), "reason": "again"}
    )
    assert over_the_rest.status_code == 409, over_the_rest.text
    assert f"at most {paid - Decimal('5.00'):.2f} EUR" in over_the_rest.json()["detail"]
    assert [money(r["amount"]) for r in await oms.refunds(order_id)] == [Decimal("5.00")]
    order = await eventually_value(
        lambda: oms.get_order(order_id), lambda o: money(o["amount_refunded"]) == Decimal("5.00")
    )
    assert order["status"] == "completed"  # still paid in full, though some went back
    report = await invariants.check(e2e_settings, [order_id])
    assert report.violations == [], report.as_dict()


async def test_a_damaged_unit_is_replaced_by_a_new_shipment_under_the_return_s_id(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 2, "NORTH")
    order_id = await delivered_order(oms, sku, 1)
    requested = await oms.order.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"sku": sku, "quantity": 1, "reason": "broken"}],
            "resolution": "replace",
        },
    )
    assert requested.status_code == 201, requested.text
    return_id = requested.json()["return_id"]
    assert (await oms.order.post(f"/returns/{return_id}/approve")).status_code == 200
    received = await oms.order.post(
        f"/returns/{return_id}/receive", json={"lines": [{"sku": sku, "quantity": 1, "condition": "damaged"}]}
    )
    assert received.status_code == 200, received.text

    (replacement,) = await shipments_of(oms, return_id, 1)
    assert (replacement["warehouse"], replacement["lines"]) == ("NORTH", [{"sku": sku, "quantity": 1}])
    for action in ("pick", "pack"):
        await step(oms, replacement["shipment_id"], action)
    await step(
        oms, replacement["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"R-{return_id}"}
    )
    await step(oms, replacement["shipment_id"], "deliver")

    done = await return_of(oms, return_id, "completed")
    assert (done["replacement_status"], done["refund_id"]) == ("delivered", None)
    assert await oms.refunds(order_id) == []
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"]) == (0, 0)  # two shipped, the damaged one written off
    assert (await oms.get_order(order_id))["status"] == "completed"  # the customer has the goods


async def test_a_receipt_billing_does_not_answer_is_asked_again_and_credited_once_when_it_is_back(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 2, "NORTH")
    order_id = await delivered_order(oms, sku, 1)
    requested = await oms.order.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"sku": sku, "quantity": 1, "reason": "x"}],
            "resolution": "refund",
        },
    )
    return_id = requested.json()["return_id"]
    assert (await oms.order.post(f"/returns/{return_id}/approve")).status_code == 200
    oms.platform.kill("billing")
    try:
        received = await oms.order.post(
            f"/returns/{return_id}/receive",
            json={"lines": [{"sku": sku, "quantity": 1, "condition": "resellable"}]},
        )
        assert received.status_code == 200, received.text
        # Unanswered past its 3 s deadline (OM_ORDER_RETURN_REPLY_SECONDS): asked again.
        order_db = await asyncpg.connect(e2e_settings.dsn("order"))
        try:
            resent = await eventually_value(
                lambda: order_db.fetch(
                    "SELECT payload FROM events WHERE stream_id = $1 AND event_type = 'ReturnStepResent'",
                    f"return-{return_id}",
                ),
                lambda rows: len(rows) >= 1,
                timeout=30,
            )
        finally:
            await order_db.close()
        assert "credit" in json.loads(resent[0]["payload"])["steps"]
    finally:
        await asyncio.to_thread(oms.platform.start, "billing")
    done = await return_of(oms, return_id, "completed")
    # Asked twice or more, credited and refunded once.
    assert money(done["refund_amount"]) > 0
    refunds = [r for r in await oms.refunds(order_id) if r.get("credit_note_id") == done["credit_note_id"]]
    assert len(refunds) == 1
    report = await invariants.check(e2e_settings, [order_id])
    assert report.violations == [], report.as_dict()
