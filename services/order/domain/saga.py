"""The order fulfilment saga, orchestrated by the order service.

Read FULFILMENT_SAGA first: it is the saga as a table. Every function below is pure: it takes
the order (rebuilt from its events), what just happened and the time, and returns a Reaction:
the events to append to the order's stream and the commands to send to participants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from libs.domain import DomainError
from libs.events.base import Command, DomainEvent, Message
from libs.events.billing import (
    CreditCheckFailed,
    InvoiceIssued,
    InvoiceMove,
    InvoicePaid,
    InvoiceVoided,
    IssueInvoice,
    MoveInvoiceLines,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
    VoidInvoice,
)
from libs.events.inventory import (
    CreateShipments,
    MoveReservations,
    ReleaseStock,
    ReservationAdjustmentRefused,
    ReservationMove,
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
    OrderInvoiced,
    OrderNeedsAttention,
    OrderPartiallyShipped,
    OrderPaymentFailed,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderProductionPlanned,
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
from libs.events.production import ProductionOrderCreated
from libs.events.values import Shipping, SkuQuantity
from services.order.domain.order import ARRIVED, LEFT_THE_WAREHOUSE, Order, evolve
from services.order.domain.review import ReviewFacts, ReviewPolicy, review


@dataclass(frozen=True)
class Step:
    name: str
    participant: str
    request: str
    succeeds_on: tuple[str, ...]
    fails_on: tuple[str, ...]
    compensation: str | None
    # A request to a participant that must answer: unanswered by the policy's reply deadline
    # it is sent again, and after the last attempt the order is parked in needs_attention.
    reply_deadline: bool = False
    # The persisted deadline of a wait on the outside world at this step (a customer's
    # payment, stock to arrive): a kind of DEADLINES below. Nothing waits forever.
    deadline: str | None = None
    # Consecutive steps of one group are a parallel group: they start at once and the saga
    # goes on when every one of them has succeeded. When one fails, the others are undone by
    # their compensations (those already answered, and those still on their way). With the
    # policy's parallel_steps off they run one after another, in the table's order.
    group: str | None = None


# The saga as a table: forward steps in order, with the compensation that undoes each one.
# When a step fails, the compensations of every step already started run, in reverse order.
FULFILMENT_SAGA: tuple[Step, ...] = (
    Step(
        "review",
        "order",
        "automatic review rules",
        ("OrderApproved",),
        ("OrderHeld -> a person approves or rejects", "OrderRejected"),
        None,
    ),
    Step(
        "reserve_stock",
        "inventory",
        "ReserveStock",
        ("StockReserved",),
        (
            "StockShortage -> backorder, or reject by policy",
            "backordered past the stock wait alert -> needs attention, then cancel or keep waiting by policy",
        ),
        "release_stock",
        reply_deadline=True,
        deadline="stock",
        group="reserve_and_invoice",
    ),
    Step(
        "invoice",
        "billing",
        "IssueInvoice",
        ("InvoiceIssued",),
        (
            "CreditCheckFailed -> held for finance (approve: the credit is charged anyway; or reject),"
            " or reject by policy",
        ),
        "void_invoice",
        reply_deadline=True,
        group="reserve_and_invoice",
    ),
    Step(
        "payment",
        "billing",
        "wait for payment until the deadline (prepaid only)",
        ("InvoicePaid",),
        (
            "PaymentFailed -> counted; the customer may pay again until the deadline",
            "the last PaymentFailed the policy allows",
            "payment deadline passed",
        ),
        None,
        deadline="payment",
    ),
    # Releasing the stock also cancels the shipments that have not left (inventory does it in
    # the same transaction), so this step needs no compensation of its own; once a shipment
    # has left, the order can no longer be cancelled.
    Step(
        "ship",
        "inventory",
        "CreateShipments",
        ("ShipmentCreated", "then ShipmentDispatched / ShipmentCollected, ShipmentDelivered"),
        (),
        None,
        reply_deadline=True,
    ),
)


@dataclass(frozen=True)
class CompensationStep:
    participant: str
    command: type[Command]
    completed_by: type[DomainEvent]


COMPENSATIONS: dict[str, CompensationStep] = {
    "release_stock": CompensationStep("inventory", ReleaseStock, StockReleased),
    "void_invoice": CompensationStep("billing", VoidInvoice, InvoiceVoided),  # refunds payments
}


@dataclass(frozen=True)
class SagaPolicy:
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    payment_deadline: timedelta = timedelta(minutes=15)
    # A channel whose customers pay by another route (bank transfer, a marketplace's own
    # checkout) may need a different deadline than the default.
    payment_deadline_by_channel: tuple[tuple[str, timedelta], ...] = ()
    # Declined payments the customer may make before the order is cancelled (1: the first
    # decline cancels); a later successful attempt before then pays the order.
    payment_max_attempts: int = 3
    # An on-account order over its customer's credit limit: held for finance, or rejected.
    credit_exceeded: Literal["hold", "reject"] = "hold"
    on_account_terms: timedelta = timedelta(days=30)
    backorder_on_shortage: bool = True
    # Channels whose orders are rejected instead of backordered (a marketplace, say, that
    # must confirm or refuse at once), or backordered where the default is to reject.
    shortage_policy_by_channel: tuple[tuple[str, bool], ...] = ()
    # A backordered order that has waited this long needs a person's attention (None: never);
    # then it is cancelled this much later if the stock has still not come (None: it keeps
    # waiting, the person having been told).
    stock_wait_alert_after: timedelta | None = timedelta(days=3)
    stock_wait_cancel_after_alert: timedelta | None = timedelta(days=4)
    # Channels whose customers wait more or less (a marketplace's own promise, say).
    stock_wait_alert_by_channel: tuple[tuple[str, timedelta], ...] = ()
    stock_wait_cancel_by_channel: tuple[tuple[str, timedelta], ...] = ()
    compensation_retry_after: timedelta = timedelta(seconds=30)
    compensation_max_attempts: int = 5
    # Forward steps (reserve, invoice): a participant that has not answered by then is asked
    # again; after the last attempt the order needs a person (it never waits forever).
    step_reply_after: timedelta = timedelta(minutes=2)
    step_max_attempts: int = 3
    # Run the steps of a parallel group (FULFILMENT_SAGA's `group`) at once; off: one after
    # another, in the table's order (the saga as it was before groups).
    parallel_steps: bool = True

    def backorders(self, channel: str) -> bool:
        return dict(self.shortage_policy_by_channel).get(channel, self.backorder_on_shortage)

    def payment_deadline_for(self, channel: str) -> timedelta:
        return dict(self.payment_deadline_by_channel).get(channel, self.payment_deadline)

    def stock_wait_alert_for(self, channel: str) -> timedelta | None:
        return dict(self.stock_wait_alert_by_channel).get(channel, self.stock_wait_alert_after)

    def stock_wait_cancel_for(self, channel: str) -> timedelta | None:
        """None: after the alert the order keeps waiting (the policy for every channel)."""
        if self.stock_wait_cancel_after_alert is None:
            return None
        return dict(self.stock_wait_cancel_by_channel).get(channel, self.stock_wait_cancel_after_alert)


@dataclass(frozen=True)
class Outgoing:
    """A command for a participant. `dedupe_key` becomes its message id, so the same
    decision taken twice sends a message the participant's inbox recognises."""

    command: Command
    dedupe_key: str


@dataclass
class Reaction:
    events: list[DomainEvent] = field(default_factory=list)
    commands: list[Outgoing] = field(default_factory=list)

    def then(self, other: Reaction) -> Reaction:
        return Reaction(self.events + other.events, self.commands + other.commands)


class _Folding:
    """Appends events while keeping the order's state current, so later decisions in the same
    reaction see the effect of earlier ones."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self.reaction = Reaction()

    def emit(self, *events: DomainEvent) -> None:
        for event in events:
            self.reaction.events.append(event)
            self.order = evolve(self.order, event)

    def send(self, command: Command, dedupe_key: str) -> None:
        self.reaction.commands.append(Outgoing(command, dedupe_key))


# --- forward steps --------------------------------------------------------------------


def start(placed: OrderPlaced, facts: ReviewFacts, policy: SagaPolicy, now: datetime) -> Reaction:
    """Place the order and run the automatic review at once (no extra hop through Kafka)."""
    saga = _Folding(Order())
    saga.emit(placed)
    verdict = review(placed, facts, policy.review)
    if verdict.outcome == "reject":
        saga.emit(
            OrderRejected(order_id=placed.order_id, reason="; ".join(verdict.reasons), rejected_by="rules")
        )
    elif verdict.outcome == "hold":
        saga.emit(OrderHeld(order_id=placed.order_id, reasons=verdict.reasons))
    else:
        saga.emit(OrderApproved(order_id=placed.order_id, approved_by="rules"))
        _advance(saga, now, policy)
    return saga.reaction


def approve(order: Order, actor: str, policy: SagaPolicy, now: datetime) -> Reaction:
    """A person approves a held order: the saga goes on from the step it was held at
    (ON_APPROVAL). Who may approve a credit hold is the caller's to check (held_for_credit)."""
    if order.status != "on_hold":
        raise DomainError(
            "not_on_hold", f"order {order.order_id} is {order.status}; only held orders can be approved"
        )
    saga = _Folding(order)
    # A credit hold decided while the stock is still backordered: the order waits on for it.
    saga.emit(
        OrderApproved(order_id=order.order_id, approved_by=actor, waiting_for_stock=order.waiting_for_stock)
    )
    ON_APPROVAL[order.held_at or "review"](saga, order, actor, now, policy)
    return saga.reaction


def reject(order: Order, reason: str, actor: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """A person rejects a held order: the steps already started are undone (none for a hold
    at review; the stock reserved for a credit hold), then the order is rejected."""
    if order.status != "on_hold":
        raise DomainError(
            "not_on_hold", f"order {order.order_id} is {order.status}; only held orders can be rejected"
        )
    if not steps_to_undo(order, failed_step=order.held_at):
        return Reaction([OrderRejected(order_id=order.order_id, reason=reason, rejected_by=actor)])
    return _compensate(order, reason, "rejected", actor, now, policy, failed_step=order.held_at)


def cancel(order: Order, reason: str, actor: str, now: datetime, policy: SagaPolicy) -> Reaction:
    if order.is_closed or order.stage == "compensating":
        state = "being cancelled" if order.stage == "compensating" else order.status
        raise DomainError("not_cancellable", f"order {order.order_id} is already {state}")
    if order.change is not None and order.change.kind != "amend":
        # Its units and money are moving to another order: cancel that one once it is done.
        raise DomainError(
            "change_in_progress",
            f"order {order.order_id} is being {order.change.kind}ed ({order.change.change_id}):"
            " try again once it is done",
        )
    if order.dispatched_any:
        gone = sorted(i for i, s in order.shipments.items() if s.status in LEFT_THE_WAREHOUSE)
        raise DomainError(
            "not_cancellable",
            f"order {order.order_id} is {order.status}: shipment(s) {', '.join(gone)} left the"
            " warehouse, so it can no longer be cancelled",
        )
    return _compensate(order, f"cancelled: {reason}", "cancelled", actor, now, policy)


def _requested_lines(placed: OrderPlaced) -> tuple[SkuQuantity, ...]:
    wanted: dict[str, int] = {}
    for line in placed.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in wanted.items())


def _placed(order: Order) -> OrderPlaced:
    """The order's placement, which every step after `start` has. Raised rather than asserted
    so that `python -O` keeps the check."""
    if order.placed is None:
        raise AssertionError(f"order {order.order_id!r} has no placement")
    return order.placed


def _reserve_request(order: Order, now: datetime, policy: SagaPolicy) -> Outgoing:
    placed = _placed(order)
    if placed.origin is not None:
        # Made by a split or merge (services/order/domain/desk.py): its stock is what the
        # source orders held, moved as it is (reserved, or its place in a backorder queue).
        move = MoveReservations(
            order_id=placed.order_id,
            move_id=placed.origin_id or placed.order_id,
            sources=tuple(
                ReservationMove(from_order_id=m.order_id, lines=m.lines) for m in placed.moved_from
            ),
            region=placed.customer.region,
            backorder=policy.backorders(placed.channel),
        )
        return Outgoing(move, f"{placed.order_id}:reserve")
    command = ReserveStock(
        order_id=placed.order_id,
        lines=_requested_lines(placed),
        region=placed.customer.region,
        backorder=policy.backorders(placed.channel),
    )
    return Outgoing(command, f"{placed.order_id}:reserve")


def invoice_terms(placed: OrderPlaced, policy: SagaPolicy) -> timedelta:
    """How long after it is asked for an invoice falls due: the payment deadline (prepaid) or
    the on-account terms."""
    if placed.payment_terms == "prepaid":
        return policy.payment_deadline_for(placed.channel)
    return policy.on_account_terms


def invoice_pricing(
    placed: OrderPlaced, shipping: Shipping, weight_kg: Decimal | None, now: datetime, policy: SagaPolicy
) -> dict[str, Any]:
    """The fields of every invoice command that billing prices and dates the invoice by
    (IssueInvoice, MoveInvoiceLines, AdjustInvoice): the shipping as it stands, the order's
    channel and region, and the due date its payment terms give."""
    address = shipping.address
    return {
        "shipping_method": shipping.method,
        "due_at": now + invoice_terms(placed, policy),
        "destination_country": address.country if address is not None else None,
        "destination_region": placed.customer.region,
        "weight_kg": weight_kg,
        "channel": placed.channel,
    }


def _invoice_request(order: Order, now: datetime, policy: SagaPolicy) -> Outgoing:
    placed = _placed(order)
    pricing = invoice_pricing(placed, placed.shipping, placed.weight_kg, now, policy)
    if placed.origin is not None:
        # Made by a split or merge: its invoice lines come from the source orders' invoices,
        # with the money paid for them.
        move = MoveInvoiceLines(
            order_id=placed.order_id,
            move_id=placed.origin_id or placed.order_id,
            kind=placed.origin,
            sources=tuple(InvoiceMove(from_order_id=m.order_id, lines=m.lines) for m in placed.moved_from),
            customer_id=placed.customer_id,
            currency=placed.currency,
            payment_terms=placed.payment_terms,
            lines=placed.lines,
            **pricing,
        )
        return Outgoing(move, f"{placed.order_id}:invoice")
    command = IssueInvoice(
        order_id=placed.order_id,
        customer_id=placed.customer_id,
        currency=placed.currency,
        lines=placed.lines,
        payment_terms=placed.payment_terms,
        credit_limit_overridden_by=order.credit_override_by,
        **pricing,
    )
    # The override is another decision than the first request: another message id, or
    # billing's inbox would take it for the first one delivered again.
    override = ":credit-override" if order.credit_override_by else ""
    return Outgoing(command, f"{placed.order_id}:invoice{override}")


def _shipments_request(order: Order, now: datetime, policy: SagaPolicy) -> Outgoing:
    placed = _placed(order)
    command = CreateShipments(order_id=placed.order_id, shipping=placed.shipping)
    # After a change (desk.py) the shipments are asked for again: another message.
    again = f":{order.changes_made}" if order.changes_made else ""
    return Outgoing(command, f"{placed.order_id}:ship{again}")


# The request each forward step with a reply deadline sends (and sends again, unanswered).
FORWARD_REQUESTS = {
    "reserve_stock": _reserve_request,
    "invoice": _invoice_request,
    "ship": _shipments_request,
}


def _request_stock(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    placed = _placed(saga.order)
    saga.emit(
        StockReservationRequested(
            order_id=placed.order_id,
            lines=_requested_lines(placed),
            reply_by=now + policy.step_reply_after,
        )
    )
    request = _reserve_request(saga.order, now, policy)
    saga.send(request.command, request.dedupe_key)


def _request_invoice(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    placed = _placed(saga.order)
    saga.emit(InvoiceRequested(order_id=placed.order_id, reply_by=now + policy.step_reply_after))
    request = _invoice_request(saga.order, now, policy)
    saga.send(request.command, request.dedupe_key)


def _override_credit(saga: _Folding, held: Order, actor: str, now: datetime, policy: SagaPolicy) -> None:
    """Finance approves an order over its customer's credit limit: an explicit override, and
    billing asked again to invoice it, charging the credit anyway."""
    saga.emit(
        OrderCreditLimitOverridden(
            order_id=held.order_id, approved_by=actor, hold_reason="; ".join(held.hold_reasons)
        )
    )
    _request_invoice(saga, now, policy)


def _continue_after_review(
    saga: _Folding, held: Order, actor: str, now: datetime, policy: SagaPolicy
) -> None:
    _advance(saga, now, policy)


# What approving a held order does, by the step it was held at.
ON_APPROVAL: dict[str, Callable[[_Folding, Order, str, datetime, SagaPolicy], None]] = {
    "review": _continue_after_review,
    "invoice": _override_credit,
}


def _request_shipments(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    saga.emit(ShipmentsRequested(order_id=saga.order.order_id, reply_by=now + policy.step_reply_after))
    request = _shipments_request(saga.order, now, policy)
    saga.send(request.command, request.dedupe_key)


def _confirm(saga: _Folding, invoice_id: str, total: Decimal, now: datetime, policy: SagaPolicy) -> None:
    """Confirmed: the order is reserved and paid (or on account); ship it."""
    saga.emit(OrderConfirmed(order_id=saga.order.order_id, invoice_id=invoice_id, total=total))
    _request_shipments(saga, now, policy)


@dataclass(frozen=True)
class IssuedInvoice:
    invoice_id: str
    total: Decimal
    due_at: datetime | None


def _start_payment(
    saga: _Folding, now: datetime, policy: SagaPolicy, invoice: IssuedInvoice | None = None
) -> None:
    """Reserved and invoiced: a prepaid order waits for its payment until the invoice's due
    date (the payment deadline counted from the request). An invoice that came before the
    stock (kept by OrderInvoiced) gets the whole deadline from now, when both are done, as the
    customer is only now asked to pay. An order paid in full while its stock was being
    reserved, or on account, is confirmed."""
    order = saga.order
    placed = _placed(order)
    deadline = now + policy.payment_deadline_for(placed.channel)
    if invoice is None:
        if order.invoice_id is None:
            raise AssertionError(f"order {order.order_id!r} starts its payment without an invoice")
        due_at = order.invoice_due_at
        invoice = IssuedInvoice(
            order.invoice_id, order.amount_due, max(deadline, due_at) if due_at else deadline
        )
    paid_early = bool(order.payment_references) and order.amount_paid >= invoice.total
    if placed.payment_terms != "prepaid" or paid_early:
        _confirm(saga, invoice.invoice_id, invoice.total, now, policy)
        return
    saga.emit(
        OrderAwaitingPayment(
            order_id=order.order_id,
            invoice_id=invoice.invoice_id,
            amount_due=invoice.total,
            payment_deadline=invoice.due_at or deadline,
        )
    )


@dataclass(frozen=True)
class StepRun:
    """How the interpreter reads a forward step off the order, and starts it."""

    started: Callable[[Order], bool]
    succeeded: Callable[[Order], bool]
    start: Callable[[_Folding, datetime, SagaPolicy], None]


_PAST_PAYMENT = frozenset({"done", "fulfilling"})

STEP_RUNS: dict[str, StepRun] = {
    "reserve_stock": StepRun(lambda o: o.stock_requested, lambda o: o.stock_allocated, _request_stock),
    "invoice": StepRun(lambda o: o.invoice_requested, lambda o: o.invoiced, _request_invoice),
    "payment": StepRun(
        lambda o: o.stage == "awaiting_payment" or o.stage in _PAST_PAYMENT,
        lambda o: o.stage in _PAST_PAYMENT,
        _start_payment,
    ),
}


def _groups(table: tuple[Step, ...]) -> tuple[tuple[Step, ...], ...]:
    """The table's steps as the interpreter runs them: consecutive steps of one group
    together, every other step alone."""
    groups: list[list[Step]] = []
    for step in table:
        if groups and step.group is not None and groups[-1][-1].group == step.group:
            groups[-1].append(step)
        else:
            groups.append([step])
    return tuple(tuple(group) for group in groups)


# The forward steps the interpreter starts after review, group by group. Review (`start`,
# `approve`) and shipping (on confirmation) are started by what precedes them.
FORWARD_GROUPS = tuple(g for g in _groups(FULFILMENT_SAGA) if all(s.name in STEP_RUNS for s in g))


def _advance(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    """Go on as the table says: in the first group with a step that has not succeeded, start
    the steps not started yet (all at once, or the first only with parallel_steps off), and
    wait for the rest. A step parked for a person (its participant never answered) is asked
    once more when another step's answer carries the order on."""
    for group in FORWARD_GROUPS:
        open_steps = [s for s in group if not STEP_RUNS[s.name].succeeded(saga.order)]
        if not open_steps:
            continue
        if not policy.parallel_steps or (_made_by_a_move(saga.order) and not saga.order.waiting_for_stock):
            open_steps = open_steps[:1]
        for step in open_steps:
            run = STEP_RUNS[step.name]
            if not run.started(saga.order):
                run.start(saga, now, policy)
            elif saga.order.parked_step == step.name and saga.order.status != "needs_attention":
                _resend(saga, step, now, policy)
        return


def _made_by_a_move(order: Order) -> bool:
    """An order a split or merge made takes its stock and its invoice lines from the source
    orders: the invoice lines only once inventory has answered the stock move (reserved, or
    waiting in the queue), so that inventory refusing the units (a source shipped them
    meanwhile) leaves no invoice line and no money moved to undo."""
    return order.placed is not None and order.placed.origin is not None


def _open_beside(order: Order, step_name: str) -> list[str]:
    """The other steps of `step_name`'s group that have not succeeded yet."""
    group = next(g for g in FORWARD_GROUPS if any(s.name == step_name for s in g))
    return [s.name for s in group if s.name != step_name and not STEP_RUNS[s.name].succeeded(order)]


def awaiting_answer(order: Order) -> frozenset[str]:
    """The forward steps whose participant the order waits to hear from (several in a
    parallel group). A backordered reservation waits for stock to arrive, and an invoice held
    over the credit limit for a person, not for an answer: neither is a step to chase."""
    if order.stage in ("compensating", "ended"):
        return frozenset()
    waiting = set()
    if order.stage == "reserving" and not order.waiting_for_stock:
        waiting.add("reserve_stock")
    if (
        order.invoice_requested
        and not order.invoiced
        and order.stage in ("reserving", "invoicing")
        and not order.held_for_credit
    ):
        waiting.add("invoice")
    if order.stage == "fulfilling" and not order.live_shipments and order.change is None:
        waiting.add("ship")
    return frozenset(waiting)


def _takes_payment(order: Order) -> bool:
    """A prepaid order takes payments on its invoice once it is issued: awaiting payment, or,
    invoiced beside a reservation still open, early."""
    if order.stage == "awaiting_payment":
        return True
    prepaid = order.placed is not None and order.placed.payment_terms == "prepaid"
    return prepaid and order.invoiced and order.stage == "reserving"


# --- replies from participants ----------------------------------------------------------


def react(  # noqa: C901 - one case per reply
    order: Order, message: Message, now: datetime, policy: SagaPolicy, reply_id: str = ""
) -> Reaction:
    """Move the saga on after a participant's event. A reply not expected where the order
    stands (late, or repeated) changes nothing but the timeline: it is recorded as ignored,
    never dropped without a trace (see `_expected_without_effect`)."""
    if not order.exists:
        return Reaction()
    reaction = _react(order, message, now, policy)
    if reaction.events or _expected_without_effect(order, message):
        return reaction
    ignored = OrderReplyIgnored(
        order_id=order.order_id,
        reply_type=message.message_type,
        reply_id=reply_id,
        stage=order.stage,
        status=order.status,
    )
    return Reaction([ignored], reaction.commands)


# Stages after the reservation succeeded: stock can still be revoked there (an adjustment).
PAST_RESERVATION = frozenset({"invoicing", "awaiting_payment", "done", "fulfilling"})


def _expected_without_effect(order: Order, message: Message) -> bool:
    """Replies that arrive in the normal course and need nothing from the order: the
    payment of an on-account order, confirmed when its invoice was issued (its payments
    are followed through PaymentReceived)."""
    placed = order.placed
    on_account = placed is not None and placed.payment_terms == "on_account"
    if not isinstance(message, InvoicePaid):
        return False
    # Paid before its stock was reserved (parallel steps): confirmed when the stock is.
    paid_early = order.invoiced and order.stage == "reserving"
    return paid_early or (order.stage in ("done", "fulfilling", "ended") and on_account)


_SHIPMENT_MILESTONES: dict[type[Message], str] = {
    ShipmentCreated: "created",
    ShipmentDispatched: "dispatched",
    ShipmentCollected: "collected",
    ShipmentDelivered: "delivered",
    ShipmentCancelled: "cancelled",
}
# A milestone never goes back: a late "created" after "dispatched" changes nothing.
_MILESTONE_ORDER = {"created": 0, "dispatched": 1, "collected": 2, "delivered": 2, "cancelled": 3}


def _record_shipment(saga: _Folding, message: Message) -> bool:
    """Record a shipment milestone on the order; False if it adds nothing (late, repeated)."""
    milestone = _SHIPMENT_MILESTONES[type(message)]
    shipment_id: str = message.shipment_id  # type: ignore[attr-defined]
    known = saga.order.shipments.get(shipment_id)
    if known is not None and _MILESTONE_ORDER[known.status] >= _MILESTONE_ORDER[milestone]:
        return False
    warehouse = getattr(message, "warehouse", None) or (known.warehouse if known else "")
    saga.emit(
        OrderShipmentUpdated(
            order_id=saga.order.order_id,
            shipment_id=shipment_id,
            warehouse=warehouse,
            status=milestone,
            carrier=getattr(message, "carrier", None),
            tracking_number=getattr(message, "tracking_number", None),
        )
    )
    return True


def _progress(saga: _Folding) -> None:
    """The order's status from its shipments and payments: partially shipped while only some
    shipments have left, shipped when all have, delivered when all arrived, completed when
    delivered and paid in full."""
    order = saga.order
    live = order.live_shipments
    if order.stock_revoked or order.change is not None or not live or not order.all_shipments_created:
        # Revoked or changing: the shipments follow the allocation inventory is about to answer.
        return
    left = sum(1 for s in live.values() if s.status in LEFT_THE_WAREHOUSE)
    arrived = all(s.status in ARRIVED for s in live.values())
    if left == len(live) and order.status in ("confirmed", "partially_shipped"):
        saga.emit(OrderShipped(order_id=order.order_id))
    elif 0 < left < len(live) and order.status == "confirmed":
        saga.emit(OrderPartiallyShipped(order_id=order.order_id, dispatched=left, shipments=len(live)))
    if arrived and saga.order.status == "shipped":
        saga.emit(OrderDelivered(order_id=order.order_id))
    if saga.order.status == "delivered" and saga.order.paid_in_full:
        saga.emit(
            OrderCompleted(order_id=order.order_id, total=order.amount_due, amount_paid=order.amount_paid)
        )


def _react(order: Order, message: Message, now: datetime, policy: SagaPolicy) -> Reaction:  # noqa: C901
    saga = _Folding(order)
    order_id = order.order_id
    match message:
        case StockReserved() if order.stage == "reserving":
            saga.emit(OrderStockAllocated(order_id=order_id, allocations=message.allocations))
            _advance(saga, now, policy)
        case StockShortage() if order.stage == "reserving" and not order.waiting_for_stock:
            if message.backordered:
                _await_stock(saga, message, now, policy)
                if _made_by_a_move(order):
                    _advance(saga, now, policy)  # its invoice lines move now (see _made_by_a_move)
            else:
                missing = ", ".join(f"{m.sku} (short {m.quantity})" for m in message.missing)
                reason = f"out of stock: {missing}"
                if steps_to_undo(order, failed_step="reserve_stock"):  # the invoice, beside it
                    return _compensate(
                        order, reason, "rejected", "rules", now, policy, failed_step="reserve_stock"
                    )
                saga.emit(OrderRejected(order_id=order_id, reason=reason, rejected_by="rules"))
        case ReservationAdjustmentRefused() if (
            order.stage == "reserving"
            and _made_by_a_move(order)
            and message.amendment_id == (_placed(order).origin_id or order_id)
        ):
            # The units could not be moved (a source no longer holds them). Nothing moved, in
            # inventory or billing (the invoice step waits for this one), and each source was
            # told too, so its change is refused and it goes on as it was.
            missing = ", ".join(f"{m.quantity} x {m.sku}" for m in message.missing)
            reason = f"the units could not be moved to this order: {message.reason}" + (
                f" ({missing})" if missing else ""
            )
            saga.emit(OrderRejected(order_id=order_id, reason=reason, rejected_by="rules"))
        case ReservationRevoked() if order.stage in PAST_RESERVATION:
            saga.emit(
                OrderReservationRevoked(
                    order_id=order_id,
                    sku=message.sku,
                    warehouse=message.warehouse,
                    quantity=message.quantity,
                    reason=message.reason,
                )
            )
        case StockReserved() if order.stage in PAST_RESERVATION and order.stock_revoked:
            # Reserved again after a revocation: the new allocation, the saga stays where it is.
            saga.emit(OrderStockAllocated(order_id=order_id, allocations=message.allocations))
            if saga.order.stage == "fulfilling":
                _progress(saga)  # its shipments' news may have come first
        case StockShortage() if (
            order.stage in PAST_RESERVATION and order.stock_revoked and (not order.waiting_for_stock)
        ):
            missing = ", ".join(f"{m.sku} (short {m.quantity})" for m in message.missing)
            if not message.backordered:
                reason = f"out of stock after a stock adjustment: {missing}"
                return _compensate(order, reason, "cancelled", "rules", now, policy)
            _await_stock(saga, message, now, policy)
        case (
            ShipmentCreated()
            | ShipmentDispatched()
            | ShipmentCollected()
            | ShipmentDelivered()
            | (ShipmentCancelled())
        ) if order.stage == "fulfilling":
            if _record_shipment(saga, message):
                _progress(saga)
        case InvoiceIssued() if _awaits_invoice(order):
            invoice = IssuedInvoice(message.invoice_id, message.total, message.due_at)
            if not _open_beside(order, "invoice"):
                _start_payment(saga, now, policy, invoice)
            else:  # its stock is still being reserved: kept until then
                saga.emit(
                    OrderInvoiced(
                        order_id=order_id,
                        invoice_id=invoice.invoice_id,
                        amount_due=invoice.total,
                        due_at=invoice.due_at,
                    )
                )
                _advance(saga, now, policy)
        case CreditCheckFailed() if _awaits_invoice(order) and order.status != "on_hold":
            reason = (
                f"credit limit exceeded: {message.amount:.2f} on top of an open balance of"
                f" {message.open_balance:.2f} is over the limit of {message.credit_limit:.2f}"
            )
            if policy.credit_exceeded == "hold":
                saga.emit(OrderHeld(order_id=order_id, reasons=(reason,)))  # for finance to decide
            else:
                return _compensate(order, reason, "rejected", "rules", now, policy, failed_step="invoice")
        case PaymentReceived() if message.reference not in order.payment_references:
            saga.emit(
                OrderPaymentRecorded(
                    order_id=order_id,
                    amount=message.amount,
                    amount_paid=message.amount_paid,
                    reference=message.reference,
                )
            )
            if saga.order.stage == "fulfilling":
                _progress(saga)  # paid after delivery: completed
        # While a change is under way what is owed may change: desk.py confirms once it is done.
        case InvoicePaid() if order.stage == "awaiting_payment" and order.change is None:
            if order.invoice_id is None:
                raise AssertionError(f"order {order_id!r} awaits payment without an invoice")
            _confirm(saga, order.invoice_id, order.amount_due, now, policy)
        case PaymentFailed() if _takes_payment(order) and (
            message.reference not in order.failed_payment_references
        ):
            attempt = order.payment_failures + 1
            saga.emit(
                OrderPaymentFailed(
                    order_id=order_id,
                    reference=message.reference,
                    attempt=attempt,
                    max_attempts=policy.payment_max_attempts,
                )
            )
            if attempt >= policy.payment_max_attempts:
                reason = f"payment {message.reference} failed" + (
                    f", the last of {attempt} attempts allowed" if attempt > 1 else ""
                )
                return saga.reaction.then(_compensate(saga.order, reason, "cancelled", "rules", now, policy))
        case RefundIssued() if message.refund_id not in order.refund_ids:
            saga.emit(OrderRefunded(order_id=order_id, amount=message.amount, refund_id=message.refund_id))
        case StockReleased() | InvoiceVoided():
            _complete_step(saga, message)
    return saga.reaction


def _awaits_invoice(order: Order) -> bool:
    """Billing's answer is expected: requested, not yet issued, and the saga not past it."""
    return order.invoice_requested and not order.invoiced and order.stage in ("reserving", "invoicing")


def _await_stock(saga: _Folding, shortage: StockShortage, now: datetime, policy: SagaPolicy) -> None:
    """Backordered: inventory reserves the stock when it arrives; the stock deadline starts."""
    alert_after = policy.stock_wait_alert_for(_placed(saga.order).channel)
    saga.emit(
        OrderAwaitingStock(
            order_id=saga.order.order_id,
            missing=shortage.missing,
            alert_at=now + alert_after if alert_after is not None else None,
        )
    )


# --- deadlines ------------------------------------------------------------------------
# A persisted deadline is "<kind>" or "<kind>:<step>"; DEADLINES says what each kind does
# when it is due. Each handler first checks the order still waits for it: a deadline that
# fires late, or after its wait ended, changes nothing.


def deadline_reached(order: Order, kind: str, now: datetime, policy: SagaPolicy) -> Reaction:
    name, _, step = kind.partition(":")
    handler = DEADLINES.get(name)
    if order.change is not None and order.change.kind != "amend":
        # Its units and money are moving to another order (desk.py): a cancellation now would
        # race the move. Once it is done the order's waits start again (new deadlines).
        return Reaction()
    return handler(order, step, now, policy) if handler is not None else Reaction()


def _payment_deadline(order: Order, _: str, now: datetime, policy: SagaPolicy) -> Reaction:
    if order.stage == "awaiting_payment" and order.payment_deadline and now >= order.payment_deadline:
        declined = f" after {order.payment_failures} declined attempt(s)" if order.payment_failures else ""
        return _compensate(order, f"payment deadline passed{declined}", "cancelled", "rules", now, policy)
    return Reaction()


def _missing(order: Order) -> str:
    return ", ".join(f"{m.sku} (short {m.quantity})" for m in order.stock_missing)


def _stock_deadline(order: Order, _: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """A backorder that waited past the alert time needs a person's attention; past the
    cancel time (if the policy sets one) it is cancelled, its stock and invoice undone."""
    if not order.waiting_for_stock or order.stage in ("compensating", "ended"):
        return Reaction()
    if order.stock_wait_overdue:
        if order.stock_cancel_at is not None and now >= order.stock_cancel_at:
            reason = f"no stock by the stock wait deadline: {_missing(order)}"
            return _compensate(order, reason, "cancelled", "rules", now, policy)
        return Reaction()
    if order.stock_alert_at is None or now < order.stock_alert_at:
        return Reaction()
    after = policy.stock_wait_cancel_for(_placed(order).channel)
    cancel_at = now + after if after is not None else None
    then = f"cancelled at {cancel_at:%Y-%m-%d %H:%M} UTC" if cancel_at else "it keeps waiting (policy)"
    saga = _Folding(order)
    saga.emit(
        OrderStockWaitOverdue(
            order_id=order.order_id,
            missing=order.stock_missing,
            reason=f"waiting for stock past the alert time: {_missing(order)}; unless it comes, {then}",
            cancel_at=cancel_at,
        )
    )
    return saga.reaction


def _chase_reply(order: Order, step_name: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """The participant of a forward step has not answered: ask again, or, after the last
    attempt, park the order for a person (who may cancel it: the compensations then undo
    whatever the participant did or did not do)."""
    if step_name not in awaiting_answer(order) or order.status == "needs_attention":
        return Reaction()
    step = next(s for s in FULFILMENT_SAGA if s.name == step_name)
    attempts = order.step_attempts.get(step_name, 1)
    saga = _Folding(order)
    if attempts >= policy.step_max_attempts:
        saga.emit(
            OrderNeedsAttention(
                order_id=order.order_id,
                step=step_name,
                reason=f"{step.participant} did not answer {step.request} after {attempts} attempts",
            )
        )
        return saga.reaction
    _resend(saga, step, now, policy)
    return saga.reaction


def _resend(saga: _Folding, step: Step, now: datetime, policy: SagaPolicy) -> None:
    attempts = saga.order.step_attempts.get(step.name, 1)
    saga.emit(
        OrderStepResent(
            order_id=saga.order.order_id,
            step=step.name,
            attempt=attempts + 1,
            reply_by=now + policy.step_reply_after,
        )
    )
    request = FORWARD_REQUESTS[step.name](saga.order, now, policy)
    saga.send(request.command, request.dedupe_key)


# --- compensation ---------------------------------------------------------------------


def steps_to_undo(order: Order, failed_step: str | None = None) -> list[str]:
    """Compensations of the steps already started, last step first. A step that itself
    failed (its participant refused) left nothing behind to undo."""
    return [
        step.compensation
        for step in reversed(FULFILMENT_SAGA)
        if step.compensation
        and step.name in STEP_RUNS
        and STEP_RUNS[step.name].started(order)
        and step.name != failed_step
    ]


def _compensate(
    order: Order,
    reason: str,
    final_status: Literal["cancelled", "rejected"],
    actor: str,
    now: datetime,
    policy: SagaPolicy,
    failed_step: str | None = None,
) -> Reaction:
    saga = _Folding(order)
    steps = steps_to_undo(order, failed_step)
    saga.emit(
        OrderCompensationStarted(
            order_id=order.order_id,
            reason=reason,
            steps=tuple(steps),
            final_status=final_status,
            requested_by=actor,
        )
    )
    if not steps:
        _finish(saga)
        return saga.reaction
    for step in steps:
        _request_compensation(saga, step, attempt=1, now=now, policy=policy, reason=reason)
    return saga.reaction


def _request_compensation(
    saga: _Folding, step: str, attempt: int, now: datetime, policy: SagaPolicy, reason: str
) -> None:
    order_id = saga.order.order_id
    saga.emit(
        CompensationStepRequested(
            order_id=order_id, step=step, attempt=attempt, retry_at=now + policy.compensation_retry_after
        )
    )
    command = COMPENSATIONS[step].command(order_id=order_id, reason=reason)  # type: ignore[call-arg]
    saga.send(command, f"{order_id}:{step}:{attempt}")


def _retry_compensation(order: Order, step: str, now: datetime, policy: SagaPolicy) -> Reaction:
    compensation = order.compensation
    if order.stage != "compensating" or compensation is None or step not in compensation.pending:
        return Reaction()
    attempts = compensation.attempts.get(step, 1)
    saga = _Folding(order)
    if attempts >= policy.compensation_max_attempts:
        if order.status != "needs_attention":
            saga.emit(
                OrderNeedsAttention(
                    order_id=order.order_id,
                    step=step,
                    reason=(
                        f"{step} got no answer from {COMPENSATIONS[step].participant}"
                        f" after {attempts} attempts"
                    ),
                )
            )
        return saga.reaction
    _request_compensation(saga, step, attempts + 1, now, policy, compensation.reason)
    return saga.reaction


def _complete_step(saga: _Folding, reply: Message) -> None:
    compensation = saga.order.compensation
    if saga.order.stage != "compensating" or compensation is None:
        return
    step = next((name for name, s in COMPENSATIONS.items() if isinstance(reply, s.completed_by)), None)
    if step is None or step not in compensation.pending:
        return
    saga.emit(CompensationStepCompleted(order_id=saga.order.order_id, step=step))
    if saga.order.compensation and not saga.order.compensation.pending:
        _finish(saga)


def _finish(saga: _Folding) -> None:
    compensation = saga.order.compensation
    order_id = saga.order.order_id
    if compensation is None:
        raise AssertionError(f"order {order_id!r} finishes a compensation it never started")
    if compensation.final_status == "rejected":
        saga.emit(
            OrderRejected(order_id=order_id, reason=compensation.reason, rejected_by=compensation.actor)
        )
    else:
        saga.emit(
            OrderCancelled(order_id=order_id, reason=compensation.reason, cancelled_by=compensation.actor)
        )


DEADLINES: dict[str, Callable[[Order, str, datetime, SagaPolicy], Reaction]] = {
    "payment": _payment_deadline,
    "stock": _stock_deadline,
    "reply": _chase_reply,  # reply:<step>: a forward step's participant has not answered
    "compensation": _retry_compensation,  # compensation:<step>: nor has a compensation's
}


# --- production (make-to-order) -------------------------------------------------------


def production_planned(order: Order, created: ProductionOrderCreated) -> Reaction:
    """Production makes what the order waits for: the timeline names the production order.
    Nothing else changes: the saga waits for its backorder to be filled, as for any stock."""
    if (
        not order.exists
        or order.stage in ("compensating", "ended")
        or created.sales_order_id != order.order_id
    ):
        return Reaction()
    planned = OrderProductionPlanned(
        order_id=order.order_id,
        production_order_id=created.production_order_id,
        sku=created.sku,
        quantity=created.quantity,
        parent_production_order_id=created.parent_production_order_id,
    )
    return Reaction([planned])
