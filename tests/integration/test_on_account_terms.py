"""On-account terms are a privilege, end to end on the real platform: goods leave unpaid only
for a customer finance granted credit to, on a channel that offers the terms, and a customer
found by contact details alone is confirmed by a person before their credit is charged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer, grant_credit
from tests.integration.conftest import Oms, money, order_body

pytestmark = pytest.mark.integration


def timeline_types(order: dict[str, Any]) -> list[str]:
    return [entry["type"] for entry in order["timeline"]]


async def open_balance(oms: Oms, customer_id: str) -> Decimal:
    response = await oms.billing.get(f"/customers/{customer_id}/account")
    assert response.status_code == 200, response.text
    return money(response.json()["open_balance"])


async def invoices_of(oms: Oms, order_id: str) -> list[dict[str, Any]]:
    response = await oms.billing.get("/invoices", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_an_unknown_customers_on_account_order_is_not_fulfilled_until_finance_grants_credit(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    newcomer = {"id": f"new-{uuid4().hex[:8]}", "name": "Newcomer Ltd", "region": "north"}
    body = order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=newcomer)

    refused_id = await oms.place(body)

    held = await oms.wait_status(refused_id, "on_hold")  # for finance (OM_ORDER_CREDIT_EXCEEDED)
    assert "credit limit exceeded" in held["reason"]
    assert "over the limit of 0.00" in held["reason"]
    assert await invoices_of(oms, refused_id) == []
    decided = await oms.order.post(f"/orders/{refused_id}/reject", json={"reason": "no credit granted"})
    assert decided.status_code in (200, 202), decided.text
    await oms.wait_status(refused_id, "rejected")
    assert (await oms.stock(sku))["reserved"] == 0

    await grant_credit(oms, newcomer["id"], "500.00")
    order_id = await oms.place(body)

    order = await oms.wait_status(order_id, "confirmed")
    assert order["payment_status"] == "on_account"
    invoice = await oms.invoice(order_id)
    assert await open_balance(oms, newcomer["id"]) == money(invoice["amount"])
    assert (await oms.stock(sku))["reserved"] == 1


async def test_an_on_account_order_from_a_channel_not_offering_the_terms_is_rejected_before_stock_is_reserved(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    customer = await account_customer(oms)

    order_id = await oms.place(order_body(sku, terms="on_account", channel="web", customer=customer))

    order = await oms.wait_status(order_id, "rejected")
    assert (
        order["reason"]
        == "payment terms on_account are not offered on channel web (offered by b2b, erp, phone)"
    )
    assert "StockReservationRequested" not in timeline_types(order)
    assert (await oms.stock(sku))["reserved"] == 0
    assert await open_balance(oms, customer["id"]) == 0


@pytest.mark.parametrize("matched_by", ["email", "phone"])
async def test_an_on_account_order_matched_by_contact_details_only_is_held_until_a_person_approves(
    oms: Oms, sku: str, matched_by: str
) -> None:
    customer_id = f"reg-{uuid4().hex[:8]}"
    contact = {"email": f"{customer_id}@example.com", "phone": f"+49 30 {uuid4().int % 10**8:08d}"}
    registered = await oms.order.post(
        "/customers",
        json={"customer_id": customer_id, "name": "Registered GmbH", "region": "north", **contact},
    )
    assert registered.status_code == 201, registered.text
    await grant_credit(oms, customer_id, "1000.00")
    await oms.receive(sku, 5)
    # Only the contact detail, written as the channel happens to write it; no customer id.
    submitted = {"name": "Someone", "region": "north", matched_by: contact[matched_by].upper()}

    order_id = await oms.place(
        order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=submitted)
    )

    held = await oms.wait_status(order_id, "on_hold")
    assert held["reason"] == (
        f"on-account order matched to customer {customer_id} by contact details (email or phone) only,"
        " not by a customer id from the channel: confirm the customer placed it"
    )
    assert await open_balance(oms, customer_id) == 0
    assert (await oms.stock(sku))["reserved"] == 0

    approved = await oms.order.post(f"/orders/{order_id}/approve")
    assert approved.status_code == 200, approved.text

    await oms.wait_status(order_id, "confirmed")
    invoice = await oms.invoice(order_id)
    assert await open_balance(oms, customer_id) == money(invoice["amount"])


async def test_an_on_account_order_matched_to_an_earlier_guest_by_email_only_is_held(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    guest = {"name": "Walk-in", "email": f"{uuid4().hex[:8]}@example.com", "region": "north"}
    first = await oms.get_order(await oms.place(order_body(sku, customer=guest)))
    guest_id = first["customer_id"]
    await grant_credit(oms, guest_id, "1000.00")  # finance trusted the guest's account

    order_id = await oms.place(
        order_body(sku, quantity=2, terms="on_account", channel=ACCOUNT_CHANNEL, customer=guest)
    )

    held = await oms.wait_status(order_id, "on_hold")
    assert held["customer_id"] == guest_id
    assert f"on-account order matched to customer {guest_id} by contact details" in held["reason"]
    assert await open_balance(oms, guest_id) == 0


async def test_an_on_account_order_naming_a_registered_customer_by_id_goes_through_without_a_hold(
    oms: Oms, sku: str
) -> None:
    customer_id = f"reg-{uuid4().hex[:8]}"
    email = f"{customer_id}@example.com"
    registered = await oms.order.post(
        "/customers", json={"customer_id": customer_id, "name": "Registered GmbH", "email": email}
    )
    assert registered.status_code == 201, registered.text
    await grant_credit(oms, customer_id, "1000.00")
    await oms.receive(sku, 5)
    customer = {"id": customer_id, "name": "Registered GmbH", "email": email, "region": "north"}

    order_id = await oms.place(
        order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )

    order = await oms.wait_status(order_id, "confirmed", "on_hold")
    assert order["status"] == "confirmed", order["reason"]
    assert "OrderHeld" not in timeline_types(order)
