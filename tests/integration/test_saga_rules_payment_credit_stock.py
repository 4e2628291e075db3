"""The payment, credit and stock-wait rules a merchant expects, on the running platform: a
declined card leaves the order open for another attempt until the last one allowed; an order
over the credit limit waits for finance; a backorder is alerted, then cancelled by policy."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import SHORT_STOCK_WAIT_CHANNEL, Oms, money, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration


def events_of(order: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [entry["details"] for entry in order["timeline"] if entry["type"] == event_type]


async def declined_attempts_recorded(oms: Oms, order_id: str, count: int) -> dict[str, Any]:
    return dict(
        await eventually_value(
            lambda: oms.get_order(order_id), lambda o: len(events_of(o, "OrderPaymentFailed")) == count
        )
    )


async def test_a_declined_card_leaves_the_order_awaiting_payment_and_the_next_attempt_pays_it(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 3)
    order_id = await oms.place(order_body(sku, quantity=2))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)

    declined = await oms.pay(order_id, invoice["amount"], outcome="failed")
    assert declined.status_code == 201, declined.text
    order = await declined_attempts_recorded(oms, order_id, 1)
    assert order["status"] == "awaiting_payment"
    (failed,) = events_of(order, "OrderPaymentFailed")
    assert (failed["attempt"], failed["max_attempts"]) == (1, 3)
    assert (await oms.stock(sku))["reserved"] == 2  # still held for the customer

    paid = await oms.pay(order_id, invoice["amount"])
    assert paid.status_code == 201, paid.text

    await oms.wait_status(order_id, "confirmed")
    assert (await oms.invoice(order_id))["status"] == "paid"
    assert await oms.refunds(order_id) == []  # the successful attempt is kept, not refunded


async def test_the_last_declined_attempt_allowed_cancels_releasing_stock_and_voiding_the_invoice(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 2)
    order_id = await oms.place(order_body(sku, quantity=2))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)

    for attempt in range(1, 3):
        await oms.pay(order_id, invoice["amount"], outcome="failed", reference=f"{order_id}-{attempt}")
        await declined_attempts_recorded(oms, order_id, attempt)
    assert (await oms.get_order(order_id))["status"] == "awaiting_payment"
    await oms.pay(order_id, invoice["amount"], outcome="failed", reference=f"{order_id}-3")

    order = await oms.wait_status(order_id, "cancelled")
    assert order["reason"] == f"payment {order_id}-3 failed, the last of 3 attempts allowed"
    assert (await oms.invoice(order_id))["status"] == "void"
    assert (await oms.stock(sku))["reserved"] == 0


async def credit_hold(oms: Oms, sku: str) -> tuple[str, dict[str, Any]]:
    """An on-account order for 100.00 plus tax by a customer finance granted 100.00: held."""
    customer = await account_customer(oms, credit_limit="100.00", name="Big Spender")
    await oms.receive(sku, 5)
    body = order_body(sku, quantity=4, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    order_id = await oms.place(body)
    order = await oms.wait_status(order_id, "on_hold", "rejected", "confirmed")
    assert order["status"] == "on_hold", order
    return order_id, customer


async def test_an_order_over_the_credit_limit_is_held_and_finance_overrides_it_charging_the_credit(
    oms: Oms, platform: Platform, sku: str
) -> None:
    order_id, customer = await credit_hold(oms, sku)
    order = await oms.get_order(order_id)
    assert "credit limit exceeded" in order["reason"]
    assert "over the limit of 100.00" in order["reason"]
    assert (await oms.stock(sku))["reserved"] == 4  # kept for the customer while finance decides

    order_desk, finance = Oms(platform, role="order_desk"), Oms(platform, role="finance")
    try:
        refused = await order_desk.order.post(f"/orders/{order_id}/approve")
        assert refused.status_code == 403, refused.text
        assert refused.json()["missing_permission"] == "credit:grant"

        approved = await finance.order.post(f"/orders/{order_id}/approve")
        assert approved.status_code == 200, approved.text
    finally:
        await order_desk.close()
        await finance.close()

    order = await oms.wait_status(order_id, "confirmed")
    (override,) = events_of(order, "OrderCreditLimitOverridden")
    assert "test-finance" in override["approved_by"]
    assert override["hold_reason"].startswith("credit limit exceeded")
    invoice = await oms.invoice(order_id)
    account = (await oms.billing.get(f"/customers/{customer['id']}/account")).json()
    assert money(account["open_balance"]) == money(invoice["amount"]) > Decimal("100.00")


async def test_finance_rejects_a_credit_hold_and_its_stock_is_released(
    oms: Oms, platform: Platform, sku: str
) -> None:
    order_id, _ = await credit_hold(oms, sku)

    finance = Oms(platform, role="finance")
    try:
        rejected = await finance.order.post(
            f"/orders/{order_id}/reject", json={"reason": "the customer owes too much already"}
        )
        assert rejected.status_code in (200, 202), rejected.text
    finally:
        await finance.close()

    order = await oms.wait_status(order_id, "rejected")
    assert order["reason"] == "the customer owes too much already"
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"]) == (0, 5)


async def test_a_backorder_past_its_stock_wait_needs_attention_and_then_is_cancelled(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(order_body(sku, quantity=3, channel=SHORT_STOCK_WAIT_CHANNEL))
    await oms.wait_status(order_id, "awaiting_stock", "needs_attention", "cancelled")

    alerted = await oms.wait_status(order_id, "needs_attention", "cancelled")
    cancelled = await oms.wait_status(order_id, "cancelled")

    overdue = events_of(cancelled, "OrderStockWaitOverdue")
    assert len(overdue) == 1, alerted
    assert f"{sku} (short 2)" in overdue[0]["reason"]
    assert cancelled["reason"] == f"no stock by the stock wait deadline: {sku} (short 2)"
    stock = await oms.stock(sku)  # its place in the queue is given up, the unit it held too
    assert (stock["backorders"], stock["reserved"], stock["available"]) == ([], 0, 1)
