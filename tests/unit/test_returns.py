"""Returns as pure decisions: the order desk's rules (delivered, within the window, never more
than can still be returned), the warehouse's receipt, the participants' answers, and billing's
credit notes and refunds (never more than was paid and not yet refunded)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from libs.domain import DomainError
from libs.events.billing import (
    CreditNoteIssued,
    InvoiceIssued,
    InvoiceLine,
    IssueReturnCredit,
    PaymentReceived,
    RefundIssued,
)
from libs.events.inventory import (
    CreateShipments,
    ReceiveReturnedGoods,
    ReserveStock,
    ReturnedGoodsReceived,
    ReturnedStockWrittenOff,
    ShipmentDelivered,
    StockReserved,
)
from libs.events.order import OrderGoodsReturned, OrderPlaced, ReturnCompleted, ReturnLine
from libs.events.values import Allocation, CustomerSnapshot, OrderLine, Shipping, SkuQuantity
from services.billing.domain.account import CustomerAccount
from services.billing.domain.invoice import INVOICE, Invoice, decide_void
from services.billing.domain.refunds import decide_goodwill_refund, decide_return_credit
from services.inventory.domain.returns import RETURN_RECEIPT, decide_booked, decide_write_offs
from services.order.domain.order import ORDER, Order
from services.order.domain.returns import (
    RETURN,
    Receipt,
    Return,
    ReturnPolicy,
    decide_approve,
    decide_receive,
    decide_reject,
    decide_request,
    react,
)

ORDER_ID = "o-1"
RETURN_ID = "RET-1"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = ReturnPolicy(window=timedelta(days=14))


def delivered(*allocations: Allocation) -> Order:
    placed = OrderPlaced(
        order_id=ORDER_ID,
        channel="web",
        customer_id="c-1",
        customer=CustomerSnapshot(id="c-1", name="Ada", region="north"),
        lines=(
            OrderLine(sku="SKU-A", quantity=2, unit_price=Decimal("10.00")),
            OrderLine(sku="SKU-B", quantity=1, unit_price=Decimal("5.00")),
        ),
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping(method="pickup"),
        subtotal=Decimal("25.00"),
    )
    allocations = allocations or (
        Allocation(sku="SKU-A", warehouse="NORTH", quantity=2),
        Allocation(sku="SKU-B", warehouse="NORTH", quantity=1),
    )
    return replace(ORDER.replay([placed]), status="completed", allocations=allocations)


def line(sku: str = "SKU-A", quantity: int = 1) -> ReturnLine:
    return ReturnLine(sku=sku, quantity=quantity, reason="broken")


def requested(order: Order, *lines: ReturnLine) -> tuple[Return, Order]:
    decision = decide_request(
        order,
        RETURN_ID,
        lines or (line(),),
        "refund",
        "desk",
        NOW,
        NOW - timedelta(days=1),
        POLICY,
    )
    return RETURN.replay(decision.returns), _after(order, decision.order)


def _after(order: Order, events: list) -> Order:  # type: ignore[type-arg]
    for event in events:
        order = ORDER.evolve(order, event)
    return order


def test_a_return_is_refused_after_the_window_naming_when_it_closed() -> None:
    with pytest.raises(DomainError) as refused:
        decide_request(
            delivered(), RETURN_ID, (line(),), "refund", "desk", NOW, NOW - timedelta(days=15), POLICY
        )

    assert (refused.value.code, refused.value.status) == ("return_window_closed", 409)
    assert "return window of 14 days closed on 2026-11-22 12:00 UTC" in refused.value.message


def test_goods_not_delivered_cannot_be_returned() -> None:
    with pytest.raises(DomainError) as refused:
        decide_request(
            replace(delivered(), status="shipped"), RETURN_ID, (line(),), "refund", "desk", NOW, None, POLICY
        )

    assert refused.value.code == "not_delivered"


def test_units_an_open_return_asks_for_cannot_be_asked_for_again() -> None:
    _, order = requested(delivered(), line("SKU-A", 2))

    with pytest.raises(DomainError) as refused:
        decide_request(order, "RET-2", (line("SKU-A", 1),), "refund", "desk", NOW, NOW, POLICY)

    assert refused.value.code == "more_than_returnable"
    assert "only 0 of the 2 delivered can still be returned" in refused.value.message


def test_a_rejected_return_frees_its_units() -> None:
    state, order = requested(delivered(), line("SKU-A", 2))

    order = _after(order, decide_reject(state, "no receipt", "desk").order)

    assert order.returnable("SKU-A") == 2


def test_a_line_the_order_does_not_have_is_refused_naming_the_field() -> None:
    with pytest.raises(DomainError) as refused:
        decide_request(delivered(), RETURN_ID, (line("SKU-Z"),), "refund", "desk", NOW, NOW, POLICY)

    assert (refused.value.status, refused.value.message.split(":")[0]) == (422, "lines[0].sku")


def test_goods_are_received_only_for_an_approved_return() -> None:
    state, order = requested(delivered())

    with pytest.raises(DomainError) as refused:
        decide_receive(state, order, [Receipt("SKU-A", 1, "resellable")], "clerk")

    assert refused.value.code == "return_not_approved"


def test_receiving_more_than_was_asked_for_is_refused_naming_the_line() -> None:
    state, order = requested(delivered(), line("SKU-A", 1))
    state = RETURN.evolve(state, decide_approve(state, "desk").returns[0])

    with pytest.raises(DomainError) as refused:
        decide_receive(
            state, order, [Receipt("SKU-A", 1, "resellable"), Receipt("SKU-A", 1, "damaged")], "clerk"
        )

    assert refused.value.message.startswith("lines[1].quantity")


def test_received_goods_go_back_to_the_warehouses_that_shipped_them_and_the_order_is_partially_returned() -> (
    None
):
    order = delivered(
        Allocation(sku="SKU-A", warehouse="NORTH", quantity=1),
        Allocation(sku="SKU-A", warehouse="SOUTH", quantity=1),
        Allocation(sku="SKU-B", warehouse="NORTH", quantity=1),
    )
    state, order = requested(order, line("SKU-A", 2))
    state = RETURN.evolve(state, decide_approve(state, "desk").returns[0])

    decision = decide_receive(
        state, order, [Receipt("SKU-A", 1, "resellable"), Receipt("SKU-A", 1, "damaged")], "clerk"
    )

    restock, credit = (outgoing.command for outgoing in decision.commands)
    assert isinstance(restock, ReceiveReturnedGoods)
    assert [(g.sku, g.warehouse, g.resellable, g.damaged) for g in restock.lines] == [
        ("SKU-A", "NORTH", 1, 0),
        ("SKU-A", "SOUTH", 0, 1),
    ]
    assert isinstance(credit, IssueReturnCredit)
    assert credit.lines == (SkuQuantity(sku="SKU-A", quantity=2),)
    (returned,) = decision.order
    assert isinstance(returned, OrderGoodsReturned) and not returned.fully_returned
    assert _after(order, decision.order).status == "partially_returned"


def test_a_return_completes_once_restocked_and_credited_and_a_repeated_answer_changes_nothing() -> None:
    state, order = requested(delivered())
    state = _fold(state, decide_approve(state, "desk").returns)
    state = _fold(state, decide_receive(state, order, [Receipt("SKU-A", 1, "resellable")], "clerk").returns)
    restocked = ReturnedGoodsReceived(return_id=RETURN_ID, order_id=ORDER_ID)
    credited = CreditNoteIssued(
        order_id=ORDER_ID,
        credit_note_id="CN-1",
        invoice_id="INV-1",
        return_id=RETURN_ID,
        lines=(SkuQuantity(sku="SKU-A", quantity=1),),
        amount=Decimal("11.90"),
        refund_amount=Decimal("11.90"),
        refund_id="RFD-1",
        reason="return",
    )

    first = react(state, order, restocked)
    state = _fold(state, first.returns)
    second = react(state, order, credited)
    state = _fold(state, second.returns)

    assert not any(isinstance(e, ReturnCompleted) for e in first.returns)
    assert isinstance(second.returns[-1], ReturnCompleted) and state.status == "completed"
    assert react(state, order, credited).returns == []
    assert react(state, order, restocked).returns == []


def _fold(state: Return, events: list) -> Return:  # type: ignore[type-arg]
    for event in events:
        state = RETURN.evolve(state, event)
    return state


# -- inventory ----------------------------------------------------------------------------


def test_inventory_writes_off_the_damaged_units_and_answers_once() -> None:
    command = ReceiveReturnedGoods(
        return_id=RETURN_ID,
        order_id=ORDER_ID,
        lines=({"sku": "SKU-A", "warehouse": "NORTH", "resellable": 1, "damaged": 2},),  # type: ignore[arg-type]
    )

    (written_off,) = decide_write_offs(command)["SKU-A"]
    (answer,) = decide_booked(RETURN_RECEIPT.initial(), command)

    assert isinstance(written_off, ReturnedStockWrittenOff) and written_off.quantity == 2
    assert isinstance(answer, ReturnedGoodsReceived)
    assert [(a.warehouse, a.quantity) for a in answer.restocked] == [("NORTH", 1)]
    assert [(a.warehouse, a.quantity) for a in answer.written_off] == [("NORTH", 2)]
    assert decide_booked(RETURN_RECEIPT.replay([answer]), command) == []


# -- billing ------------------------------------------------------------------------------


def paid_invoice(paid: str = "41.70") -> Invoice:
    issued = InvoiceIssued(
        order_id=ORDER_ID,
        invoice_id="INV-1",
        customer_id="c-1",
        currency="EUR",
        lines=(
            InvoiceLine(sku="SKU-A", quantity=2, unit_price=Decimal("10.00"), gross=Decimal("23.80")),
            InvoiceLine(sku="SKU-B", quantity=1, unit_price=Decimal("5.00"), gross=Decimal("5.95")),
        ),
        subtotal=Decimal("25.00"),
        tax=Decimal("6.65"),
        shipping_fee=Decimal("10.05"),
        total=Decimal("41.70"),
        payment_terms="prepaid",
        due_at=NOW,
    )
    payment = PaymentReceived(
        order_id=ORDER_ID,
        invoice_id="INV-1",
        reference="P-1",
        method="card",
        amount=Decimal(paid),
        amount_paid=Decimal(paid),
    )
    return INVOICE.replay([issued, payment])


def credit(return_id: str, quantity: int = 1, sku: str = "SKU-A") -> IssueReturnCredit:
    return IssueReturnCredit(
        order_id=ORDER_ID, return_id=return_id, lines=(SkuQuantity(sku=sku, quantity=quantity),), reason="r"
    )


def test_a_return_is_credited_at_what_its_lines_were_invoiced_and_refunded_once() -> None:
    invoice = paid_invoice()

    events = decide_return_credit(invoice, credit(RETURN_ID)).invoice
    note, refund = events

    assert isinstance(note, CreditNoteIssued) and isinstance(refund, RefundIssued)
    assert (note.amount, note.refund_amount, refund.amount) == (Decimal("11.90"),) * 3
    assert refund.credit_note_id == note.credit_note_id
    assert decide_return_credit(_fold_invoice(invoice, events), credit(RETURN_ID)).invoice == []


def test_units_credited_before_are_not_credited_again() -> None:
    invoice = paid_invoice()
    first = decide_return_credit(invoice, credit("RET-A", 2)).invoice
    after = _fold_invoice(invoice, first)

    (note,) = decide_return_credit(after, credit("RET-B", 1)).invoice

    assert isinstance(note, CreditNoteIssued)
    assert (note.lines, note.amount, note.refund_amount) == ((), Decimal("0.00"), Decimal("0.00"))


def test_a_return_of_an_unpaid_invoice_is_credited_but_refunds_nothing_and_lowers_what_is_owed() -> None:
    invoice = paid_invoice("0.01")

    note, refund = decide_return_credit(invoice, credit(RETURN_ID)).invoice

    assert (note.amount, refund.amount) == (Decimal("11.90"), Decimal("0.01"))  # type: ignore[attr-defined]
    assert _fold_invoice(invoice, [note, refund]).outstanding == Decimal("41.70") - Decimal("11.90")


def test_a_goodwill_refund_over_what_was_paid_and_not_refunded_is_refused_naming_the_limit() -> None:
    invoice = _fold_invoice(
        paid_invoice(),
        decide_goodwill_refund(paid_invoice(), ORDER_ID, Decimal("40.00"), "late", "G-1").invoice,
    )

    with pytest.raises(DomainError) as refused:
        decide_goodwill_refund(invoice, ORDER_ID, Decimal("1.71"), "again", "G-2")

    assert (refused.value.code, refused.value.status) == ("refund_limit", 409)
    assert refused.value.message.startswith("amount: at most 1.70 EUR can be refunded")
    assert decide_goodwill_refund(invoice, ORDER_ID, Decimal("40.00"), "late", "G-1").invoice == []


def test_a_void_after_a_goodwill_refund_gives_back_only_the_rest() -> None:
    invoice = _fold_invoice(
        paid_invoice(),
        decide_goodwill_refund(paid_invoice(), ORDER_ID, Decimal("10.00"), "late", "G-1").invoice,
    )

    refunds = [
        e
        for e in decide_void(invoice, CustomerAccount(), ORDER_ID, "cancelled").invoice
        if isinstance(e, RefundIssued)
    ]

    assert [r.amount for r in refunds] == [Decimal("31.70")]


def _fold_invoice(invoice: Invoice, events: list) -> Invoice:  # type: ignore[type-arg]
    for event in events:
        invoice = INVOICE.evolve(invoice, event)
    return invoice


def test_a_replacement_is_reserved_and_shipped_under_the_return_s_id_and_completes_when_delivered() -> None:
    order = delivered()
    decision = decide_request(order, RETURN_ID, (line(),), "replace", "desk", NOW, NOW, POLICY)
    state, order = RETURN.replay(decision.returns), _after(order, decision.order)
    state = _fold(state, decide_approve(state, "desk").returns)
    received = decide_receive(state, order, [Receipt("SKU-A", 1, "damaged")], "clerk")
    state = _fold(state, received.returns)

    assert (_after(order, received.order).status, _after(order, received.order).returnable("SKU-A")) == (
        "completed",
        2,
    )  # replaced: the customer keeps (a new) one
    restock, reserve = (outgoing.command for outgoing in received.commands)
    assert isinstance(restock, ReceiveReturnedGoods) and isinstance(reserve, ReserveStock)
    assert (reserve.order_id, reserve.lines) == (RETURN_ID, (SkuQuantity(sku="SKU-A", quantity=1),))
    reserved = react(state, order, StockReserved(order_id=RETURN_ID, allocations=()))
    (ship,) = (outgoing.command for outgoing in reserved.commands)
    assert isinstance(ship, CreateShipments) and ship.order_id == RETURN_ID
    state = _fold(state, reserved.returns)
    state = _fold(
        state, react(state, order, ReturnedGoodsReceived(return_id=RETURN_ID, order_id=ORDER_ID)).returns
    )
    assert state.status == "received"  # the replacement has not arrived

    arrived = react(state, order, ShipmentDelivered(shipment_id="SH-1", order_id=RETURN_ID))

    assert isinstance(arrived.returns[-1], ReturnCompleted)
    assert _fold(state, arrived.returns).replacement_status == "delivered"
