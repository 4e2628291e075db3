"""The fulfilment saga, step by step and compensation by compensation.

Written like eventuate-tram saga tests: `given(...)` the order's history, act once, then
`expect(reaction).events(...).commands(...)`. `and_given` folds a reaction into the order so a
test can follow the saga through several replies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from libs.domain import DomainError
from libs.events.base import Command, DomainEvent, Message
from libs.events.billing import (
    CreditCheckFailed,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    IssueInvoice,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
    VoidInvoice,
)
from libs.events.inventory import (
    CreateShipments,
    ReleaseStock,
    ReservationRevoked,
    ReserveStock,
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    StockReleased,
    StockReserved,
    StockShortage,
)
from libs.events.order import (
    CompensationStepCompleted,
    CompensationStepRequested,
    InvoiceRequested,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderCancelled,
    OrderCompensationStarted,
    OrderCompleted,
    OrderConfirmed,
    OrderCreditLimitOverridden,
    OrderDelivered,
    OrderHeld,
    OrderNeedsAttention,
    OrderPartiallyShipped,
    OrderPaymentFailed,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrderReplyIgnored,
    OrderReservationRevoked,
    OrderShipmentUpdated,
    OrderShipped,
    OrderStepResent,
    OrderStockAllocated,
    OrderStockWaitOverdue,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.events.values import (
    Address,
    Allocation,
    CustomerSnapshot,
    OrderLine,
    PaymentTerms,
    Shipping,
    ShippingMethod,
    SkuQuantity,
)
from services.order.domain.order import Order, evolve
from services.order.domain.review import ReviewFacts, ReviewPolicy
from services.order.domain.saga import (
    COMPENSATIONS,
    DEADLINES,
    FULFILMENT_SAGA,
    Reaction,
    SagaPolicy,
    approve,
    cancel,
    deadline_reached,
    react,
    reject,
    start,
    steps_to_undo,
)

E = TypeVar("E", bound=DomainEvent)
C = TypeVar("C", bound=Command)
History = Callable[[], tuple[DomainEvent, ...]]
Reply = Callable[[], Message]

ORDER_ID = "o-1"
INVOICE_ID = "inv-o-1"
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
# The saga step by step, one participant at a time (parallel_steps off); the parallel group
# has its own tests in test_saga_parallel.py.
POLICY = SagaPolicy(parallel_steps=False)
DEADLINE = NOW + POLICY.payment_deadline
TOTAL = Decimal("36.00")
ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")

# -- the DSL ------------------------------------------------------------------------------


def given(*events: DomainEvent) -> Order:
    """The order as rebuilt from its stream."""
    order = Order()
    for event in events:
        order = evolve(order, event)
    return order


def and_given(order: Order, reaction: Reaction) -> Order:
    """The order after the events of a reaction were appended to its stream."""
    for event in reaction.events:
        order = evolve(order, event)
    return order


class Expect:
    def __init__(self, reaction: Reaction) -> None:
        self.reaction = reaction

    def events(self, *kinds: type[DomainEvent]) -> Expect:
        emitted = [type(e).__name__ for e in self.reaction.events]
        wanted = [k.__name__ for k in kinds]
        assert emitted == wanted, f"events {emitted}, expected {wanted}: {self.reaction.events}"
        return self

    def commands(self, *kinds: type[Command]) -> Expect:
        sent = [type(o.command).__name__ for o in self.reaction.commands]
        wanted = [k.__name__ for k in kinds]
        assert sent == wanted, f"commands {sent}, expected {wanted}"
        return self

    def no_commands(self) -> Expect:
        return self.commands()

    def nothing(self) -> None:
        self.events().no_commands()

    def ignored(self) -> OrderReplyIgnored:
        """The reply changed nothing but the timeline: it is recorded as ignored."""
        return self.events(OrderReplyIgnored).no_commands().event(OrderReplyIgnored)

    def event(self, kind: type[E]) -> E:
        """The one event of this type in the reaction."""
        found = [e for e in self.reaction.events if isinstance(e, kind)]
        assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
        return found[0]

    def command(self, kind: type[C]) -> C:
        """The one command of this type in the reaction."""
        found = [o.command for o in self.reaction.commands if isinstance(o.command, kind)]
        assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
        return found[0]

    def dedupe_key(self, kind: type[Command]) -> str:
        keys = [o.dedupe_key for o in self.reaction.commands if isinstance(o.command, kind)]
        assert len(keys) == 1, f"expected one {kind.__name__}, got {keys}"
        return keys[0]


def expect(reaction: Reaction) -> Expect:
    return Expect(reaction)


# -- histories: the order's stream at each stage of the saga ---------------------------------


def placed(
    *,
    terms: PaymentTerms = "prepaid",
    method: ShippingMethod = "standard",
    address: Address | None = ADDRESS,
    lines: tuple[OrderLine, ...] | None = None,
    region: str | None = "north",
    channel: str = "web",
) -> OrderPlaced:
    lines = lines or (
        OrderLine(sku="SKU-A", quantity=2, unit_price=Decimal("10.00")),
        OrderLine(sku="SKU-B", quantity=1, unit_price=Decimal("5.00")),
        OrderLine(sku="SKU-A", quantity=1, unit_price=Decimal("11.00")),
    )
    return OrderPlaced(
        order_id=ORDER_ID,
        channel=channel,
        customer_id="c-1",
        customer=CustomerSnapshot(id="c-1", name="Ada", region=region),
        lines=lines,
        currency="EUR",
        payment_terms=terms,
        shipping=Shipping(method=method, address=address),
        subtotal=sum((line.unit_price * line.quantity for line in lines), Decimal("0")),
    )


ALLOCATIONS = (
    Allocation(sku="SKU-A", warehouse="wh-north", quantity=3),
    Allocation(sku="SKU-B", warehouse="wh-north", quantity=1),
)
REQUESTED_LINES = (SkuQuantity(sku="SKU-A", quantity=3), SkuQuantity(sku="SKU-B", quantity=1))


def on_hold(p: OrderPlaced | None = None) -> tuple[DomainEvent, ...]:
    held = OrderHeld(order_id=ORDER_ID, reasons=("possible duplicate of order o-0",))
    return (p or placed(), held)


def reserving(p: OrderPlaced | None = None) -> tuple[DomainEvent, ...]:
    return (
        p or placed(),
        OrderApproved(order_id=ORDER_ID, approved_by="rules"),
        StockReservationRequested(order_id=ORDER_ID, lines=REQUESTED_LINES),
    )


def awaiting_stock(p: OrderPlaced | None = None) -> tuple[DomainEvent, ...]:
    missing = (SkuQuantity(sku="SKU-B", quantity=1),)
    return (*reserving(p), OrderAwaitingStock(order_id=ORDER_ID, missing=missing))


def invoicing(p: OrderPlaced | None = None) -> tuple[DomainEvent, ...]:
    return (
        *reserving(p),
        OrderStockAllocated(order_id=ORDER_ID, allocations=ALLOCATIONS),
        InvoiceRequested(order_id=ORDER_ID),
    )


def awaiting_payment() -> tuple[DomainEvent, ...]:
    return (
        *invoicing(),
        OrderAwaitingPayment(
            order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_due=TOTAL, payment_deadline=DEADLINE
        ),
    )


def partly_paid() -> tuple[DomainEvent, ...]:
    recorded = OrderPaymentRecorded(
        order_id=ORDER_ID, amount=Decimal("10.00"), amount_paid=Decimal("10.00"), reference="pay-1"
    )
    return (*awaiting_payment(), recorded)


def confirmed() -> tuple[DomainEvent, ...]:
    return (
        *awaiting_payment(),
        OrderPaymentRecorded(order_id=ORDER_ID, amount=TOTAL, amount_paid=TOTAL, reference="pay-2"),
        OrderConfirmed(order_id=ORDER_ID, invoice_id=INVOICE_ID, total=TOTAL),
        ShipmentsRequested(order_id=ORDER_ID),
    )


def compensating(
    *history: DomainEvent, steps: tuple[str, ...], final_status: str = "cancelled"
) -> tuple[DomainEvent, ...]:
    """A history whose compensation has started and asked each step once."""
    started = OrderCompensationStarted(
        order_id=ORDER_ID,
        reason="why",
        steps=steps,
        final_status=final_status,
        requested_by="rules",
    )
    requested = tuple(
        CompensationStepRequested(
            order_id=ORDER_ID, step=step, attempt=1, retry_at=NOW + POLICY.compensation_retry_after
        )
        for step in steps
    )
    return (*history, started, *requested)


# -- replies from participants -----------------------------------------------------------


def stock_reserved() -> StockReserved:
    return StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS)


def stock_shortage(*, backordered: bool) -> StockShortage:
    return StockShortage(
        order_id=ORDER_ID,
        lines=REQUESTED_LINES,
        region="north",
        missing=(SkuQuantity(sku="SKU-B", quantity=1),),
        backordered=backordered,
    )


def invoice_issued(terms: PaymentTerms = "prepaid", due_at: datetime = DEADLINE) -> InvoiceIssued:
    p = placed(terms=terms)
    # Validated from plain values: the invoice's line type extends the order's.
    return InvoiceIssued.model_validate(
        {
            "order_id": ORDER_ID,
            "invoice_id": INVOICE_ID,
            "customer_id": p.customer_id,
            "currency": p.currency,
            "lines": [line.model_dump() for line in p.lines],
            "subtotal": p.subtotal,
            "tax": Decimal("0.00"),
            "shipping_fee": Decimal("0.00"),
            "total": TOTAL,
            "payment_terms": terms,
            "due_at": due_at,
        }
    )


def credit_check_failed() -> CreditCheckFailed:
    return CreditCheckFailed(
        order_id=ORDER_ID,
        customer_id="c-1",
        amount=TOTAL,
        open_balance=Decimal("990.00"),
        credit_limit=Decimal("1000.00"),
    )


def payment_received(amount: Decimal = TOTAL, amount_paid: Decimal = TOTAL) -> PaymentReceived:
    return PaymentReceived(
        order_id=ORDER_ID,
        invoice_id=INVOICE_ID,
        reference="pay-1",
        method="card",
        amount=amount,
        amount_paid=amount_paid,
    )


def payment_failed() -> PaymentFailed:
    return PaymentFailed(
        order_id=ORDER_ID, invoice_id=INVOICE_ID, reference="pay-1", method="card", amount=TOTAL
    )


def invoice_paid() -> InvoicePaid:
    return InvoicePaid(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_paid=TOTAL)


def stock_released() -> StockReleased:
    return StockReleased(order_id=ORDER_ID, allocations=ALLOCATIONS, reason="why")


def invoice_voided() -> InvoiceVoided:
    return InvoiceVoided(order_id=ORDER_ID, invoice_id=INVOICE_ID, reason="why")


def refund_issued(amount: Decimal = TOTAL, refund_id: str = "rf-1") -> RefundIssued:
    return RefundIssued(
        order_id=ORDER_ID, refund_id=refund_id, invoice_id=INVOICE_ID, amount=amount, reason="why"
    )


def when(order: Order, message: Message) -> Reaction:
    return react(order, message, NOW, POLICY)


def start_approved(policy: SagaPolicy = POLICY, p: OrderPlaced | None = None) -> Reaction:
    return start(p or placed(), ReviewFacts(), policy, NOW)


# -- the saga table ------------------------------------------------------------------------


def test_every_compensation_named_in_the_saga_table_is_defined() -> None:
    named = {step.compensation for step in FULFILMENT_SAGA if step.compensation}

    assert named  # the table does declare compensations
    assert named <= set(COMPENSATIONS)


def test_steps_to_undo_are_the_started_steps_compensations_in_reverse_table_order() -> None:
    assert steps_to_undo(given(*on_hold())) == []
    assert steps_to_undo(given(*reserving())) == ["release_stock"]
    assert steps_to_undo(given(*awaiting_payment())) == ["void_invoice", "release_stock"]


# -- start: placement and automatic review ----------------------------------------------------


def test_auto_approved_order_is_approved_and_inventory_asked_to_reserve_merged_lines() -> None:
    reaction = start_approved()

    result = (
        expect(reaction).events(OrderPlaced, OrderApproved, StockReservationRequested).commands(ReserveStock)
    )
    assert result.event(OrderApproved).approved_by == "rules"
    assert result.event(StockReservationRequested).lines == REQUESTED_LINES
    command = result.command(ReserveStock)
    assert command.order_id == ORDER_ID
    assert command.lines == REQUESTED_LINES  # SKU-A's two lines merged into one of 3
    assert command.region == "north"  # from the customer
    assert command.backorder is True
    assert given(*reaction.events).stage == "reserving"


def test_reserve_stock_asks_for_no_backorder_when_the_policy_rejects_shortages() -> None:
    policy = replace(POLICY, backorder_on_shortage=False)

    reaction = start_approved(policy)

    assert expect(reaction).command(ReserveStock).backorder is False


@pytest.mark.parametrize(
    ("default", "channel", "backorder"),
    [
        (True, "marketplace", False),
        (True, "web", True),
        (False, "b2b", True),
        (False, "web", False),
    ],
    ids=["channel_rejects", "default_backorders", "channel_backorders", "default_rejects"],
)
def test_reserve_stock_backorder_flag_follows_the_channel_shortage_policy_over_the_default(
    default: bool, channel: str, backorder: bool
) -> None:
    policy = replace(
        POLICY,
        backorder_on_shortage=default,
        shortage_policy_by_channel=(("b2b", True), ("marketplace", False)),
    )

    reaction = start_approved(policy, placed(channel=channel))

    assert expect(reaction).command(ReserveStock).backorder is backorder


def test_order_over_the_amount_limit_is_held_for_a_person_without_commands() -> None:
    policy = replace(POLICY, review=ReviewPolicy(amount_limit=Decimal("30.00")))

    reaction = start(placed(), ReviewFacts(), policy, NOW)

    held = expect(reaction).events(OrderPlaced, OrderHeld).no_commands().event(OrderHeld)
    assert len(held.reasons) == 1
    assert "over the review limit" in held.reasons[0]
    assert given(*reaction.events).status == "on_hold"


@pytest.mark.parametrize("method", ["standard", "express"])
@pytest.mark.parametrize(
    "address", [None, Address(line1="1 Main St", country="US")], ids=["missing", "incomplete"]
)
def test_delivery_without_a_complete_address_is_held(method: ShippingMethod, address: Address | None) -> None:
    reaction = start(placed(method=method, address=address), ReviewFacts(), POLICY, NOW)

    held = expect(reaction).events(OrderPlaced, OrderHeld).no_commands().event(OrderHeld)
    assert len(held.reasons) == 1
    assert held.reasons[0].startswith("delivery address is incomplete")
    assert "city" in held.reasons[0]
    assert "postal_code" in held.reasons[0]


def test_possible_duplicate_is_held() -> None:
    reaction = start(placed(), ReviewFacts(possible_duplicate_of="o-0"), POLICY, NOW)

    held = expect(reaction).events(OrderPlaced, OrderHeld).no_commands().event(OrderHeld)
    assert held.reasons == ("possible duplicate of order o-0",)


def test_several_hold_reasons_are_all_reported() -> None:
    policy = replace(POLICY, review=ReviewPolicy(amount_limit=Decimal("1.00")))

    reaction = start(placed(address=None), ReviewFacts(possible_duplicate_of="o-0"), policy, NOW)

    assert len(expect(reaction).events(OrderPlaced, OrderHeld).event(OrderHeld).reasons) == 3


def test_blocked_customer_is_rejected_without_commands() -> None:
    reaction = start(placed(), ReviewFacts(customer_blocked=True), POLICY, NOW)

    result = expect(reaction).events(OrderPlaced, OrderRejected).no_commands()
    rejected = result.event(OrderRejected)
    assert rejected.reason == "customer is blocked"
    assert rejected.rejected_by == "rules"
    assert given(*reaction.events).status == "rejected"


def test_pickup_order_needs_no_address() -> None:
    reaction = start(placed(method="pickup", address=None), ReviewFacts(), POLICY, NOW)

    expect(reaction).events(OrderPlaced, OrderApproved, StockReservationRequested).commands(ReserveStock)


# -- a person approves or rejects a held order -------------------------------------------------


def test_person_approves_a_held_order_and_stock_is_requested() -> None:
    order = given(*on_hold())

    reaction = approve(order, "alice", POLICY, NOW)

    result = expect(reaction).events(OrderApproved, StockReservationRequested).commands(ReserveStock)
    assert result.event(OrderApproved).approved_by == "alice"
    assert result.command(ReserveStock).lines == REQUESTED_LINES
    assert and_given(order, reaction).stage == "reserving"


def test_person_rejects_a_held_order_without_commands() -> None:
    order = given(*on_hold())

    reaction = reject(order, "fraud suspected", "alice", NOW, POLICY)

    rejected = expect(reaction).events(OrderRejected).no_commands().event(OrderRejected)
    assert (rejected.reason, rejected.rejected_by) == ("fraud suspected", "alice")
    assert and_given(order, reaction).status == "rejected"


NOT_HELD = {
    "approved": reserving,
    "awaiting_stock": awaiting_stock,
    "awaiting_payment": awaiting_payment,
    "confirmed": confirmed,
    "rejected": lambda: (*on_hold(), OrderRejected(order_id=ORDER_ID, reason="r", rejected_by="a")),
}


@pytest.mark.parametrize("history", NOT_HELD.values(), ids=NOT_HELD.keys())
def test_only_a_held_order_can_be_approved_by_a_person(history: History) -> None:
    order = given(*history())

    with pytest.raises(DomainError) as refused:
        approve(order, "alice", POLICY, NOW)

    assert refused.value.code == "not_on_hold"


@pytest.mark.parametrize("history", NOT_HELD.values(), ids=NOT_HELD.keys())
def test_only_a_held_order_can_be_rejected_by_a_person(history: History) -> None:
    order = given(*history())

    with pytest.raises(DomainError) as refused:
        reject(order, "no", "alice", NOW, POLICY)

    assert refused.value.code == "not_on_hold"


# -- reserve stock -----------------------------------------------------------------------


def test_stock_reserved_allocates_and_requests_an_invoice_due_at_the_payment_deadline() -> None:
    order = given(*reserving())

    reaction = when(order, stock_reserved())

    result = expect(reaction).events(OrderStockAllocated, InvoiceRequested).commands(IssueInvoice)
    assert result.event(OrderStockAllocated).allocations == ALLOCATIONS
    invoice = result.command(IssueInvoice)
    p = placed()
    assert invoice.order_id == ORDER_ID
    assert invoice.customer_id == p.customer_id
    assert invoice.currency == p.currency
    assert invoice.lines == p.lines
    assert invoice.payment_terms == "prepaid"
    assert invoice.shipping_method == "standard"
    assert invoice.due_at == NOW + POLICY.payment_deadline
    assert and_given(order, reaction).stage == "invoicing"


def test_invoice_on_account_is_due_after_the_account_terms() -> None:
    order = given(*reserving(placed(terms="on_account")))

    reaction = when(order, stock_reserved())

    invoice = expect(reaction).command(IssueInvoice)
    assert invoice.payment_terms == "on_account"
    assert invoice.due_at == NOW + POLICY.on_account_terms


def test_backordered_shortage_makes_the_order_wait_for_stock_without_commands() -> None:
    order = given(*reserving())

    reaction = when(order, stock_shortage(backordered=True))

    waiting = expect(reaction).events(OrderAwaitingStock).no_commands().event(OrderAwaitingStock)
    assert waiting.missing == (SkuQuantity(sku="SKU-B", quantity=1),)
    assert and_given(order, reaction).status == "awaiting_stock"


def test_stock_reserved_after_waiting_for_stock_still_proceeds_to_invoicing() -> None:
    order = given(*awaiting_stock())

    reaction = when(order, stock_reserved())

    expect(reaction).events(OrderStockAllocated, InvoiceRequested).commands(IssueInvoice)
    assert and_given(order, reaction).status == "approved"


def test_shortage_without_backorder_rejects_the_order_as_out_of_stock() -> None:
    order = given(*reserving())

    reaction = when(order, stock_shortage(backordered=False))

    rejected = expect(reaction).events(OrderRejected).no_commands().event(OrderRejected)
    assert rejected.reason.startswith("out of stock")
    assert "SKU-B" in rejected.reason
    assert and_given(order, reaction).status == "rejected"


# -- invoice and payment ------------------------------------------------------------------


def test_prepaid_invoice_issued_makes_the_order_wait_for_payment_until_its_due_date() -> None:
    order = given(*invoicing())
    due_at = NOW + timedelta(minutes=14)

    reaction = when(order, invoice_issued("prepaid", due_at))

    result = expect(reaction).events(OrderAwaitingPayment).no_commands()
    waiting = result.event(OrderAwaitingPayment)
    assert waiting.invoice_id == INVOICE_ID
    assert waiting.amount_due == TOTAL
    assert waiting.payment_deadline == due_at
    after = and_given(order, reaction)
    assert (after.status, after.payment_deadline) == ("awaiting_payment", due_at)


def test_on_account_invoice_issued_confirms_the_order() -> None:
    order = given(*invoicing(placed(terms="on_account")))

    reaction = when(order, invoice_issued("on_account", NOW + POLICY.on_account_terms))

    result = expect(reaction).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)
    confirmed_event = result.event(OrderConfirmed)
    assert (confirmed_event.invoice_id, confirmed_event.total) == (INVOICE_ID, TOTAL)
    assert result.command(CreateShipments).shipping == order.placed.shipping  # type: ignore[union-attr]
    after = and_given(order, reaction)
    assert (after.status, after.stage) == ("confirmed", "fulfilling")


def test_payment_received_is_recorded_on_the_order() -> None:
    order = given(*awaiting_payment())

    reaction = when(order, payment_received(Decimal("10.00"), Decimal("10.00")))

    recorded = expect(reaction).events(OrderPaymentRecorded).no_commands().event(OrderPaymentRecorded)
    assert (recorded.amount, recorded.amount_paid) == (Decimal("10.00"), Decimal("10.00"))
    assert and_given(order, reaction).amount_paid == Decimal("10.00")


def test_invoice_paid_confirms_the_order() -> None:
    order = given(*partly_paid())

    reaction = when(order, invoice_paid())

    result = expect(reaction).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)
    confirmed_event = result.event(OrderConfirmed)
    assert (confirmed_event.invoice_id, confirmed_event.total) == (INVOICE_ID, TOTAL)
    after = and_given(order, reaction)
    assert (after.status, after.stage) == ("confirmed", "fulfilling")


# -- compensation: credit check failed ----------------------------------------------------------


REJECT_OVER_CREDIT = replace(POLICY, credit_exceeded="reject")


def held_for_credit() -> tuple[DomainEvent, ...]:
    reason = "credit limit exceeded: 36.00 on top of an open balance of 990.00 is over the limit of 1000.00"
    return (*invoicing(placed(terms="on_account")), OrderHeld(order_id=ORDER_ID, reasons=(reason,)))


def test_credit_check_failed_holds_the_order_for_finance_with_the_reason_keeping_its_stock() -> None:
    order = given(*invoicing(placed(terms="on_account")))

    reaction = when(order, credit_check_failed())

    held = expect(reaction).events(OrderHeld).no_commands().event(OrderHeld)
    assert held.reasons == (
        "credit limit exceeded: 36.00 on top of an open balance of 990.00 is over the limit of 1000.00",
    )
    after = and_given(order, reaction)
    assert (after.status, after.held_for_credit, after.stock_allocated) == ("on_hold", True, True)


def test_a_credit_hold_is_not_chased_as_an_unanswered_invoice_request() -> None:
    order = given(*held_for_credit())

    reaction = deadline_reached(order, "reply:invoice", NOW + timedelta(hours=1), POLICY)

    expect(reaction).nothing()


def test_finance_approving_a_credit_hold_overrides_the_limit_and_asks_billing_to_charge_it_anyway() -> None:
    order = given(*held_for_credit())

    reaction = approve(order, "user:fiona", POLICY, NOW)

    result = (
        expect(reaction)
        .events(OrderApproved, OrderCreditLimitOverridden, InvoiceRequested)
        .commands(IssueInvoice)
    )
    overridden = result.event(OrderCreditLimitOverridden)
    assert overridden.approved_by == "user:fiona"
    assert overridden.hold_reason.startswith("credit limit exceeded: 36.00")
    command = result.command(IssueInvoice)
    assert (command.payment_terms, command.credit_limit_overridden_by) == ("on_account", "user:fiona")
    # Another decision than the first request, so billing's inbox does not take it for that one.
    assert expect(reaction).dedupe_key(IssueInvoice) == f"{ORDER_ID}:invoice:credit-override"
    assert and_given(order, reaction).status == "approved"


def test_an_overridden_invoice_request_sent_again_still_carries_the_override() -> None:
    order = given(*held_for_credit())
    order = and_given(order, approve(order, "user:fiona", POLICY, NOW))

    reaction = deadline_reached(order, "reply:invoice", NOW + POLICY.step_reply_after, POLICY)

    expect(reaction).events(OrderStepResent).commands(IssueInvoice)
    assert expect(reaction).command(IssueInvoice).credit_limit_overridden_by == "user:fiona"
    assert expect(reaction).dedupe_key(IssueInvoice) == f"{ORDER_ID}:invoice:credit-override"


def test_the_invoice_issued_after_an_override_confirms_the_on_account_order() -> None:
    order = given(*held_for_credit())
    order = and_given(order, approve(order, "user:fiona", POLICY, NOW))

    reaction = when(order, invoice_issued("on_account"))

    expect(reaction).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)


def test_finance_rejecting_a_credit_hold_releases_its_stock_then_rejects_it() -> None:
    order = given(*held_for_credit())

    reaction = reject(order, "customer owes too much", "user:fiona", NOW, POLICY)

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert (started.final_status, started.steps, started.requested_by) == (
        "rejected",
        ("release_stock",),
        "user:fiona",
    )
    order = and_given(order, reaction)
    finished = expect(when(order, stock_released())).events(CompensationStepCompleted, OrderRejected)
    assert finished.event(OrderRejected).reason == "customer owes too much"


def test_credit_check_failed_releases_the_stock_and_will_reject_the_order_when_the_policy_rejects() -> None:
    order = given(*invoicing(placed(terms="on_account")))

    reaction = react(order, credit_check_failed(), NOW, REJECT_OVER_CREDIT)

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert started.final_status == "rejected"
    assert started.steps == ("release_stock",)
    assert started.requested_by == "rules"
    assert "credit limit exceeded" in started.reason
    requested = result.event(CompensationStepRequested)
    assert (requested.step, requested.attempt) == ("release_stock", 1)
    assert requested.retry_at == NOW + POLICY.compensation_retry_after
    assert result.command(ReleaseStock).order_id == ORDER_ID
    assert and_given(order, reaction).stage == "compensating"


def test_stock_released_after_a_failed_credit_check_rejects_the_order() -> None:
    order = given(
        *compensating(
            *invoicing(placed(terms="on_account")),
            steps=("release_stock",),
            final_status="rejected",
        )
    )

    reaction = when(order, stock_released())

    result = expect(reaction).events(CompensationStepCompleted, OrderRejected).no_commands()
    assert result.event(CompensationStepCompleted).step == "release_stock"
    assert result.event(OrderRejected).rejected_by == "rules"
    assert and_given(order, reaction).status == "rejected"


# -- compensation: payment failed, payment deadline passed ------------------------------------


ONE_PAYMENT_ATTEMPT = replace(POLICY, payment_max_attempts=1)


def declined(reference: str) -> PaymentFailed:
    return payment_failed().model_copy(update={"reference": reference})


def test_a_declined_payment_leaves_the_order_awaiting_payment_and_counts_the_attempt() -> None:
    order = given(*awaiting_payment())

    reaction = when(order, payment_failed())

    failed = expect(reaction).events(OrderPaymentFailed).no_commands().event(OrderPaymentFailed)
    assert (failed.reference, failed.attempt, failed.max_attempts) == (
        "pay-1",
        1,
        POLICY.payment_max_attempts,
    )
    after = and_given(order, reaction)
    assert (after.status, after.stage, after.payment_failures) == ("awaiting_payment", "awaiting_payment", 1)


def test_a_successful_attempt_after_declines_pays_and_confirms_the_order() -> None:
    order = given(*awaiting_payment())
    order = and_given(order, when(order, declined("pay-1")))
    order = and_given(order, when(order, declined("pay-2")))
    order = and_given(order, when(order, payment_received()))

    reaction = when(order, invoice_paid())

    expect(reaction).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)


def test_the_same_declined_payment_reported_twice_counts_once() -> None:
    order = given(*awaiting_payment())
    order = and_given(order, when(order, declined("pay-1")))

    expect(when(order, declined("pay-1"))).ignored()


def test_the_last_declined_attempt_allowed_cancels_the_order() -> None:
    order = given(*awaiting_payment())
    for reference in ("pay-1", "pay-2"):
        order = and_given(order, when(order, declined(reference)))

    reaction = when(order, declined("pay-3"))

    result = expect(reaction).events(
        OrderPaymentFailed, OrderCompensationStarted, CompensationStepRequested, CompensationStepRequested
    )
    assert result.event(OrderPaymentFailed).attempt == 3
    started = result.event(OrderCompensationStarted)
    assert started.reason == "payment pay-3 failed, the last of 3 attempts allowed"
    assert started.steps == ("void_invoice", "release_stock")


def test_the_payment_deadline_after_declined_attempts_cancels_saying_so() -> None:
    order = given(*awaiting_payment())
    order = and_given(order, when(order, declined("pay-1")))

    reaction = deadline_reached(order, "payment", DEADLINE, POLICY)

    started = expect(reaction).event(OrderCompensationStarted)
    assert started.reason == "payment deadline passed after 1 declined attempt(s)"


def test_with_one_attempt_allowed_a_declined_payment_voids_the_invoice_and_releases_the_stock() -> None:
    order = given(*awaiting_payment())

    reaction = react(order, payment_failed(), NOW, ONE_PAYMENT_ATTEMPT)

    result = (
        expect(reaction)
        .events(
            OrderPaymentFailed, OrderCompensationStarted, CompensationStepRequested, CompensationStepRequested
        )
        .commands(VoidInvoice, ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert started.steps == ("void_invoice", "release_stock")
    assert started.final_status == "cancelled"
    assert started.reason == "payment pay-1 failed"
    steps = [e.step for e in reaction.events if isinstance(e, CompensationStepRequested)]
    assert steps == ["void_invoice", "release_stock"]
    assert result.command(VoidInvoice).reason == started.reason
    assert result.command(ReleaseStock).reason == started.reason


@pytest.mark.parametrize(
    ("first", "last"),
    [(stock_released, invoice_voided), (invoice_voided, stock_released)],
    ids=["stock_first", "invoice_first"],
)
def test_order_is_cancelled_only_after_the_last_compensation_reply(first: Reply, last: Reply) -> None:
    order = given(*awaiting_payment())
    order = and_given(order, react(order, payment_failed(), NOW, ONE_PAYMENT_ATTEMPT))

    after_first = when(order, first())
    order = and_given(order, after_first)
    after_last = when(order, last())

    expect(after_first).events(CompensationStepCompleted).no_commands()
    assert order.status != "cancelled"
    result = expect(after_last).events(CompensationStepCompleted, OrderCancelled).no_commands()
    assert result.event(OrderCancelled).cancelled_by == "rules"
    assert and_given(order, after_last).status == "cancelled"


@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(seconds=1)], ids=["at", "after"])
def test_payment_deadline_passed_voids_the_invoice_releases_stock_and_will_cancel(
    late_by: timedelta,
) -> None:
    order = given(*awaiting_payment())

    reaction = deadline_reached(order, "payment", DEADLINE + late_by, POLICY)

    result = (
        expect(reaction)
        .events(OrderCompensationStarted, CompensationStepRequested, CompensationStepRequested)
        .commands(VoidInvoice, ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert (started.reason, started.final_status) == ("payment deadline passed", "cancelled")


def test_payment_deadline_not_yet_passed_changes_nothing() -> None:
    order = given(*awaiting_payment())

    reaction = deadline_reached(order, "payment", DEADLINE - timedelta(seconds=1), POLICY)

    expect(reaction).nothing()


def test_payment_deadline_after_the_order_is_confirmed_changes_nothing() -> None:
    order = given(*confirmed())

    reaction = deadline_reached(order, "payment", DEADLINE + timedelta(hours=1), POLICY)

    expect(reaction).nothing()


# -- cancellation by a person --------------------------------------------------------------


def test_cancel_before_stock_was_requested_cancels_at_once_without_commands() -> None:
    order = given(*on_hold())

    reaction = cancel(order, "customer changed their mind", "alice", NOW, POLICY)

    result = expect(reaction).events(OrderCompensationStarted, OrderCancelled).no_commands()
    assert result.event(OrderCompensationStarted).steps == ()
    cancelled = result.event(OrderCancelled)
    assert cancelled.cancelled_by == "alice"
    assert "customer changed their mind" in cancelled.reason
    assert and_given(order, reaction).status == "cancelled"


@pytest.mark.parametrize("history", [reserving, awaiting_stock], ids=["reserving", "awaiting_stock"])
def test_cancel_before_invoicing_only_releases_the_stock(history: History) -> None:
    order = given(*history())

    reaction = cancel(order, "changed mind", "alice", NOW, POLICY)

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert started.steps == ("release_stock",)
    assert (started.final_status, started.requested_by) == ("cancelled", "alice")


@pytest.mark.parametrize(
    "history",
    [invoicing, awaiting_payment, partly_paid, confirmed],
    ids=["invoicing", "awaiting_payment", "partly_paid", "confirmed"],
)
def test_cancel_after_invoicing_voids_the_invoice_and_releases_the_stock(history: History) -> None:
    order = given(*history())

    reaction = cancel(order, "changed mind", "alice", NOW, POLICY)

    started = (
        expect(reaction)
        .events(OrderCompensationStarted, CompensationStepRequested, CompensationStepRequested)
        .commands(VoidInvoice, ReleaseStock)
        .event(OrderCompensationStarted)
    )
    assert started.steps == ("void_invoice", "release_stock")


def test_refund_issued_for_a_cancelled_paid_order_is_recorded() -> None:
    order = given(*compensating(*confirmed(), steps=("void_invoice", "release_stock")))

    reaction = when(order, refund_issued(TOTAL, "rf-1"))

    refunded = expect(reaction).events(OrderRefunded).no_commands().event(OrderRefunded)
    assert (refunded.amount, refunded.refund_id) == (TOTAL, "rf-1")
    assert and_given(order, reaction).amount_refunded == TOTAL


def test_the_same_refund_reported_twice_is_recorded_once() -> None:
    order = given(*compensating(*confirmed(), steps=("void_invoice", "release_stock")))
    order = and_given(order, when(order, refund_issued(TOTAL, "rf-1")))

    reaction = when(order, refund_issued(TOTAL, "rf-1"))

    assert expect(reaction).ignored().reply_type == "RefundIssued"
    assert and_given(order, reaction).amount_refunded == TOTAL


@pytest.mark.parametrize(
    "history",
    [
        lambda: compensating(*awaiting_payment(), steps=("void_invoice", "release_stock")),
        lambda: (*on_hold(), OrderCancelled(order_id=ORDER_ID, reason="r", cancelled_by="a")),
        lambda: (*reserving(), OrderRejected(order_id=ORDER_ID, reason="r", rejected_by="rules")),
    ],
    ids=["compensating", "cancelled", "rejected"],
)
def test_an_order_already_cancelled_or_being_cancelled_cannot_be_cancelled(
    history: History,
) -> None:
    order = given(*history())

    with pytest.raises(DomainError) as refused:
        cancel(order, "again", "alice", NOW, POLICY)

    assert refused.value.code == "not_cancellable"


def test_cancelling_twice_is_refused_the_second_time() -> None:
    order = given(*awaiting_payment())
    order = and_given(order, cancel(order, "first", "alice", NOW, POLICY))

    with pytest.raises(DomainError) as refused:
        cancel(order, "second", "alice", NOW, POLICY)

    assert refused.value.code == "not_cancellable"


# -- compensation retries and needs attention --------------------------------------------------


def retry(order: Order, step: str = "release_stock", at: datetime = NOW) -> Reaction:
    return deadline_reached(order, f"compensation:{step}", at, POLICY)


def test_unanswered_compensation_step_is_sent_again_with_a_new_dedupe_key() -> None:
    order = given(*reserving())
    first = cancel(order, "changed mind", "alice", NOW, POLICY)
    order = and_given(order, first)
    later = NOW + POLICY.compensation_retry_after

    reaction = retry(order, at=later)

    result = expect(reaction).events(CompensationStepRequested).commands(ReleaseStock)
    requested = result.event(CompensationStepRequested)
    assert (requested.step, requested.attempt) == ("release_stock", 2)
    assert requested.retry_at == later + POLICY.compensation_retry_after
    assert result.dedupe_key(ReleaseStock) != expect(first).dedupe_key(ReleaseStock)


def test_compensation_step_that_is_never_answered_parks_the_order_as_needing_attention() -> None:
    order = given(*reserving())
    first = cancel(order, "changed mind", "alice", NOW, POLICY)
    sent = list(first.commands)
    order = and_given(order, first)
    for _ in range(POLICY.compensation_max_attempts - 1):
        reaction = retry(order)
        sent += reaction.commands
        order = and_given(order, reaction)

    reaction = retry(order)

    result = expect(reaction).events(OrderNeedsAttention).no_commands()
    attention = result.event(OrderNeedsAttention)
    assert attention.step == "release_stock"
    assert len(sent) == POLICY.compensation_max_attempts
    assert len({o.dedupe_key for o in sent}) == POLICY.compensation_max_attempts
    order = and_given(order, reaction)
    assert order.status == "needs_attention"
    expect(retry(order)).nothing()


def test_late_reply_after_needs_attention_still_completes_the_compensation_and_cancels() -> None:
    order = given(*reserving())
    order = and_given(order, cancel(order, "changed mind", "alice", NOW, POLICY))
    for _ in range(POLICY.compensation_max_attempts):
        order = and_given(order, retry(order))
    assert order.status == "needs_attention"

    reaction = when(order, stock_released())

    expect(reaction).events(CompensationStepCompleted, OrderCancelled).no_commands()
    assert and_given(order, reaction).status == "cancelled"


def test_retry_of_a_compensation_step_already_completed_changes_nothing() -> None:
    order = given(*compensating(*awaiting_payment(), steps=("void_invoice", "release_stock")))
    order = and_given(order, when(order, stock_released()))

    reaction = retry(order, "release_stock")

    expect(reaction).nothing()


# -- late and duplicate replies ---------------------------------------------------------------


LATE_OR_DUPLICATE = {
    "stock_reserved_twice": (invoicing, stock_reserved),
    "shortage_after_reserved": (invoicing, lambda: stock_shortage(backordered=True)),
    "shortage_while_awaiting_stock": (awaiting_stock, lambda: stock_shortage(backordered=True)),
    "invoice_issued_twice": (awaiting_payment, invoice_issued),
    "invoice_paid_when_confirmed": (confirmed, invoice_paid),
    "payment_failed_when_confirmed": (confirmed, payment_failed),
    "credit_check_failed_when_awaiting_payment": (awaiting_payment, credit_check_failed),
    "stock_released_when_not_compensating": (confirmed, stock_released),
    "invoice_voided_when_not_compensating": (awaiting_payment, invoice_voided),
    "stock_reserved_while_compensating": (
        lambda: compensating(*awaiting_stock(), steps=("release_stock",)),
        stock_reserved,
    ),
    "invoice_voided_after_cancelled": (
        lambda: (
            *compensating(*awaiting_payment(), steps=("void_invoice",)),
            CompensationStepCompleted(order_id=ORDER_ID, step="void_invoice"),
            OrderCancelled(order_id=ORDER_ID, reason="r", cancelled_by="rules"),
        ),
        invoice_voided,
    ),
}


@pytest.mark.parametrize(("history", "reply"), LATE_OR_DUPLICATE.values(), ids=LATE_OR_DUPLICATE.keys())
def test_late_or_duplicate_reply_changes_nothing_but_is_recorded_on_the_timeline(
    history: History, reply: Reply
) -> None:
    order = given(*history())

    reaction = react(order, reply(), NOW, POLICY, reply_id="evt-9")

    ignored = expect(reaction).ignored()
    assert (ignored.reply_type, ignored.reply_id) == (type(reply()).__name__, "evt-9")
    assert (ignored.stage, ignored.status) == (order.stage, order.status)
    after = and_given(order, reaction)
    assert (after.status, after.stage) == (order.status, order.stage)


def test_reply_for_an_unknown_order_changes_nothing() -> None:
    expect(when(given(), stock_reserved())).nothing()


def test_payment_of_a_confirmed_on_account_order_needs_nothing_and_is_not_flagged() -> None:
    order = given(
        *invoicing(placed(terms="on_account")),
        OrderConfirmed(order_id=ORDER_ID, invoice_id=INVOICE_ID, total=TOTAL),
    )

    expect(when(order, invoice_paid())).nothing()


# -- deterministic dedupe keys -------------------------------------------------------------


def test_every_command_dedupe_key_is_the_same_for_the_same_decision() -> None:
    def keys() -> list[str]:
        reactions = [
            start_approved(),
            approve(given(*on_hold()), "alice", POLICY, NOW),
            when(given(*reserving()), stock_reserved()),
            when(given(*awaiting_payment()), payment_failed()),
            cancel(given(*awaiting_stock()), "x", "alice", NOW, POLICY),
            retry(given(*compensating(*reserving(), steps=("release_stock",)))),
        ]
        return [o.dedupe_key for r in reactions for o in r.commands]

    first, again = keys(), keys()

    assert first == again
    assert all(first)


def test_dedupe_keys_distinguish_each_kind_of_command_and_each_attempt() -> None:
    order = given(*compensating(*awaiting_payment(), steps=("void_invoice", "release_stock")))
    keys = [
        expect(start_approved()).dedupe_key(ReserveStock),
        expect(when(given(*reserving()), stock_reserved())).dedupe_key(IssueInvoice),
        *(o.dedupe_key for o in when(given(*awaiting_payment()), payment_failed()).commands),
        expect(retry(order, "void_invoice")).dedupe_key(VoidInvoice),
        expect(retry(order, "release_stock")).dedupe_key(ReleaseStock),
    ]

    assert len(set(keys)) == len(keys)
    assert all(ORDER_ID in key for key in keys)


def test_a_channel_with_its_own_payment_deadline_gets_it_on_the_invoice() -> None:
    policy = replace(POLICY, payment_deadline_by_channel=(("bank-transfer", timedelta(days=3)),))
    order = given(*reserving(placed(channel="bank-transfer")))

    reaction = react(order, stock_reserved(), NOW, policy)

    assert expect(reaction).command(IssueInvoice).due_at == NOW + timedelta(days=3)
    default = react(given(*reserving()), stock_reserved(), NOW, policy)
    assert expect(default).command(IssueInvoice).due_at == NOW + policy.payment_deadline


# -- forward steps have reply deadlines ---------------------------------------------------------


def test_reserve_and_invoice_requests_carry_a_reply_deadline() -> None:
    reserving_reaction = start_approved()
    asked = expect(reserving_reaction).event(StockReservationRequested)
    assert asked.reply_by == NOW + POLICY.step_reply_after

    invoicing_reaction = when(given(*reserving()), stock_reserved())
    assert expect(invoicing_reaction).event(InvoiceRequested).reply_by == NOW + POLICY.step_reply_after


@pytest.mark.parametrize(
    ("history", "step", "command"),
    [(reserving, "reserve_stock", ReserveStock), (invoicing, "invoice", IssueInvoice)],
    ids=["reserve", "invoice"],
)
def test_unanswered_forward_step_is_sent_again_with_the_same_message_id(
    history: Callable[[], tuple[DomainEvent, ...]], step: str, command: type[Command]
) -> None:
    order = given(*history())
    later = NOW + POLICY.step_reply_after

    reaction = deadline_reached(order, f"reply:{step}", later, POLICY)

    resent = expect(reaction).events(OrderStepResent).commands(command).event(OrderStepResent)
    assert (resent.step, resent.attempt, resent.reply_by) == (step, 2, later + POLICY.step_reply_after)
    first_key = start_approved() if step == "reserve_stock" else when(given(*reserving()), stock_reserved())
    assert reaction.commands[0].dedupe_key == first_key.commands[0].dedupe_key


def test_forward_step_unanswered_after_the_last_attempt_parks_the_order_for_a_person() -> None:
    order = given(*reserving())
    for attempt in range(2, POLICY.step_max_attempts + 1):
        order = and_given(order, deadline_reached(order, "reply:reserve_stock", NOW, POLICY))
        assert order.step_attempts["reserve_stock"] == attempt

    reaction = deadline_reached(order, "reply:reserve_stock", NOW, POLICY)

    parked = expect(reaction).events(OrderNeedsAttention).no_commands().event(OrderNeedsAttention)
    assert parked.step == "reserve_stock"
    assert "inventory did not answer ReserveStock" in parked.reason
    assert and_given(order, reaction).status == "needs_attention"
    # A person may then cancel: the compensations undo whatever inventory did.
    cancelled = cancel(and_given(order, reaction), "gave up", "alice", NOW, POLICY)
    assert expect(cancelled).command(ReleaseStock).order_id == ORDER_ID


def test_a_late_answer_after_the_park_carries_the_saga_on() -> None:
    parked = given(
        *reserving(),
        OrderNeedsAttention(order_id=ORDER_ID, step="reserve_stock", reason="no answer"),
    )

    reaction = when(parked, stock_reserved())

    expect(reaction).events(OrderStockAllocated, InvoiceRequested).commands(IssueInvoice)
    assert and_given(parked, reaction).status == "approved"


@pytest.mark.parametrize(
    "history",
    [awaiting_stock, awaiting_payment, confirmed],
    ids=["backordered", "awaiting_payment", "confirmed"],
)
def test_reply_deadline_of_a_step_already_answered_changes_nothing(
    history: Callable[[], tuple[DomainEvent, ...]],
) -> None:
    order = given(*history())

    for step in ("reserve_stock", "invoice"):
        expect(deadline_reached(order, f"reply:{step}", NOW + timedelta(hours=1), POLICY)).nothing()


# -- shipping: from confirmed to completed ----------------------------------------------------

TWO_WAREHOUSES = (
    Allocation(sku="SKU-A", warehouse="wh-north", quantity=3),
    Allocation(sku="SKU-B", warehouse="wh-south", quantity=1),
)


def split_confirmed() -> tuple[DomainEvent, ...]:
    """Paid, reserved across two warehouses: it ships as two parcels."""
    return (*confirmed(), OrderStockAllocated(order_id=ORDER_ID, allocations=TWO_WAREHOUSES))


def shipment_created(shipment_id: str, warehouse: str) -> ShipmentCreated:
    return ShipmentCreated(
        shipment_id=shipment_id,
        order_id=ORDER_ID,
        warehouse=warehouse,
        method="standard",
        lines=(SkuQuantity(sku="SKU-A", quantity=3),),
    )


def dispatched(shipment_id: str, warehouse: str) -> ShipmentDispatched:
    return ShipmentDispatched(
        shipment_id=shipment_id,
        order_id=ORDER_ID,
        warehouse=warehouse,
        lines=(SkuQuantity(sku="SKU-A", quantity=3),),
        carrier="DHL",
        tracking_number=f"TRK-{shipment_id}",
    )


def delivered(shipment_id: str) -> ShipmentDelivered:
    return ShipmentDelivered(shipment_id=shipment_id, order_id=ORDER_ID)


def step_through(order: Order, *replies: Message) -> tuple[Order, list[DomainEvent]]:
    emitted: list[DomainEvent] = []
    for reply in replies:
        reaction = when(order, reply)
        emitted += reaction.events
        order = and_given(order, reaction)
    return order, emitted


def test_two_parcels_ship_partially_then_fully_then_deliver_and_a_paid_order_completes() -> None:
    order, _ = step_through(
        given(*split_confirmed()), shipment_created("s-n", "wh-north"), shipment_created("s-s", "wh-south")
    )
    assert order.status == "confirmed"

    order, emitted = step_through(order, dispatched("s-n", "wh-north"))
    assert order.status == "partially_shipped"
    assert [type(e) for e in emitted] == [OrderShipmentUpdated, OrderPartiallyShipped]

    order, _ = step_through(order, dispatched("s-s", "wh-south"))
    assert order.status == "shipped"
    assert order.shipments["s-s"].tracking_number == "TRK-s-s"

    order, _ = step_through(order, delivered("s-n"))
    assert order.status == "shipped"  # one parcel still on its way
    order, emitted = step_through(order, delivered("s-s"))
    assert [type(e) for e in emitted] == [OrderShipmentUpdated, OrderDelivered, OrderCompleted]
    assert (order.status, order.stage, order.is_closed) == ("completed", "ended", True)


def test_a_pickup_collected_is_shipped_delivered_and_completed_at_once() -> None:
    order, _ = step_through(given(*confirmed()), shipment_created("s-1", "wh-north"))

    collected = ShipmentCollected(
        shipment_id="s-1",
        order_id=ORDER_ID,
        warehouse="wh-north",
        lines=(SkuQuantity(sku="SKU-A", quantity=3),),
    )
    order, emitted = step_through(order, collected)

    assert [type(e) for e in emitted] == [OrderShipmentUpdated, OrderShipped, OrderDelivered, OrderCompleted]


def test_an_on_account_order_delivered_unpaid_completes_when_paid_in_full() -> None:
    on_account = (
        *invoicing(placed(terms="on_account")),
        OrderConfirmed(order_id=ORDER_ID, invoice_id=INVOICE_ID, total=TOTAL),
        ShipmentsRequested(order_id=ORDER_ID),
    )
    order, _ = step_through(
        given(*on_account),
        shipment_created("s-1", "wh-north"),
        dispatched("s-1", "wh-north"),
        delivered("s-1"),
    )
    assert order.status == "delivered"

    order, _ = step_through(order, payment_received(Decimal("10.00"), TOTAL - Decimal("10.00")))
    assert order.status == "delivered"  # not in full yet
    second = payment_received(Decimal("10.00"), TOTAL).model_copy(update={"reference": "pay-9"})
    order, emitted = step_through(order, second)
    assert order.status == "completed"
    assert expect(Reaction(emitted)).event(OrderCompleted).amount_paid == TOTAL


def test_cancel_is_refused_once_a_shipment_has_left_naming_it() -> None:
    order, _ = step_through(
        given(*split_confirmed()),
        shipment_created("s-n", "wh-north"),
        shipment_created("s-s", "wh-south"),
        dispatched("s-n", "wh-north"),
    )

    with pytest.raises(DomainError, match="s-n left the warehouse") as refused:
        cancel(order, "changed my mind", "alice", NOW, POLICY)
    assert refused.value.status == 409


def test_cancel_before_any_dispatch_releases_stock_which_cancels_the_shipments_and_voids_the_invoice() -> (
    None
):
    order, _ = step_through(given(*split_confirmed()), shipment_created("s-n", "wh-north"))

    reaction = cancel(order, "changed my mind", "alice", NOW, POLICY)

    expect(reaction).commands(VoidInvoice, ReleaseStock)


def test_a_repeated_or_late_shipment_milestone_changes_nothing_but_the_timeline() -> None:
    order, _ = step_through(
        given(*confirmed()), shipment_created("s-1", "wh-north"), dispatched("s-1", "wh-north")
    )

    for late in (shipment_created("s-1", "wh-north"), dispatched("s-1", "wh-north")):
        assert expect(when(order, late)).ignored().reply_type == type(late).__name__


def test_unanswered_create_shipments_is_sent_again_then_parked() -> None:
    order = given(*confirmed())

    resent = deadline_reached(order, "reply:ship", NOW, POLICY)
    assert expect(resent).events(OrderStepResent).command(CreateShipments).order_id == ORDER_ID

    order = and_given(
        and_given(order, resent), deadline_reached(and_given(order, resent), "reply:ship", NOW, POLICY)
    )
    parked = deadline_reached(order, "reply:ship", NOW, POLICY)
    assert "inventory did not answer CreateShipments" in expect(parked).event(OrderNeedsAttention).reason


def test_invoice_request_carries_destination_and_catalogue_weight() -> None:
    heavy = placed().model_copy(update={"weight_kg": Decimal("12.500")})

    reaction = when(given(*reserving(heavy)), stock_reserved())

    command = expect(reaction).command(IssueInvoice)
    assert (command.destination_country, command.destination_region, command.weight_kg) == (
        "US",
        "north",
        Decimal("12.500"),
    )


# -- stock revoked by an adjustment after the reservation -------------------------------------


def revoked(quantity: int = 3) -> ReservationRevoked:
    return ReservationRevoked(
        order_id=ORDER_ID, sku="SKU-A", warehouse="wh-north", quantity=quantity, reason="damage at wh-north"
    )


def test_stock_revoked_then_reserved_elsewhere_keeps_the_order_where_it_was() -> None:
    moved = (Allocation(sku="SKU-A", warehouse="wh-south", quantity=3), ALLOCATIONS[1])
    order, emitted = step_through(
        given(*awaiting_payment()), revoked(), StockReserved(order_id=ORDER_ID, allocations=moved)
    )

    assert [type(e) for e in emitted] == [OrderReservationRevoked, OrderStockAllocated]
    assert (order.status, order.stage, order.allocations) == ("awaiting_payment", "awaiting_payment", moved)


def test_stock_revoked_and_backordered_waits_then_returns_to_its_status() -> None:
    shortage = StockShortage(
        order_id=ORDER_ID,
        lines=REQUESTED_LINES,
        missing=(SkuQuantity(sku="SKU-A", quantity=3),),
        backordered=True,
    )
    order, _ = step_through(given(*confirmed()), revoked(), shortage)
    assert order.status == "awaiting_stock"

    order, _ = step_through(order, StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS))
    assert (order.status, order.stage) == ("confirmed", "fulfilling")


def test_stock_revoked_with_no_backorder_by_policy_cancels_and_refunds() -> None:
    shortage = StockShortage(
        order_id=ORDER_ID,
        lines=REQUESTED_LINES,
        missing=(SkuQuantity(sku="SKU-A", quantity=3),),
        backordered=False,
    )
    order, _ = step_through(given(*confirmed()), revoked())

    reaction = when(order, shortage)

    started = expect(reaction).event(OrderCompensationStarted)
    assert started.reason.startswith("out of stock after a stock adjustment")
    assert "void_invoice" in started.steps


# -- shipments follow a re-planned allocation (inventory cancels and creates them) ---------------

MOVED_SOUTH = (
    Allocation(sku="SKU-A", warehouse="wh-south", quantity=3),
    Allocation(sku="SKU-B", warehouse="wh-south", quantity=1),
)


def shipment_cancelled(shipment_id: str) -> ShipmentCancelled:
    return ShipmentCancelled(shipment_id=shipment_id, order_id=ORDER_ID, reason="damage at wh-north")


def test_an_order_re_planned_to_another_warehouse_ships_from_there_and_completes() -> None:
    order, _ = step_through(given(*confirmed()), shipment_created("s-n", "wh-north"))

    order, emitted = step_through(
        order,
        revoked(),
        StockReserved(order_id=ORDER_ID, allocations=MOVED_SOUTH),
        shipment_cancelled("s-n"),
        shipment_created("s-s", "wh-south"),
    )
    assert order.status == "confirmed"
    assert OrderShipped not in [type(e) for e in emitted]

    order, emitted = step_through(order, dispatched("s-s", "wh-south"), delivered("s-s"))
    assert [type(e) for e in emitted] == [
        OrderShipmentUpdated,
        OrderShipped,
        OrderShipmentUpdated,
        OrderDelivered,
        OrderCompleted,
    ]


def test_shipment_news_that_overtakes_the_re_planned_allocation_ships_the_order_when_it_arrives() -> None:
    order, _ = step_through(given(*confirmed()), shipment_created("s-n", "wh-north"), revoked())
    # Shipment events travel under their own keys: they may come before the reservation's answer.
    order, emitted = step_through(
        order, shipment_cancelled("s-n"), shipment_created("s-s", "wh-south"), dispatched("s-s", "wh-south")
    )
    assert order.status == "confirmed"

    reaction = when(order, StockReserved(order_id=ORDER_ID, allocations=MOVED_SOUTH))

    expect(reaction).events(OrderStockAllocated, OrderShipped).no_commands()


def test_shipment_news_between_a_revocation_and_its_answer_decides_nothing_until_the_answer() -> None:
    order, _ = step_through(given(*confirmed()), shipment_created("s-n", "wh-north"), revoked())
    split = (
        Allocation(sku="SKU-A", warehouse="wh-north", quantity=2),
        Allocation(sku="SKU-A", warehouse="wh-south", quantity=1),
        Allocation(sku="SKU-B", warehouse="wh-north", quantity=1),
    )

    # Re-planned as north and south: the north parcel is made again and leaves at once, before
    # the order hears of the new allocation (its south parcel is on its way too).
    order, emitted = step_through(
        order,
        shipment_cancelled("s-n"),
        shipment_created("s-n-1", "wh-north"),
        dispatched("s-n-1", "wh-north"),
    )
    assert order.status == "confirmed"
    assert OrderShipped not in [type(e) for e in emitted]

    order, _ = step_through(order, StockReserved(order_id=ORDER_ID, allocations=split))
    assert order.status == "confirmed"
    order, _ = step_through(order, shipment_created("s-s", "wh-south"))
    assert order.status == "partially_shipped"


def test_a_parcel_that_left_before_the_re_plan_does_not_stand_in_for_the_new_one_at_its_warehouse() -> None:
    order, _ = step_through(
        given(*split_confirmed()),
        shipment_created("s-n", "wh-north"),
        shipment_created("s-s", "wh-south"),
        dispatched("s-n", "wh-north"),
    )
    assert order.status == "partially_shipped"
    b_moved_north = (Allocation(sku="SKU-B", warehouse="wh-north", quantity=1),)

    order, emitted = step_through(
        order,
        revoked(),
        StockReserved(order_id=ORDER_ID, allocations=b_moved_north),
        shipment_cancelled("s-s"),
    )
    assert order.status == "partially_shipped"  # s-n left with A; B at wh-north has no parcel yet
    assert OrderShipped not in [type(e) for e in emitted]

    order, _ = step_through(order, shipment_created("s-n-1", "wh-north"))
    assert order.status == "partially_shipped"
    order, emitted = step_through(order, dispatched("s-n-1", "wh-north"))
    assert order.status == "shipped"


def test_a_shortage_without_a_revocation_past_the_reservation_is_ignored() -> None:
    shortage = StockShortage(
        order_id=ORDER_ID,
        lines=REQUESTED_LINES,
        missing=(SkuQuantity(sku="SKU-A", quantity=3),),
        backordered=True,
    )
    expect(when(given(*confirmed()), shortage)).ignored()


# -- waiting for stock: alert, then cancel or keep waiting by policy --------------------------

ALERT_AT = NOW + timedelta(days=3)


def backordered() -> tuple[DomainEvent, ...]:
    missing = (SkuQuantity(sku="SKU-B", quantity=1),)
    return (*reserving(), OrderAwaitingStock(order_id=ORDER_ID, missing=missing, alert_at=ALERT_AT))


def test_every_deadline_the_saga_table_names_has_a_handler() -> None:
    named = {step.deadline for step in FULFILMENT_SAGA if step.deadline}

    assert named == {"payment", "stock"}
    assert named <= set(DEADLINES)


def test_a_backordered_order_waits_for_stock_with_an_alert_time_from_the_policy() -> None:
    order = given(*reserving())

    reaction = when(order, stock_shortage(backordered=True))

    waiting = expect(reaction).events(OrderAwaitingStock).event(OrderAwaitingStock)
    assert waiting.alert_at == NOW + POLICY.stock_wait_alert_after  # type: ignore[operator]


def test_the_stock_wait_before_its_alert_time_changes_nothing() -> None:
    expect(
        deadline_reached(given(*backordered()), "stock", ALERT_AT - timedelta(seconds=1), POLICY)
    ).nothing()


def test_a_stock_wait_past_its_alert_time_needs_attention_naming_what_is_missing() -> None:
    order = given(*backordered())

    reaction = deadline_reached(order, "stock", ALERT_AT, POLICY)

    overdue = expect(reaction).events(OrderStockWaitOverdue).no_commands().event(OrderStockWaitOverdue)
    assert overdue.cancel_at == ALERT_AT + POLICY.stock_wait_cancel_after_alert  # type: ignore[operator]
    assert "SKU-B (short 1)" in overdue.reason
    assert and_given(order, reaction).status == "needs_attention"


def test_a_stock_wait_past_its_cancel_time_releases_the_stock_and_will_cancel() -> None:
    order = given(*backordered())
    order = and_given(order, deadline_reached(order, "stock", ALERT_AT, POLICY))
    assert order.stock_cancel_at is not None

    reaction = deadline_reached(order, "stock", order.stock_cancel_at, POLICY)

    result = (
        expect(reaction).events(OrderCompensationStarted, CompensationStepRequested).commands(ReleaseStock)
    )
    started = result.event(OrderCompensationStarted)
    assert (started.final_status, started.reason) == (
        "cancelled",
        "no stock by the stock wait deadline: SKU-B (short 1)",
    )


def test_with_the_keep_waiting_policy_an_overdue_stock_wait_is_never_cancelled() -> None:
    keep_waiting = replace(POLICY, stock_wait_cancel_after_alert=None)
    order = given(*backordered())
    order = and_given(order, deadline_reached(order, "stock", ALERT_AT, keep_waiting))

    assert order.status == "needs_attention"
    assert order.stock_cancel_at is None
    expect(deadline_reached(order, "stock", ALERT_AT + timedelta(days=365), keep_waiting)).nothing()


def test_stock_arriving_after_the_alert_carries_the_saga_on_and_ends_the_wait() -> None:
    order = given(*backordered())
    order = and_given(order, deadline_reached(order, "stock", ALERT_AT, POLICY))

    reaction = when(order, stock_reserved())

    expect(reaction).events(OrderStockAllocated, InvoiceRequested).commands(IssueInvoice)
    after = and_given(order, reaction)
    assert (after.status, after.waiting_for_stock) == ("approved", False)
    expect(deadline_reached(after, "stock", ALERT_AT + timedelta(days=30), POLICY)).nothing()


def test_a_stock_wait_deadline_after_the_order_was_cancelled_changes_nothing() -> None:
    order = given(*compensating(*backordered(), steps=("release_stock",)))

    expect(deadline_reached(order, "stock", ALERT_AT + timedelta(days=30), POLICY)).nothing()


def test_a_channel_with_its_own_stock_wait_gets_its_alert_and_cancel_times() -> None:
    policy = replace(
        POLICY,
        stock_wait_alert_by_channel=(("slow-stock", timedelta(hours=1)),),
        stock_wait_cancel_by_channel=(("slow-stock", timedelta(hours=2)),),
    )
    order = given(*reserving(placed(channel="slow-stock")))

    order = and_given(order, react(order, stock_shortage(backordered=True), NOW, policy))
    overdue = expect(deadline_reached(order, "stock", NOW + timedelta(hours=1), policy)).event(
        OrderStockWaitOverdue
    )

    assert order.stock_alert_at == NOW + timedelta(hours=1)
    assert overdue.cancel_at == NOW + timedelta(hours=3)
