"""Order to cash end to end: the order, inventory and billing services as real processes on
the real broker and database. One test per path through the saga."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from libs.events import encode, make_envelope
from libs.events.order import SubmitOrder
from libs.events.topics import (
    BILLING_COMMANDS,
    BILLING_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    ORDER_INTAKE,
)
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from tests.integration.accounts import (
    ACCOUNT_CHANNEL,
    INTAKE_ACCOUNT_CHANNEL,
    account_customer,
    account_customers,
    grant_credit,
)
from tests.integration.conftest import (
    PAYMENT_DEADLINE_SECONDS,
    SHORT_DEADLINE_CHANNEL,
    SHORT_PAYMENT_DEADLINE_SECONDS,
    Oms,
    money,
    order_body,
)
from tools.chaos import read_all
from tools.processes import eventually_value

pytestmark = pytest.mark.integration


def timeline_types(order: dict) -> list[str]:  # type: ignore[type-arg]
    return [entry["type"] for entry in order["timeline"]]


async def test_prepaid_order_paid_at_once_is_confirmed(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 10)
    order_id = await oms.place(order_body(sku, quantity=2, unit_price="25.00"))

    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    assert money(invoice["amount"]) == Decimal("60.00")  # 50.00 + 20% tax, pickup is free
    paid = await oms.pay(order_id, invoice["amount"])
    assert paid.status_code == 201, paid.text

    order = await oms.wait_status(order_id, "confirmed")
    assert order["payment_status"] == "paid"
    assert money(order["amount_paid"]) == Decimal("60.00")
    # The stock and the invoice are asked for at once (the saga's parallel group).
    assert timeline_types(order)[:4] == [
        "OrderPlaced",
        "OrderApproved",
        "StockReservationRequested",
        "InvoiceRequested",
    ]
    types = timeline_types(order)
    confirmed_at = types.index("OrderConfirmed")
    assert types[confirmed_at : confirmed_at + 2] == ["OrderConfirmed", "ShipmentsRequested"]
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 2, 8)


async def test_on_account_order_within_credit_limit_is_confirmed_without_payment(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 5)
    customer = await account_customer(oms)
    order_id = await oms.place(
        order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )
    order = await oms.wait_status(order_id, "confirmed")
    assert order["payment_status"] == "on_account"
    invoice = await oms.invoice(order_id)
    assert invoice["status"] == "open"
    assert (await oms.stock(sku))["reserved"] == 1


async def test_on_account_order_over_the_credit_limit_is_held_and_rejected_by_finance_releasing_its_stock(
    oms: Oms, sku: str
) -> None:
    customer = await account_customer(oms, credit_limit="100.00", name="Big Spender")
    await oms.receive(sku, 5)
    body = order_body(
        sku,
        quantity=4,
        unit_price="25.00",
        terms="on_account",
        channel=ACCOUNT_CHANNEL,
        customer=customer,
    )

    order_id = await oms.place(body)
    held = await oms.wait_status(order_id, "on_hold")
    assert "credit limit exceeded" in held["reason"]
    decided = await oms.order.post(f"/orders/{order_id}/reject", json={"reason": "credit limit exceeded"})
    assert decided.status_code in (200, 202), decided.text

    order = await oms.wait_status(order_id, "rejected")
    assert "credit limit exceeded" in order["reason"]
    assert "CompensationStepCompleted" in timeline_types(order)
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"]) == (0, 5)


async def test_held_order_is_approved_by_a_person_and_completes(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 3)
    body = order_body(sku, shipping={"method": "standard", "address": {"line1": "1 Main St"}})
    order_id = await oms.place(body)
    held = await oms.wait_status(order_id, "on_hold")
    assert "delivery address is incomplete" in held["reason"]
    assert (await oms.stock(sku))["reserved"] == 0  # nothing is reserved while held

    # The actor is the token's subject; an X-Actor header claiming someone else changes nothing.
    olga = {**bearer("order_desk", subject="olga"), "X-Actor": "mallory"}
    approved = await oms.order.post(f"/orders/{order_id}/approve", headers=olga)
    assert approved.status_code == 200, approved.text

    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    await oms.pay(order_id, invoice["amount"])
    order = await oms.wait_status(order_id, "confirmed")
    approval = next(e for e in order["timeline"] if e["type"] == "OrderApproved")
    assert approval["actor"] == "user:olga"


async def test_order_of_a_blocked_customer_is_rejected_by_the_rules(oms: Oms, sku: str) -> None:
    email = f"{uuid4().hex[:8]}@fraud.example"
    registered = await oms.order.post(
        "/customers",
        json={"customer_id": f"c-{uuid4().hex[:6]}", "name": "Mallory", "email": email, "blocked": True},
    )
    assert registered.status_code == 201, registered.text
    await oms.receive(sku, 3)

    order_id = await oms.place(order_body(sku, customer={"name": "M.", "email": email.upper()}))

    order = await oms.wait_status(order_id, "rejected")
    assert order["reason"] == "customer is blocked"
    assert (await oms.stock(sku))["reserved"] == 0


async def test_shortage_is_backordered_and_completes_when_stock_arrives(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(order_body(sku, quantity=3))
    waiting = await oms.wait_status(order_id, "awaiting_stock")
    # The invoice is asked for beside the stock (the saga's parallel group), so its answer may
    # come before or after the backorder: both are on the timeline.
    assert "OrderAwaitingStock" in timeline_types(waiting)

    await oms.receive(sku, 5, warehouse="SOUTH")

    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    await oms.pay(order_id, invoice["amount"])
    await oms.wait_status(order_id, "confirmed")
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["backorders"]) == (6, 3, [])


async def test_shortage_on_a_reject_policy_channel_rejects_the_order(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(order_body(sku, quantity=2, channel="marketplace"))
    order = await oms.wait_status(order_id, "rejected")
    assert "out of stock" in order["reason"]
    assert (await oms.stock(sku))["backorders"] == []


async def test_two_backorders_are_served_in_arrival_order(oms: Oms, sku: str) -> None:
    customer = await account_customer(oms)
    first = await oms.place(
        order_body(sku, quantity=2, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )
    await oms.wait_status(first, "awaiting_stock")
    second = await oms.place(
        order_body(sku, quantity=1, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )
    await oms.wait_status(second, "awaiting_stock")

    await oms.receive(sku, 1)  # enough for the second, not the first: nobody jumps the queue
    assert (await oms.get_order(second))["status"] == "awaiting_stock"
    stock = await oms.stock(sku)
    assert [b["order_id"] for b in stock["backorders"]] == [first, second]

    await oms.receive(sku, 2)
    await oms.wait_status(first, "confirmed")
    await oms.wait_status(second, "confirmed")
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"], stock["backorders"]) == (3, 0, [])


async def test_failed_payments_up_to_the_limit_release_stock_void_invoice_and_cancel(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 4)
    order_id = await oms.place(order_body(sku, quantity=2))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)

    for _ in range(3):  # OM_ORDER_MAX_PAYMENT_ATTEMPTS (the default): the last one cancels
        failed = await oms.pay(order_id, invoice["amount"], outcome="failed")
        assert failed.status_code == 201, failed.text

    order = await oms.wait_status(order_id, "cancelled")
    assert "failed" in order["reason"]
    steps = [e["details"]["step"] for e in order["timeline"] if e["type"] == "CompensationStepCompleted"]
    assert sorted(steps) == ["release_stock", "void_invoice"]
    assert (await oms.invoice(order_id))["status"] == "void"
    assert (await oms.stock(sku))["reserved"] == 0


async def test_payment_deadline_passed_cancels_the_order_and_releases_stock(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 3)
    order_id = await oms.place(order_body(sku, quantity=2, channel=SHORT_DEADLINE_CHANNEL))
    other = await oms.place(order_body(sku, quantity=1))  # the default channel's deadline is far off
    await oms.wait_status(other, "awaiting_payment")

    order = await oms.wait_status(order_id, "cancelled", timeout=SHORT_PAYMENT_DEADLINE_SECONDS + 60)

    assert order["reason"] == "payment deadline passed"
    assert "OrderAwaitingPayment" in timeline_types(order)  # it was invoiced, then not paid in time
    assert (await oms.invoice(order_id))["status"] == "void"
    stock = await oms.stock(sku)
    assert (stock["reserved"], stock["available"]) == (1, 2)
    assert (await oms.get_order(other))["status"] == "awaiting_payment"
    deadlines = [
        datetime.fromisoformat(e["details"]["payment_deadline"])
        for o in (order, await oms.get_order(other))
        for e in o["timeline"]
        if e["type"] == "OrderAwaitingPayment"
    ]
    assert (deadlines[1] - deadlines[0]).total_seconds() > PAYMENT_DEADLINE_SECONDS - 60


async def test_cancel_before_payment_releases_stock_and_voids_invoice(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 2)
    order_id = await oms.place(order_body(sku))
    await oms.wait_status(order_id, "awaiting_payment")

    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "customer changed mind"})
    assert cancelled.status_code == 202, cancelled.text  # its stock and invoice are being given back
    assert cancelled.json()["status"] == "cancelling"

    order = await oms.wait_status(order_id, "cancelled")
    assert (await oms.invoice(order_id))["status"] == "void"
    assert await oms.refunds(order_id) == []
    assert (await oms.stock(sku))["reserved"] == 0
    again = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "twice"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert order["payment_status"] == "unpaid"


async def test_cancel_after_payment_refunds_exactly_what_was_paid(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 2)
    order_id = await oms.place(order_body(sku, quantity=1, unit_price="50.00"))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    await oms.pay(order_id, "20.00")  # a partial payment...
    await oms.pay(order_id, str(money(invoice["amount"]) - Decimal("20.00")))  # ...and the rest
    await oms.wait_status(order_id, "confirmed")

    await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "damaged in store"})

    order = await oms.wait_status(order_id, "cancelled")
    refunds = await oms.refunds(order_id)
    assert len(refunds) == 1
    assert money(refunds[0]["amount"]) == money(invoice["amount"]) == Decimal("60.00")
    assert "OrderRefunded" in timeline_types(await oms.wait_status(order_id, "cancelled"))
    assert money(order["amount_paid"]) == Decimal("60.00")
    assert (await oms.stock(sku))["reserved"] == 0


async def test_duplicate_submission_creates_one_order(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 5)
    body = order_body(sku, external_id=f"shop-{uuid4().hex[:6]}")
    key = str(uuid4())

    responses = await asyncio.gather(*(oms.submit(body, key=key) for _ in range(5)))
    by_channel_reference = await oms.submit(body)  # no key: channel + external_id identify it

    ids = {r.json()["order_id"] for r in [*responses, by_channel_reference]}
    assert [r.status_code for r in responses] == [202] * 5
    assert len(ids) == 1
    changed = await oms.submit({**body, "currency": "USD"}, key=key)
    assert changed.status_code == 409
    assert "different" in changed.json()["detail"]
    order_id = ids.pop()
    # A guest's customer id comes from their first order (docs/personal-data.md), not the email.
    customer_id = (await oms.get_order(order_id))["customer_id"]
    listing = await oms.order.get("/orders", params={"customer_id": customer_id})
    assert len(listing.json()["items"]) == 1
    await oms.wait_status(order_id, "awaiting_payment")
    assert (await oms.stock(sku))["reserved"] == 1


async def test_invalid_submission_gets_a_problem_naming_each_bad_field(oms: Oms) -> None:
    response = await oms.order.post(
        "/orders",
        json={
            "channel": "web",
            "customer": {"name": ""},
            "lines": [{"sku": "A", "quantity": 0, "unit_price": "-1"}],
            "currency": "euro",
            "payment_terms": "prepaid",
            "shipping": {"method": "drone"},
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = {error["field"] for error in response.json()["errors"]}
    assert {
        "customer.name",
        "lines[0].quantity",
        "lines[0].unit_price",
        "currency",
        "shipping.method",
    } <= fields


async def test_200_concurrent_orders_on_a_scarce_sku_never_oversell(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 30)
    await oms.receive(sku, 20, warehouse="SOUTH")
    semaphore = asyncio.Semaphore(40)

    async def place(customer: dict[str, Any]) -> str:
        async with semaphore:
            return await oms.place(
                order_body(sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
            )

    order_ids = await asyncio.gather(*(place(customer) for customer in await account_customers(oms, 200)))

    async def settled() -> dict[str, int]:
        counts: dict[str, int] = {}
        for order_id in order_ids:
            status = (await oms.get_order(order_id))["status"]
            counts[status] = counts.get(status, 0) + 1
        return counts

    from tools.processes import eventually_value

    counts = await eventually_value(
        settled, lambda c: c.get("confirmed", 0) + c.get("awaiting_stock", 0) == 200, timeout=120
    )
    assert counts == {"confirmed": 50, "awaiting_stock": 150}
    stock = await oms.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (50, 50, 0)
    assert len(stock["backorders"]) == 150


async def test_orders_are_listed_by_filter_with_cursor_paging(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 20)
    customer = {"id": f"lister-{uuid4().hex[:6]}", "name": "Lister", "region": "north"}
    await grant_credit(oms, customer["id"])
    # Different quantities: the same lines again would be held as a possible duplicate.
    placed = [
        await oms.place(
            order_body(sku, quantity=n, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
        )
        for n in range(1, 6)
    ]
    held = await oms.place(order_body(sku, unit_price="9999.00", customer=customer))
    for order_id in placed:
        await oms.wait_status(order_id, "confirmed")
    await oms.wait_status(held, "on_hold")

    pages, cursor = [], None
    while True:
        params = {"customer_id": customer["id"], "status": "confirmed", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await oms.order.get("/orders", params=params)).json()
        pages.append([item["order_id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(sum(pages, [])) == sorted(placed)  # every order once, the held one filtered out
    newest_first = (await oms.order.get("/orders", params={"customer_id": customer["id"]})).json()["items"]
    assert newest_first[0]["order_id"] == held
    bad = await oms.order.get("/orders", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


async def test_one_trace_follows_an_order_through_every_kafka_hop(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 2)
    trace_id = uuid4().hex
    response = await oms.order.post(
        "/orders",
        json=order_body(
            sku, terms="on_account", channel=ACCOUNT_CHANNEL, customer=await account_customer(oms)
        ),
        headers={"traceparent": f"00-{trace_id}-{uuid4().hex[:16]}-01", "Idempotency-Key": str(uuid4())},
    )
    order_id = response.json()["order_id"]
    await oms.wait_status(order_id, "confirmed")

    seen: dict[str, str] = {}
    for topic in (ORDER_EVENTS, INVENTORY_COMMANDS, INVENTORY_EVENTS, BILLING_COMMANDS, BILLING_EVENTS):
        for record in await read_all(e2e_settings, e2e_settings.topic(topic)):
            headers = {k: v.decode() for k, v in record.headers or ()}
            if record.key == order_id.encode() and "traceparent" in headers:
                seen[f"{topic}:{headers['event_type']}"] = headers["traceparent"].split("-")[1]

    # The confirmation is public as a status change (or, with OM_PUBLIC_EVENTS_ONLY=false, as
    # the order's own event).
    confirmed = "OrderStatusChanged" if e2e_settings.public_events_only else "OrderConfirmed"
    hops = {
        f"{ORDER_EVENTS}:OrderPlaced",
        f"{INVENTORY_COMMANDS}:ReserveStock",
        f"{INVENTORY_EVENTS}:StockReserved",
        f"{BILLING_COMMANDS}:IssueInvoice",
        f"{BILLING_EVENTS}:InvoiceIssued",
        f"{ORDER_EVENTS}:{confirmed}",
    }
    assert hops <= set(seen), seen
    assert {seen[hop] for hop in hops} == {trace_id}


async def test_the_same_order_twice_in_one_intake_burst_holds_the_second_as_a_duplicate(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    # Sent back to back, the two usually arrive in one consumed batch, whose orders reach the
    # orders table only when the batch commits: the duplicate check must see them anyway.
    await oms.receive(sku, 5)
    customer = await account_customer(oms, name="Grace Hopper")
    producer = AIOKafkaProducer(bootstrap_servers=e2e_settings.kafka_bootstrap, linger_ms=50)
    await producer.start()
    try:
        sent = []
        for reference in (f"burst-{uuid4().hex[:8]}", f"burst-{uuid4().hex[:8]}"):
            body = order_body(
                sku,
                customer=customer,
                channel=INTAKE_ACCOUNT_CHANNEL,
                external_id=reference,
                terms="on_account",
            )
            envelope = make_envelope(
                SubmitOrder.model_validate(body),
                event_id=uuid4(),
                aggregate_id=customer["email"],  # one key: one partition, in order
                aggregate_version=0,
                occurred_at=datetime.now(UTC),
                correlation_id=reference,
                causation_id=None,
                actor=f"channel:{INTAKE_ACCOUNT_CHANNEL}",
            )
            sent.append(await producer.send(e2e_settings.topic(ORDER_INTAKE), encode(envelope), key=b"burst"))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    async def listed() -> list[dict[str, Any]]:
        response = await oms.order.get("/orders", params={"customer_id": customer["id"]})
        return list(response.json()["items"])

    orders = await eventually_value(listed, lambda items: len(items) == 2, timeout=60)
    statuses = {}
    for order in orders:
        statuses[order["order_id"]] = await oms.wait_status(order["order_id"], "confirmed", "on_hold")
    held = [order for order in statuses.values() if order["status"] == "on_hold"]
    assert len(held) == 1, statuses
    (other,) = set(statuses) - {held[0]["order_id"]}
    assert f"possible duplicate of order {other}" in held[0]["reason"]
    assert statuses[other]["status"] == "confirmed"
