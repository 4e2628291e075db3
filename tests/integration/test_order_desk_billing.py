"""Billing's side of the order desk on the running platform (docs/billing.md): amendments
(AdjustInvoice), splits and merges (MoveInvoiceLines) sent to the billing commands topic as
the order saga sends them, payments through the billing API, and what the invoice, payment
and refund endpoints show after. The orders are billing's only (the order service ignores
answers about orders it does not know), so each case is exactly the invoices it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from libs.events import decode, encode, make_envelope
from libs.events.billing import (
    AdjustInvoice,
    BillingCommand,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
    InvoiceMove,
    IssueInvoice,
    MoveInvoiceLines,
)
from libs.events.topics import BILLING_COMMANDS, BILLING_EVENTS
from libs.events.values import OrderLine, PaymentTerms, ShippingMethod, SkuQuantity
from libs.runtime.settings import RuntimeSettings
from tests.integration.conftest import Oms, money
from tools import invariants
from tools.chaos import read_all
from tools.processes import eventually_value

pytestmark = pytest.mark.integration

DUE = datetime.now(UTC) + timedelta(days=30)


@pytest.fixture
async def saga(e2e_settings: RuntimeSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=e2e_settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send(saga: AIOKafkaProducer, settings: RuntimeSettings, command: BillingCommand) -> None:
    """As the order saga sends it: keyed by the order, a new message id every time."""
    envelope = make_envelope(
        command,
        event_id=uuid4(),
        aggregate_id=command.order_id,
        aggregate_version=0,
        occurred_at=datetime.now(UTC),
        correlation_id=command.order_id,
        causation_id=None,
        actor="service:order",
    )
    await saga.send_and_wait(
        settings.topic(BILLING_COMMANDS), encode(envelope), key=command.order_id.encode()
    )


def order_id() -> str:
    return f"ORD-desk-{uuid4().hex[:10]}"


def lines(*quantities: tuple[str, int, str]) -> tuple[OrderLine, ...]:
    return tuple(OrderLine(sku=sku, quantity=q, unit_price=Decimal(price)) for sku, q, price in quantities)


async def issue(
    saga: AIOKafkaProducer,
    settings: RuntimeSettings,
    oms: Oms,
    customer: str,
    *quantities: tuple[str, int, str],
    shipping: ShippingMethod = "pickup",
    terms: PaymentTerms = "prepaid",
) -> tuple[str, dict[str, Any]]:
    order = order_id()
    command = IssueInvoice(
        order_id=order,
        customer_id=customer,
        currency="EUR",
        lines=lines(*quantities),
        payment_terms=terms,
        shipping_method=shipping,
        due_at=DUE,
    )
    await send(saga, settings, command)
    return order, await oms.invoice(order)


def amendment(
    order: str, amendment_id: str, *quantities: tuple[str, int, str], shipping: ShippingMethod = "pickup"
) -> AdjustInvoice:
    return AdjustInvoice(
        order_id=order,
        amendment_id=amendment_id,
        lines=lines(*quantities),
        shipping_method=shipping,
        due_at=DUE,
    )


async def invoice_when(oms: Oms, order: str, ready: Any) -> dict[str, Any]:
    return dict(await eventually_value(lambda: oms.invoice(order), ready, 30))


async def pay(oms: Oms, order: str, amount: str) -> dict[str, Any]:
    response = await oms.pay(order, amount)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def answers(settings: RuntimeSettings, order: str, kinds: tuple[type, ...], count: int) -> list[Any]:
    """Billing's answers of these kinds about `order`, once `count` of them are published."""

    async def published() -> list[Any]:
        records = await read_all(settings, settings.topic(BILLING_EVENTS))
        found = [decode(r.value).message for r in records if r.key == order.encode()]
        return [message for message in found if isinstance(message, kinds)]

    return list(await eventually_value(published, lambda found: len(found) >= count, 30))


async def test_amending_a_paid_order_up_then_down_keeps_the_money_charges_then_refunds_the_difference(
    oms: Oms, saga: AIOKafkaProducer, e2e_settings: RuntimeSettings
) -> None:
    order, invoice = await issue(saga, e2e_settings, oms, f"CUST-{uuid4().hex[:6]}", ("SKU-D", 1, "100.00"))
    assert invoice["amount"] == "120.00"
    assert (await pay(oms, order, "120.00"))["invoice_status"] == "paid"

    # Up: the payment is kept, a supplementary invoice asks for the difference.
    await send(saga, e2e_settings, amendment(order, "AMD-up", ("SKU-D", 2, "100.00")))
    invoice = await invoice_when(oms, order, lambda i: i["amount"] == "240.00")
    assert (invoice["status"], invoice["amount_paid"]) == ("open", "120.00")
    [up] = invoice["changes"]
    assert (up["kind"], up["document_kind"], up["difference"]) == (
        "amendment",
        "supplementary_invoice",
        "120.00",
    )
    assert up["document_id"].startswith("SUP-")
    assert (await pay(oms, order, "120.00"))["invoice_status"] == "paid"

    # Down: a credit note, and what was paid beyond the new total goes back at once.
    down_command = amendment(order, "AMD-down", ("SKU-D", 1, "100.00"))
    await send(saga, e2e_settings, down_command)
    invoice = await invoice_when(oms, order, lambda i: i["amount"] == "120.00")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", "240.00")
    down = invoice["changes"][1]
    assert (down["document_kind"], down["difference"], down["refund_amount"]) == (
        "credit_note",
        "-120.00",
        "120.00",
    )
    [refund] = await oms.refunds(order)
    assert (refund["amount"], refund["credit_note_id"], refund["refund_id"]) == (
        "120.00",
        down["document_id"],
        down["refund_id"],
    )

    # The same amendment again (a new message id) changes nothing; a later one shows it was handled.
    await send(saga, e2e_settings, down_command)
    await send(saga, e2e_settings, amendment(order, "AMD-same", ("SKU-D", 1, "100.00")))
    invoice = await invoice_when(oms, order, lambda i: len(i["changes"]) == 3)
    assert [c["change_id"] for c in invoice["changes"]] == ["AMD-up", "AMD-down", "AMD-same"]
    assert invoice["changes"][2]["document_id"] is None
    assert len(await oms.refunds(order)) == 1
    replies = await answers(e2e_settings, order, (InvoiceAdjusted,), 3)
    assert [(r.amendment_id, r.difference, r.status) for r in replies] == [
        ("AMD-up", Decimal("120.00"), "open"),
        ("AMD-down", Decimal("-120.00"), "paid"),
        ("AMD-same", Decimal("0.00"), "paid"),
    ]
    await no_billing_violations(e2e_settings)


async def test_an_on_account_amendment_over_the_credit_limit_is_refused_and_changes_nothing(
    oms: Oms, saga: AIOKafkaProducer, e2e_settings: RuntimeSettings
) -> None:
    customer = f"CUST-{uuid4().hex[:6]}"
    response = await oms.billing.put(f"/customers/{customer}/credit-limit", json={"credit_limit": "150.00"})
    assert response.status_code == 200, response.text
    order, _ = await issue(saga, e2e_settings, oms, customer, ("SKU-D", 1, "100.00"), terms="on_account")

    await send(saga, e2e_settings, amendment(order, "AMD-over", ("SKU-D", 2, "100.00")))

    [refused] = await answers(e2e_settings, order, (InvoiceAdjustmentRefused,), 1)
    assert (refused.amount, refused.open_balance, refused.credit_limit) == (
        Decimal("120.00"),
        Decimal("120.00"),
        Decimal("150.00"),
    )
    invoice = await oms.invoice(order)
    assert (invoice["amount"], invoice["changes"]) == ("120.00", [])
    account = (await oms.billing.get(f"/customers/{customer}/account")).json()
    assert account["open_balance"] == "120.00"


async def no_billing_violations(settings: RuntimeSettings) -> None:
    """The invariant checker's billing rules (tools/invariants.py) hold over every invoice: no
    payment or refund applied twice, no order keeping more than it is invoiced or less than 0."""
    report = await invariants.check(settings)
    assert [v for v in report.violations if v.startswith("billing:")] == [], report.as_dict()


def moving(
    kind: str,
    target: str,
    customer: str,
    sources: dict[str, tuple[tuple[str, int], ...]],
    *new_lines: OrderLine,
    shipping: ShippingMethod = "pickup",
) -> MoveInvoiceLines:
    return MoveInvoiceLines(
        order_id=target,
        move_id=f"MOVE-{uuid4().hex[:8]}",
        kind=kind,  # type: ignore[arg-type]
        sources=tuple(
            InvoiceMove(from_order_id=source, lines=tuple(SkuQuantity(sku=s, quantity=q) for s, q in moved))
            for source, moved in sources.items()
        ),
        customer_id=customer,
        currency="EUR",
        payment_terms="prepaid",
        lines=new_lines,
        shipping_method=shipping,
        due_at=DUE,
    )


def kept(invoices: list[dict[str, Any]], refunds: list[dict[str, Any]]) -> Decimal:
    """Paid (and carried) and not refunded, over these invoices."""
    return sum((money(i["amount_paid"]) for i in invoices), Decimal(0)) - sum(
        (money(r["amount"]) for r in refunds), Decimal(0)
    )


async def test_a_split_moves_the_lines_and_their_money_and_a_merge_refunds_the_shipping_fee_saved(
    oms: Oms, saga: AIOKafkaProducer, e2e_settings: RuntimeSettings
) -> None:
    customer = f"CUST-{uuid4().hex[:6]}"
    # Split: 2 x SKU-A and 1 x SKU-B, paid in full; SKU-B goes to a new order now.
    source, _ = await issue(saga, e2e_settings, oms, customer, ("SKU-A", 2, "50.00"), ("SKU-B", 1, "100.00"))
    await pay(oms, source, "240.00")
    split_into = order_id()
    split = moving("split", split_into, customer, {source: (("SKU-B", 1),)}, *lines(("SKU-B", 1, "100.00")))
    await send(saga, e2e_settings, split)

    moved = await invoice_when(oms, split_into, lambda i: i["status"] == "paid")
    assert (moved["amount"], moved["shipping_fee"], moved["amount_paid"]) == ("120.00", "0.00", "120.00")
    [moved_in] = moved["changes"]
    assert (moved_in["kind"], moved_in["other_order_id"], moved_in["transferred"]) == (
        "moved_in",
        source,
        "120.00",
    )
    [transfer] = (await oms.billing.get("/payments", params={"order_id": split_into})).json()
    assert (transfer["method"], transfer["reference"], transfer["amount"]) == (
        "transfer",
        f"transfer:{split.move_id}:{source}",
        "120.00",
    )
    kept_on = await oms.invoice(source)
    assert (kept_on["amount"], kept_on["amount_paid"], kept_on["status"]) == ("120.00", "120.00", "paid")
    assert [(line["sku"], line["quantity"]) for line in kept_on["lines"]] == [("SKU-A", 2)]
    [moved_out] = kept_on["changes"]
    assert (moved_out["kind"], moved_out["other_order_id"], moved_out["document_kind"]) == (
        "moved_out",
        split_into,
        "credit_note",
    )

    # Merge: two paid orders with a shipping fee each become one with one fee; the fee saved
    # (4.90 and its 20 % tax) goes back to the customer.
    first, _ = await issue(saga, e2e_settings, oms, customer, ("SKU-A", 1, "50.00"), shipping="standard")
    second, _ = await issue(saga, e2e_settings, oms, customer, ("SKU-A", 1, "50.00"), shipping="standard")
    for order in (first, second):
        assert (await pay(oms, order, "65.88"))["invoice_status"] == "paid"
    merged_into = order_id()
    merge = moving(
        "merge",
        merged_into,
        customer,
        {first: (("SKU-A", 1),), second: (("SKU-A", 1),)},
        *lines(("SKU-A", 2, "50.00")),
        shipping="standard",
    )
    await send(saga, e2e_settings, merge)

    merged = await invoice_when(oms, merged_into, lambda i: i["status"] == "paid")
    assert (merged["amount"], merged["amount_paid"]) == ("125.88", "131.76")
    [refund] = await eventually_value(lambda: oms.refunds(merged_into), lambda found: len(found) == 1, 30)
    assert refund["amount"] == "5.88" and refund["credit_note_id"].startswith("CN-")
    closed = [await oms.invoice(order) for order in (first, second)]
    assert [(i["status"], i["amount_paid"]) for i in closed] == [("merged", "0.00"), ("merged", "0.00")]
    # Not a cent created or lost: 131.76 was paid, 125.88 is kept for the goods, 5.88 went back.
    assert kept([merged, *closed], [refund]) + money(refund["amount"]) == Decimal("131.76")

    # The same merge again changes nothing; a payment arriving late for a merged order is
    # booked and given straight back.
    await send(saga, e2e_settings, merge)
    late = await pay(oms, first, "65.88")
    assert late["invoice_status"] == "merged"
    [late_refund] = await eventually_value(lambda: oms.refunds(first), lambda found: len(found) == 1, 30)
    assert late_refund["amount"] == "65.88" and "merged into order" in late_refund["reason"]
    assert sorted((c["kind"], c["other_order_id"]) for c in merged["changes"]) == sorted(
        [("moved_in", first), ("moved_in", second)]
    )
    unchanged = amendment(merged_into, "AMD-after-merge", ("SKU-A", 2, "50.00"), shipping="standard")
    await send(saga, e2e_settings, unchanged)
    await invoice_when(oms, merged_into, lambda i: len(i["changes"]) == 3)  # the repeat came before it
    assert len(await oms.refunds(merged_into)) == 1
    assert (await oms.invoice(merged_into))["amount_paid"] == "131.76"
    await no_billing_violations(e2e_settings)
