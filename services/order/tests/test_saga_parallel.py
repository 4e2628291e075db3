"""The saga's parallel group: stock reservation beside invoicing / the credit check.

Every combination of the two branches: both succeed (in either order), one fails while the
other is pending or has succeeded (the other undone by the compensation the table names), a
backorder beside an issued invoice, a credit hold beside the reservation, replies twice or
late, and each branch's reply deadline. The DSL and histories are test_saga.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from libs.events.base import Command, DomainEvent, Message
from libs.events.billing import IssueInvoice, PaymentFailed, VoidInvoice
from libs.events.inventory import CreateShipments, ReleaseStock, ReserveStock
from libs.events.order import (
    CompensationStepCompleted,
    CompensationStepRequested,
    InvoiceRequested,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderCompensationStarted,
    OrderConfirmed,
    OrderCreditLimitOverridden,
    OrderHeld,
    OrderInvoiced,
    OrderNeedsAttention,
    OrderPaymentFailed,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderRejected,
    OrderStepResent,
    OrderStockAllocated,
    OrderStockWaitOverdue,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.events.values import PaymentTerms, SkuQuantity
from services.order.domain.order import Order
from services.order.domain.review import ReviewFacts
from services.order.domain.saga import (
    FORWARD_GROUPS,
    FULFILMENT_SAGA,
    Reaction,
    SagaPolicy,
    approve,
    awaiting_answer,
    cancel,
    deadline_reached,
    react,
    reject,
    start,
)
from services.order.tests.test_saga import (
    ALLOCATIONS,
    DEADLINE,
    INVOICE_ID,
    NOW,
    ORDER_ID,
    REQUESTED_LINES,
    TOTAL,
    and_given,
    credit_check_failed,
    expect,
    given,
    invoice_issued,
    invoice_paid,
    invoice_voided,
    payment_received,
    placed,
    stock_released,
    stock_reserved,
    stock_shortage,
)

POLICY = SagaPolicy()  # parallel_steps on: the default
REJECT_OVER_CREDIT = replace(POLICY, credit_exceeded="reject")
LATER = NOW + timedelta(minutes=5)  # when the slower branch answers
CREDIT_REASON = (
    "credit limit exceeded: 36.00 on top of an open balance of 990.00 is over the limit of 1000.00"
)


def when(order: Order, message: Message, policy: SagaPolicy = POLICY, at: datetime = NOW) -> Reaction:
    return react(order, message, at, policy)


def both_requested(terms: PaymentTerms = "prepaid") -> tuple[DomainEvent, ...]:
    return (
        placed(terms=terms),
        OrderApproved(order_id=ORDER_ID, approved_by="rules"),
        StockReservationRequested(order_id=ORDER_ID, lines=REQUESTED_LINES),
        InvoiceRequested(order_id=ORDER_ID),
    )


def invoiced_first(terms: PaymentTerms = "prepaid") -> tuple[DomainEvent, ...]:
    return (
        *both_requested(terms),
        OrderInvoiced(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_due=TOTAL, due_at=DEADLINE),
    )


def reserved_first(terms: PaymentTerms = "prepaid") -> tuple[DomainEvent, ...]:
    return (*both_requested(terms), OrderStockAllocated(order_id=ORDER_ID, allocations=ALLOCATIONS))


def backordered(history: tuple[DomainEvent, ...]) -> tuple[DomainEvent, ...]:
    missing = (SkuQuantity(sku="SKU-B", quantity=1),)
    return (
        *history,
        OrderAwaitingStock(order_id=ORDER_ID, missing=missing, alert_at=NOW + timedelta(days=3)),
    )


def credit_held(history: tuple[DomainEvent, ...]) -> tuple[DomainEvent, ...]:
    return (*history, OrderHeld(order_id=ORDER_ID, reasons=(CREDIT_REASON,)))


# -- the table ---------------------------------------------------------------------------------


def test_the_table_groups_the_reservation_and_the_invoice_and_the_interpreter_runs_them_as_one() -> None:
    grouped = [s.name for s in FULFILMENT_SAGA if s.group == "reserve_and_invoice"]

    assert grouped == ["reserve_stock", "invoice"]
    assert [[s.name for s in g] for g in FORWARD_GROUPS] == [["reserve_stock", "invoice"], ["payment"]]


def test_an_approved_order_asks_for_its_stock_and_its_invoice_at_once() -> None:
    reaction = start(placed(), ReviewFacts(), POLICY, NOW)

    result = (
        expect(reaction)
        .events(OrderPlaced, OrderApproved, StockReservationRequested, InvoiceRequested)
        .commands(ReserveStock, IssueInvoice)
    )
    assert result.event(InvoiceRequested).reply_by == NOW + POLICY.step_reply_after
    after = and_given(Order(), reaction)
    assert (after.status, after.stage) == ("approved", "reserving")
    assert awaiting_answer(after) == {"reserve_stock", "invoice"}


def test_with_parallel_steps_off_the_order_asks_for_its_stock_only() -> None:
    reaction = start(placed(), ReviewFacts(), replace(POLICY, parallel_steps=False), NOW)

    expect(reaction).events(OrderPlaced, OrderApproved, StockReservationRequested).commands(ReserveStock)


def test_a_person_approving_a_review_hold_starts_both_steps() -> None:
    held = given(placed(), OrderHeld(order_id=ORDER_ID, reasons=("possible duplicate of order o-0",)))

    reaction = approve(held, "alice", POLICY, NOW)

    expect(reaction).events(OrderApproved, StockReservationRequested, InvoiceRequested).commands(
        ReserveStock, IssueInvoice
    )


# -- both succeed ------------------------------------------------------------------------------


def test_stock_first_then_the_prepaid_invoice_waits_for_payment_until_the_invoice_is_due() -> None:
    order = given(*both_requested())

    first = when(order, stock_reserved())
    expect(first).events(OrderStockAllocated).no_commands()  # the invoice is still awaited
    order = and_given(order, first)
    assert (order.status, order.stage, awaiting_answer(order)) == (
        "approved",
        "invoicing",
        frozenset({"invoice"}),
    )

    second = when(order, invoice_issued("prepaid"), at=LATER)

    waiting = expect(second).events(OrderAwaitingPayment).no_commands().event(OrderAwaitingPayment)
    assert (waiting.invoice_id, waiting.amount_due, waiting.payment_deadline) == (INVOICE_ID, TOTAL, DEADLINE)
    assert and_given(order, second).status == "awaiting_payment"


def test_invoice_first_is_kept_and_the_payment_deadline_starts_when_the_stock_is_reserved() -> None:
    order = given(*both_requested())

    first = when(order, invoice_issued("prepaid"))
    kept = expect(first).events(OrderInvoiced).no_commands().event(OrderInvoiced)
    assert (kept.invoice_id, kept.amount_due, kept.due_at) == (INVOICE_ID, TOTAL, DEADLINE)
    order = and_given(order, first)
    assert (order.status, order.stage, awaiting_answer(order)) == (
        "approved",
        "reserving",
        frozenset({"reserve_stock"}),
    )

    second = when(order, stock_reserved(), at=LATER)

    waiting = expect(second).events(OrderStockAllocated, OrderAwaitingPayment).event(OrderAwaitingPayment)
    # The customer gets the whole deadline from when they are asked to pay, not from the invoice.
    assert waiting.payment_deadline == LATER + POLICY.payment_deadline
    assert waiting.payment_deadline > DEADLINE


@pytest.mark.parametrize("invoice_first", [True, False], ids=["invoice-first", "stock-first"])
def test_an_on_account_order_is_confirmed_and_shipped_when_both_succeed_in_either_order(
    invoice_first: bool,
) -> None:
    order = given(*both_requested("on_account"))
    replies = [invoice_issued("on_account"), stock_reserved()]
    if not invoice_first:
        replies.reverse()

    order = and_given(order, when(order, replies[0]))
    reaction = when(order, replies[1])

    expect(reaction).commands(CreateShipments)
    confirmed = expect(reaction).event(OrderConfirmed)
    assert (confirmed.invoice_id, confirmed.total) == (INVOICE_ID, TOTAL)
    assert expect(reaction).event(ShipmentsRequested)
    assert and_given(order, reaction).status == "confirmed"


def test_paid_in_full_before_the_stock_is_reserved_confirms_when_it_is() -> None:
    order = given(*invoiced_first())
    order = and_given(order, when(order, payment_received()))
    paid = when(order, invoice_paid())
    expect(paid).nothing()  # expected: not recorded as ignored; the order waits for its stock

    reaction = when(order, stock_reserved())

    expect(reaction).events(OrderStockAllocated, OrderConfirmed, ShipmentsRequested).commands(CreateShipments)


# -- one fails ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history", [both_requested, invoiced_first], ids=["invoice-pending", "invoice-issued"]
)
def test_stock_refused_voids_the_invoice_beside_it_then_rejects_as_out_of_stock(
    history: Callable[[], tuple[DomainEvent, ...]],
) -> None:
    order = given(*history())

    reaction = when(order, stock_shortage(backordered=False))

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(VoidInvoice)
    )
    started = result.event(OrderCompensationStarted)
    assert (started.steps, started.final_status) == (("void_invoice",), "rejected")
    order = and_given(order, reaction)
    # billing answers the invoice request it had on its way: too late, recorded as ignored
    expect(when(order, invoice_issued())).ignored()
    finished = expect(when(order, invoice_voided())).events(CompensationStepCompleted, OrderRejected)
    assert finished.event(OrderRejected).reason == "out of stock: SKU-B (short 1)"


@pytest.mark.parametrize("history", [both_requested, reserved_first], ids=["stock-pending", "stock-reserved"])
def test_credit_refused_by_policy_releases_the_stock_beside_it_then_rejects(
    history: Callable[[PaymentTerms], tuple[DomainEvent, ...]],
) -> None:
    order = given(*history("on_account"))

    reaction = when(order, credit_check_failed(), REJECT_OVER_CREDIT)

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert (started.steps, started.final_status) == (("release_stock",), "rejected")
    order = and_given(order, reaction)
    expect(when(order, stock_reserved(), REJECT_OVER_CREDIT)).ignored()  # late: compensation began
    finished = expect(when(order, stock_released(), REJECT_OVER_CREDIT)).events(
        CompensationStepCompleted, OrderRejected
    )
    assert finished.event(OrderRejected).reason.startswith("credit limit exceeded")


def test_a_cancel_while_both_are_on_their_way_undoes_both() -> None:
    order = given(*both_requested())

    reaction = cancel(order, "changed mind", "alice", NOW, POLICY)

    started = expect(reaction).commands(VoidInvoice, ReleaseStock).event(OrderCompensationStarted)
    assert started.steps == ("void_invoice", "release_stock")


# -- a backorder beside the invoice ----------------------------------------------------------------


def test_a_backorder_keeps_the_issued_invoice_and_the_order_awaits_stock() -> None:
    order = given(*invoiced_first())

    reaction = when(order, stock_shortage(backordered=True))

    expect(reaction).events(OrderAwaitingStock).no_commands()  # no VoidInvoice: the invoice stays
    order = and_given(order, reaction)
    assert (order.status, order.invoice_id, awaiting_answer(order)) == (
        "awaiting_stock",
        INVOICE_ID,
        frozenset(),
    )


def test_the_invoice_issued_while_backordered_is_kept_and_the_order_keeps_waiting() -> None:
    order = given(*backordered(both_requested()))

    reaction = when(order, invoice_issued())

    expect(reaction).events(OrderInvoiced).no_commands()
    assert and_given(order, reaction).status == "awaiting_stock"


def test_stock_arriving_for_a_backorder_with_its_invoice_starts_the_payment_deadline_then() -> None:
    order = given(*backordered(invoiced_first()))
    arrived = NOW + timedelta(days=1)

    reaction = when(order, stock_reserved(), at=arrived)

    waiting = expect(reaction).events(OrderStockAllocated, OrderAwaitingPayment).event(OrderAwaitingPayment)
    assert waiting.payment_deadline == arrived + POLICY.payment_deadline


def test_a_backorder_cancelled_at_its_stock_wait_deadline_voids_its_invoice_and_releases_its_place() -> None:
    order = given(*backordered(invoiced_first()))
    order = and_given(order, deadline_reached(order, "stock", NOW + timedelta(days=3), POLICY))
    assert order.stock_cancel_at is not None

    reaction = deadline_reached(order, "stock", order.stock_cancel_at, POLICY)

    started = expect(reaction).commands(VoidInvoice, ReleaseStock).event(OrderCompensationStarted)
    assert started.final_status == "cancelled"


def test_a_declined_early_payment_is_counted_and_the_last_one_allowed_cancels() -> None:
    order = given(*backordered(invoiced_first()))
    policy = replace(POLICY, payment_max_attempts=1)
    declined = PaymentFailed(
        order_id=ORDER_ID, invoice_id=INVOICE_ID, reference="pay-1", method="card", amount=TOTAL
    )

    reaction = when(order, declined, policy)

    expect(reaction).commands(VoidInvoice, ReleaseStock)
    assert expect(reaction).event(OrderPaymentFailed).attempt == 1


# -- a credit hold beside the reservation ----------------------------------------------------------


def test_a_credit_hold_while_the_stock_is_pending_shows_the_hold_and_the_reservation_goes_on() -> None:
    order = given(*both_requested("on_account"))

    held = when(order, credit_check_failed())
    expect(held).events(OrderHeld).no_commands()
    order = and_given(order, held)
    assert (order.status, order.held_for_credit, awaiting_answer(order)) == (
        "on_hold",
        True,
        frozenset({"reserve_stock"}),
    )

    reserved = when(order, stock_reserved())

    expect(reserved).events(OrderStockAllocated).no_commands()  # finance decides before anything else
    order = and_given(order, reserved)
    assert (order.status, order.stock_allocated, order.held_for_credit) == ("on_hold", True, True)
    expect(deadline_reached(order, "reply:invoice", NOW + timedelta(hours=1), POLICY)).nothing()


def test_finance_overriding_a_hold_while_stock_is_reserved_confirms_the_order_when_billing_invoices() -> None:
    order = given(*credit_held(reserved_first("on_account")))

    approved = approve(order, "user:fiona", POLICY, NOW)
    expect(approved).events(OrderApproved, OrderCreditLimitOverridden, InvoiceRequested).commands(
        IssueInvoice
    )
    order = and_given(order, approved)

    reaction = when(order, invoice_issued("on_account"))

    expect(reaction).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)


def test_finance_rejecting_a_hold_while_the_stock_is_still_pending_releases_it() -> None:
    order = given(*credit_held(both_requested("on_account")))

    reaction = reject(order, "owes too much", "user:fiona", NOW, POLICY)

    assert expect(reaction).commands(ReleaseStock).event(OrderCompensationStarted).steps == ("release_stock",)


def test_a_credit_hold_on_a_backorder_shows_the_hold_then_after_approval_the_wait_for_stock() -> None:
    order = given(*backordered(both_requested("on_account")))
    order = and_given(order, when(order, credit_check_failed()))
    assert order.status == "on_hold"

    reaction = approve(order, "user:fiona", POLICY, NOW)

    assert expect(reaction).event(OrderApproved).waiting_for_stock is True
    assert and_given(order, reaction).status == "awaiting_stock"


def test_a_stock_wait_alert_during_a_credit_hold_keeps_the_hold_shown() -> None:
    order = given(*credit_held(backordered(both_requested("on_account"))))

    reaction = deadline_reached(order, "stock", NOW + timedelta(days=3), POLICY)

    expect(reaction).events(OrderStockWaitOverdue)
    assert and_given(order, reaction).status == "on_hold"  # finance can still decide


def test_stock_refused_while_held_for_credit_rejects_the_order() -> None:
    order = given(*credit_held(both_requested("on_account")))

    reaction = when(order, stock_shortage(backordered=False))

    expect(reaction).commands(VoidInvoice)  # harmless for a refused invoice: billing answers
    order = and_given(order, reaction)
    assert order.stage == "compensating"
    finished = expect(when(order, invoice_voided())).events(CompensationStepCompleted, OrderRejected)
    assert finished.event(OrderRejected).reason.startswith("out of stock")


# -- replies twice or late, and each branch's deadline ---------------------------------------------


@pytest.mark.parametrize("invoice_first", [True, False], ids=["invoice-first", "stock-first"])
def test_each_reply_delivered_twice_changes_nothing_the_second_time(invoice_first: bool) -> None:
    order = given(*both_requested())
    replies = [invoice_issued(), stock_reserved()]
    if not invoice_first:
        replies.reverse()
    order = and_given(order, when(order, replies[0]))

    expect(when(order, replies[0])).ignored()
    order = and_given(order, when(order, replies[1]))

    for reply in replies:
        expect(when(order, reply)).ignored()


@pytest.mark.parametrize(
    ("step", "command"),
    [("reserve_stock", ReserveStock), ("invoice", IssueInvoice)],
    ids=["stock", "invoice"],
)
def test_each_branch_is_chased_on_its_own_reply_deadline(step: str, command: type[Command]) -> None:
    order = given(*both_requested())

    reaction = deadline_reached(order, f"reply:{step}", NOW + POLICY.step_reply_after, POLICY)

    assert expect(reaction).events(OrderStepResent).commands(command).event(OrderStepResent).step == step


def test_the_answered_branch_is_not_chased_while_the_other_is() -> None:
    order = given(*invoiced_first())

    expect(deadline_reached(order, "reply:invoice", NOW + timedelta(hours=1), POLICY)).nothing()
    expect(deadline_reached(order, "reply:reserve_stock", NOW + timedelta(hours=1), POLICY)).commands(
        ReserveStock
    )


def test_a_late_stock_answer_after_the_invoice_was_parked_asks_billing_once_more() -> None:
    parked = given(
        *both_requested(),
        OrderNeedsAttention(order_id=ORDER_ID, step="invoice", reason="billing did not answer"),
    )

    reaction = when(parked, stock_reserved())

    resent = expect(reaction).events(OrderStockAllocated, OrderStepResent).commands(IssueInvoice)
    assert resent.event(OrderStepResent).step == "invoice"
    after = and_given(parked, reaction)
    assert (after.status, awaiting_answer(after)) == ("approved", frozenset({"invoice"}))


def test_a_payment_recorded_early_is_on_the_order() -> None:
    order = given(*invoiced_first())

    reaction = when(order, payment_received(amount=Decimal("10.00"), amount_paid=Decimal("10.00")))

    expect(reaction).events(OrderPaymentRecorded)
    # Partly paid: when the stock comes, the order waits for the rest.
    order = and_given(order, reaction)
    expect(when(order, stock_reserved())).events(OrderStockAllocated, OrderAwaitingPayment)
