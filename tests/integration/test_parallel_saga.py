"""The saga's parallel group on the running platform: the stock reservation and the invoice
(with its credit check) are asked for at once, the order goes on when both succeeded, and when
one side fails the other is undone by its compensation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration


def types_of(order: dict[str, Any]) -> list[str]:
    return [entry["type"] for entry in order["timeline"]]


async def test_stock_and_invoice_are_asked_for_at_once_and_the_paid_order_is_confirmed(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 3)

    order_id = await oms.place(order_body(sku, quantity=2))

    order = await oms.wait_status(order_id, "awaiting_payment")
    timeline = types_of(order)
    # Both requests went out before either participant answered.
    assert timeline.index("InvoiceRequested") < timeline.index("OrderStockAllocated")
    assert (await oms.stock(sku))["reserved"] == 2
    invoice = await oms.invoice(order_id)
    assert invoice["status"] == "open"
    paid = await oms.pay(order_id, invoice["amount"])
    assert paid.status_code == 201, paid.text
    await oms.wait_status(order_id, "confirmed")


async def test_stock_refused_voids_the_invoice_issued_beside_it_and_rejects_the_order(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 1)

    order_id = await oms.place(order_body(sku, quantity=2, channel="marketplace"))  # rejects shortages

    order = await oms.wait_status(order_id, "rejected")
    assert order["reason"] == f"out of stock: {sku} (short 1)"
    (started,) = [e["details"] for e in order["timeline"] if e["type"] == "OrderCompensationStarted"]
    assert started["steps"] == ["void_invoice"]
    assert (await oms.invoice(order_id))["status"] == "void"  # billing had invoiced it meanwhile
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"], stock["backorders"]) == (0, 1, [])


async def test_credit_refused_beside_reserved_stock_releases_the_stock_when_finance_rejects(
    oms: Oms, platform: Platform, sku: str
) -> None:
    customer = await account_customer(oms, credit_limit="100.00", name="Parallel Spender")
    await oms.receive(sku, 5)
    body = order_body(sku, quantity=4, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)

    order_id = await oms.place(body)

    await oms.wait_status(order_id, "on_hold")
    # The reservation ran beside the credit check: the stock is held while finance decides.
    await eventually_value(lambda: oms.stock(sku), lambda s: s["reserved"] == 4)
    finance = Oms(platform, role="finance")
    try:
        rejected = await finance.order.post(f"/orders/{order_id}/reject", json={"reason": "owes too much"})
        assert rejected.status_code in (200, 202), rejected.text
    finally:
        await finance.close()
    await oms.wait_status(order_id, "rejected")
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"]) == (0, 5)


async def test_a_backorder_keeps_its_invoice_and_the_customer_pays_once_the_stock_arrives(
    oms: Oms, sku: str
) -> None:
    order_id = await oms.place(order_body(sku, quantity=2))

    await oms.wait_status(order_id, "awaiting_stock")
    # Issued beside the backorder, and kept by the order while it waits.
    await eventually_value(lambda: oms.get_order(order_id), lambda o: "OrderInvoiced" in types_of(o))
    invoice = await oms.invoice(order_id)
    assert invoice["status"] == "open"
    await oms.receive(sku, 2)

    await oms.wait_status(order_id, "awaiting_payment")
    paid = await oms.pay(order_id, invoice["amount"])
    assert paid.status_code == 201, paid.text
    await oms.wait_status(order_id, "confirmed")
