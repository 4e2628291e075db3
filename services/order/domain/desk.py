"""The order desk's changes to an order after it was placed: amend, split and merge.

An order keeps its id, its payments and its history through every change. A change is
requested (OrderChangeRequested), done by the participants as a difference (inventory
reserves or releases only what changed, billing issues a supplementary invoice or a credit
note and refunds an overpayment) and only then applied (OrderAmended, or OrderMerged for an
order merged into another). One change at a time per order; until it is applied the order is
as it was. docs/order-desk.md tells the rules; the table below is the change's saga.

- amend: inventory (AdjustReservation), then billing (AdjustInvoice), one after the other, so
  an invoice never changes for stock that could not be had. A change that crosses a review
  rule (the amount limit, a price below the list price, an incomplete address) waits for a
  person first; extra units that are not in stock refuse it; billing refusing the extra amount
  (credit limit) holds it for finance, who override it or have the reservation put back.
- split: some units move to a new order of the same customer, as they are held (reserved or
  queued for stock) and with the money paid for them. The new order asks inventory
  (MoveReservations) and billing (MoveInvoiceLines) for them as its own reserve and invoice
  steps, so it follows the ordinary saga from there; the source answers come to this order.
- merge: every unit of several orders moves to a new order the same way; they end `merged`.

Pure, like the saga: the order (rebuilt from its events), the request and the time in; the
events to record and the commands to send out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from libs.domain import DomainError, InvalidRequest
from libs.events.base import Message
from libs.events.billing import AdjustInvoice, InvoiceAdjusted, InvoiceAdjustmentRefused
from libs.events.inventory import AdjustReservation, ReservationAdjusted, ReservationAdjustmentRefused
from libs.events.order import (
    MovedLines,
    OrderAmended,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderChangeApproved,
    OrderChangeHeld,
    OrderChangeRefused,
    OrderChangeRequested,
    OrderChangeResent,
    OrderChangeStepAnswered,
    OrderChangeUndoing,
    OrderHeld,
    OrderMerged,
    OrderNeedsAttention,
    OrderPlaced,
    OrderRejected,
    OrderStockAllocated,
)
from libs.events.values import OrderLine, Shipping, SkuQuantity
from services.order.domain.order import LEFT_THE_WAREHOUSE, Order, PendingChange
from services.order.domain.review import ReviewFacts, review
from services.order.domain.saga import (
    Reaction,
    SagaPolicy,
    _advance,
    _confirm,
    _Folding,
    _placed,
    _request_shipments,
    _requested_lines,
    invoice_pricing,
)

# The stages an order can be changed in: held at review (nothing asked of anyone yet), or
# with its reservation and invoice answered (waiting for payment, confirmed, shipping).
_SETTLED = frozenset({"awaiting_payment", "done", "fulfilling"})


def changeable(order: Order, what: str = "amended") -> None:
    """Refuse (409, saying why) a change the order's state does not allow."""
    oid = order.order_id
    if order.is_closed or order.stage in ("compensating", "ended"):
        state = "being cancelled" if order.stage == "compensating" else order.status
        raise DomainError("not_changeable", f"order {oid} is {state}: it can no longer be {what}")
    if order.change is not None:
        raise DomainError(
            "change_in_progress",
            f"order {oid} has a change under way ({order.change.kind} {order.change.change_id}):"
            " one at a time, try again once it is done",
        )
    if order.dispatched_any:
        gone = sorted(i for i, s in order.shipments.items() if s.status in LEFT_THE_WAREHOUSE)
        raise DomainError(
            "already_dispatched",
            f"order {oid}: shipment(s) {', '.join(gone)} left the warehouse, so it can no longer be {what}",
        )
    if order.status == "needs_attention" or order.stock_revoked or order.held_for_credit:
        raise DomainError(
            "not_changeable",
            f"order {oid} is {order.status}"
            + (" (its stock is being reserved again)" if order.stock_revoked else "")
            + ": decide that first",
        )
    waiting_invoice_settled = not order.invoice_requested or order.invoiced
    if order.stage == "review" or order.stage in _SETTLED:
        return
    if order.waiting_for_stock and waiting_invoice_settled:
        return
    raise DomainError(
        "order_busy",
        f"order {oid} is {order.status}: its stock or invoice is being asked for right now;"
        " try again in a moment",
    )


def _line_key(lines: Sequence[OrderLine]) -> list[tuple[str, int, Decimal]]:
    return sorted((line.sku, line.quantity, line.unit_price) for line in lines)


def _subtotal(lines: Sequence[OrderLine]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal("0"))


def _crossed(before: OrderPlaced, after: OrderPlaced, facts: ReviewFacts, policy: SagaPolicy) -> list[str]:
    """The review rules the changed order fails that the order as it is does not: an
    amendment goes through review again only for what it changes."""
    facts = replace(facts, possible_duplicate_of=None)  # the same order, not a duplicate
    then = set(review(before, facts, policy.review).reasons)
    verdict = review(after, facts, policy.review)
    if verdict.outcome == "reject":
        raise DomainError("amendment_refused", "; ".join(verdict.reasons))
    return [reason for reason in verdict.reasons if reason not in then]


@dataclass(frozen=True)
class Amendment:
    """What a person asks to change: the whole new lines, the new delivery (either may stay)."""

    change_id: str
    lines: tuple[OrderLine, ...] | None
    shipping: Shipping | None
    # The new lines' weight from the catalogue (None: a SKU it does not know).
    weight_kg: Decimal | None
    reason: str
    actor: str


def amend(
    order: Order, request: Amendment, facts: ReviewFacts, now: datetime, policy: SagaPolicy
) -> Reaction:
    changeable(order)
    placed = _placed(order)
    lines = request.lines if request.lines is not None else placed.lines
    shipping = request.shipping if request.shipping is not None else placed.shipping
    same_lines = _line_key(lines) == _line_key(placed.lines)
    if same_lines and request.shipping is None:
        raise InvalidRequest(
            "nothing_to_amend", "lines: the amendment changes nothing (same lines, no new shipping)"
        )
    subtotal = _subtotal(lines)
    amended = placed.model_copy(
        update={"lines": lines, "shipping": shipping, "subtotal": subtotal, "weight_kg": request.weight_kg}
    )
    saga = _Folding(order)
    if order.stage == "review":
        # Held at review, nothing asked of anyone yet: the order changes at once and is
        # reviewed again as it now is.
        saga.emit(
            OrderAmended(
                order_id=order.order_id,
                change_id=request.change_id,
                kind="amend",
                previous_lines=placed.lines,
                lines=lines,
                shipping=shipping,
                subtotal=subtotal,
                weight_kg=request.weight_kg,
                reason=request.reason,
                amended_by=request.actor,
            )
        )
        verdict = review(amended, replace(facts, possible_duplicate_of=None), policy.review)
        if verdict.outcome == "reject":
            reason = "; ".join(verdict.reasons)
            saga.emit(OrderRejected(order_id=order.order_id, reason=reason, rejected_by="rules"))
        elif verdict.outcome == "hold":
            saga.emit(OrderHeld(order_id=order.order_id, reasons=verdict.reasons))
        else:
            saga.emit(OrderApproved(order_id=order.order_id, approved_by="rules"))
            _advance(saga, now, policy)
        return saga.reaction
    crossed = _crossed(placed, amended, facts, policy)
    saga.emit(
        OrderChangeRequested(
            order_id=order.order_id,
            change_id=request.change_id,
            kind="amend",
            lines=lines,
            shipping=shipping,
            subtotal=subtotal,
            weight_kg=request.weight_kg,
            reason=request.reason,
            requested_by=request.actor,
            hold_reasons=tuple(crossed),
            reply_by=None if crossed else now + policy.step_reply_after,
        )
    )
    if not crossed:
        _ask_next(saga, now, policy)
    return saga.reaction


# --- split and merge --------------------------------------------------------------------


def _take(lines: Sequence[OrderLine], moved: dict[str, int]) -> tuple[list[OrderLine], list[OrderLine]]:
    """Split `lines` into what stays and what moves (`moved`: units per SKU), line by line in
    order, so each unit keeps the price it was ordered at."""
    left = dict(moved)
    stays: list[OrderLine] = []
    goes: list[OrderLine] = []
    for line in lines:
        take = min(left.get(line.sku, 0), line.quantity)
        if take:
            goes.append(line.model_copy(update={"quantity": take}))
            left[line.sku] -= take
        if line.quantity - take:
            stays.append(line.model_copy(update={"quantity": line.quantity - take}))
    return stays, goes


@dataclass(frozen=True)
class NewOrder:
    """The order a split or merge makes: its id, and the lines' weight from the catalogue."""

    order_id: str
    weight_kg: Decimal | None


def split(
    order: Order,
    moved: dict[str, int],
    new: NewOrder,
    change_id: str,
    reason: str,
    actor: str,
    now: datetime,
    policy: SagaPolicy,
) -> tuple[Reaction, Reaction]:
    """Move `moved` units into a new order of the same customer: the reactions of this order
    and of the new one. The new order asks for its stock and invoice by moving them."""
    changeable(order, "split")
    if order.stage == "review" or not order.invoiced:
        raise DomainError(
            "order_busy",
            f"order {order.order_id} is {order.status}: it can be split once it is reserved or"
            " backordered, and invoiced",
        )
    placed = _placed(order)
    ordered = order.ordered
    for sku, quantity in moved.items():
        if quantity > ordered.get(sku, 0):
            raise InvalidRequest(
                "too_many_units",
                f"lines: order {order.order_id} has {ordered.get(sku, 0)} of {sku}; {quantity} cannot move",
            )
    stays, goes = _take(placed.lines, moved)
    if not stays:
        raise InvalidRequest(
            "nothing_left", "lines: a split must leave something in the order (cancel it instead)"
        )
    moved_units = tuple(SkuQuantity(sku=s, quantity=q) for s, q in sorted(moved.items()) if q)
    source = _Folding(order)
    source.emit(
        OrderChangeRequested(
            order_id=order.order_id,
            change_id=change_id,
            kind="split",
            lines=tuple(stays),
            shipping=placed.shipping,
            subtotal=_subtotal(stays),
            weight_kg=None,
            reason=reason,
            requested_by=actor,
            other_order_id=new.order_id,
            moved=moved_units,
            # The new order chases the participants (its own reserve and invoice steps).
            reply_by=None,
        )
    )
    target = _new_order(
        placed, goes, new, "split", change_id, (MovedLines(order_id=order.order_id, lines=moved_units),)
    )
    return source.reaction, _start_new(target, actor, now, policy)


def merge(
    orders: Sequence[Order],
    same_address: bool,
    new: NewOrder,
    change_id: str,
    reason: str,
    actor: str,
    now: datetime,
    policy: SagaPolicy,
) -> tuple[dict[str, Reaction], Reaction]:
    """Merge orders of one customer, currency and delivery, none dispatched, into a new one:
    the reactions of each order merged and of the new order. `same_address`: the delivery
    addresses are the same (the caller compares them in clear; they are stored sealed)."""
    ids = [o.order_id for o in orders]
    if len(set(ids)) < 2:
        raise InvalidRequest("order_ids", "order_ids: name at least two different orders to merge")
    for order in orders:
        changeable(order, "merged")
        if order.stage not in _SETTLED:
            raise DomainError(
                "not_mergeable",
                f"order {order.order_id} is {order.status}: only orders whose stock is reserved and"
                " which are invoiced can be merged",
            )
    first = _placed(orders[0])
    for order in orders[1:]:
        placed = _placed(order)
        for attribute, name in (
            ("customer_id", "customer"),
            ("currency", "currency"),
            ("payment_terms", "payment terms"),
        ):
            if getattr(placed, attribute) != getattr(first, attribute):
                raise DomainError(
                    "not_mergeable",
                    f"orders {orders[0].order_id} and {order.order_id} differ in {name}: only orders of"
                    " one customer, currency and payment terms can be merged",
                )
        if placed.shipping.method != first.shipping.method:
            raise DomainError(
                "not_mergeable",
                f"orders {orders[0].order_id} and {order.order_id} differ in shipping method",
            )
    if not same_address:
        raise DomainError("not_mergeable", "the orders do not ship to the same address")
    reactions: dict[str, Reaction] = {}
    moved_from = []
    lines: list[OrderLine] = []
    for order in orders:
        placed = _placed(order)
        units = tuple(_requested_lines(placed))
        moved_from.append(MovedLines(order_id=order.order_id, lines=units))
        lines += placed.lines
        source = _Folding(order)
        source.emit(
            OrderChangeRequested(
                order_id=order.order_id,
                change_id=change_id,
                kind="merge",
                lines=placed.lines,
                shipping=placed.shipping,
                subtotal=placed.subtotal,
                weight_kg=placed.weight_kg,
                reason=reason,
                requested_by=actor,
                other_order_id=new.order_id,
                moved=units,
                reply_by=None,
            )
        )
        reactions[order.order_id] = source.reaction
    target = _new_order(first, lines, new, "merge", change_id, tuple(moved_from))
    return reactions, _start_new(target, actor, now, policy)


def _new_order(
    template: OrderPlaced,
    lines: Sequence[OrderLine],
    new: NewOrder,
    origin: str,
    change_id: str,
    moved_from: tuple[MovedLines, ...],
) -> OrderPlaced:
    return OrderPlaced(
        order_id=new.order_id,
        channel=template.channel,
        customer_id=template.customer_id,
        external_id=None,
        customer=template.customer,
        lines=tuple(lines),
        currency=template.currency,
        payment_terms=template.payment_terms,
        shipping=template.shipping,
        subtotal=_subtotal(lines),
        weight_kg=new.weight_kg,
        origin=origin,  # type: ignore[arg-type]
        origin_id=change_id,
        moved_from=moved_from,
    )


def _start_new(placed: OrderPlaced, actor: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """The new order is placed approved (the person who split or merged decided it) and asks
    for its stock and invoice, which the saga's requests move from the source orders."""
    saga = _Folding(Order())
    saga.emit(placed)
    saga.emit(OrderApproved(order_id=placed.order_id, approved_by=actor))
    _advance(saga, now, policy)
    return saga.reaction


# --- a person's decision on a held change ---------------------------------------------------


def approve_change(order: Order, actor: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """Go on with a change held for a person: past the review rule it crossed (it goes to the
    participants), or over the customer's credit limit (billing charges it anyway)."""
    change = _held_change(order)
    saga = _Folding(order)
    saga.emit(
        OrderChangeApproved(
            order_id=order.order_id,
            change_id=change.change_id,
            approved_by=actor,
            credit_override=change.awaiting == "credit",
            reply_by=now + policy.step_reply_after,
        )
    )
    _ask_next(saga, now, policy)
    return saga.reaction


def reject_change(order: Order, reason: str, actor: str, now: datetime, policy: SagaPolicy) -> Reaction:
    """Refuse a change held for a person. Held at review nothing moved yet; held for credit its
    reservation already changed, so inventory puts it back first."""
    change = _held_change(order)
    saga = _Folding(order)
    if change.awaiting == "review":
        saga.emit(
            OrderChangeRefused(
                order_id=order.order_id, change_id=change.change_id, reason=reason, refused_by=actor
            )
        )
        return saga.reaction
    saga.emit(
        OrderChangeUndoing(
            order_id=order.order_id,
            change_id=change.change_id,
            reason=reason,
            refused_by=actor,
            reply_by=now + policy.step_reply_after,
        )
    )
    _ask_undo(saga, policy)
    return saga.reaction


def _held_change(order: Order) -> PendingChange:
    change = order.change
    if change is None or change.awaiting not in ("review", "credit"):
        raise DomainError("not_on_hold", f"order {order.order_id} has no change waiting for a decision")
    return change


# --- asking the participants ----------------------------------------------------------------


def _ask_next(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    """An amendment asks inventory, then billing; a split's or merge's requests are the new
    order's own (its reserve and invoice steps), so its sources only wait."""
    order = saga.order
    change = order.change
    if change is None or change.kind != "amend":
        return
    if "stock" not in change.answered:
        _ask_stock(saga, policy)
    elif order.invoiced and "invoice" not in change.answered:
        _ask_invoice(saga, now, policy)


def _ask_stock(saga: _Folding, policy: SagaPolicy) -> None:
    order = saga.order
    change = _pending(order)
    placed = _placed(order)
    command = AdjustReservation(
        order_id=order.order_id,
        amendment_id=change.change_id,
        lines=_requested_lines(placed.model_copy(update={"lines": change.lines})),
        backorder=policy.backorders(placed.channel),
        # Confirmed: the shipments not yet dispatched are made again from the new allocation
        # and delivery (inventory cancels them, the order asks anew once applied).
        cancel_shipments=order.shipments_requested,
    )
    saga.send(command, f"{change.change_id}:stock:{change.attempts}")


def _ask_invoice(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    order = saga.order
    change = _pending(order)
    placed = _placed(order)
    command = AdjustInvoice(
        order_id=order.order_id,
        amendment_id=change.change_id,
        lines=change.lines,
        credit_limit_overridden_by=change.credit_override_by,
        **invoice_pricing(placed, change.shipping, change.weight_kg, now, policy),
    )
    override = ":override" if change.credit_override_by else ""
    saga.send(command, f"{change.change_id}:invoice{override}:{change.attempts}")


def _ask_undo(saga: _Folding, policy: SagaPolicy) -> None:
    """Put the reservation back as the order (unchanged) has it."""
    order = saga.order
    change = _pending(order)
    placed = _placed(order)
    command = AdjustReservation(
        order_id=order.order_id,
        amendment_id=f"{change.change_id}:undo",
        lines=_requested_lines(placed),
        backorder=policy.backorders(placed.channel),
        cancel_shipments=order.shipments_requested,
    )
    saga.send(command, f"{change.change_id}:undo:{change.attempts}")


def _pending(order: Order) -> PendingChange:
    if order.change is None:
        raise AssertionError(f"order {order.order_id!r} has no change under way")
    return order.change


# --- the participants' answers --------------------------------------------------------------

CHANGE_REPLIES = (
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
)


def react(order: Order, message: Message, now: datetime, policy: SagaPolicy) -> Reaction:
    """A participant's answer about this order's change. One not about the change under way
    (late, repeated, another change's) changes nothing."""
    change = order.change
    if change is None or order.stage in ("compensating", "ended"):
        return Reaction()
    saga = _Folding(order)
    match message:
        case ReservationAdjusted() if message.amendment_id == f"{change.change_id}:undo":
            if change.awaiting == "undo":
                _record_allocation(saga, message)
                saga.emit(
                    OrderChangeRefused(
                        order_id=order.order_id,
                        change_id=change.change_id,
                        reason=order.last_reason or "refused by finance",
                        refused_by="finance",
                    )
                )
                _restart_shipments(saga, now, policy)
                _paid_meanwhile(saga, now, policy)
        case ReservationAdjustmentRefused() if message.amendment_id == f"{change.change_id}:undo":
            if change.awaiting == "undo":
                missing = ", ".join(f"{m.sku} (short {m.quantity})" for m in message.missing)
                saga.emit(
                    OrderNeedsAttention(
                        order_id=order.order_id,
                        step="change",
                        reason=f"change {change.change_id} was refused but its reservation could not be"
                        f" put back ({message.reason}{': ' + missing if missing else ''}): the order's"
                        " lines and its reservation differ until a person amends or cancels it",
                    )
                )
                saga.emit(
                    OrderChangeRefused(
                        order_id=order.order_id,
                        change_id=change.change_id,
                        reason=message.reason,
                        refused_by="rules",
                    )
                )
        case ReservationAdjusted() if message.amendment_id == change.change_id and change.awaiting == "steps":
            if "stock" in change.answered:
                return Reaction()
            _record_allocation(saga, message)
            saga.emit(
                OrderChangeStepAnswered(
                    order_id=order.order_id,
                    change_id=change.change_id,
                    step="stock",
                    reply_by=now + policy.step_reply_after
                    if order.invoiced and change.kind == "amend"
                    else None,
                )
            )
            _ask_next(saga, now, policy)
            _apply_when_answered(saga, now, policy)
        case ReservationAdjustmentRefused() if message.amendment_id == change.change_id:
            missing = ", ".join(f"{m.sku} (short {m.quantity})" for m in message.missing)
            reason = message.reason + (f": {missing}" if missing else "")
            saga.emit(
                OrderChangeRefused(
                    order_id=order.order_id, change_id=change.change_id, reason=reason, refused_by="rules"
                )
            )
            _paid_meanwhile(saga, now, policy)
        case InvoiceAdjusted() if message.amendment_id == change.change_id and change.awaiting == "steps":
            if "invoice" in change.answered:
                return Reaction()
            saga.emit(
                OrderChangeStepAnswered(
                    order_id=order.order_id,
                    change_id=change.change_id,
                    step="invoice",
                    total=message.total,
                    amount_paid=message.amount_paid,
                    transferred=message.transferred,
                    refunded=message.refund_amount,
                )
            )
            _apply_when_answered(saga, now, policy)
        case InvoiceAdjustmentRefused() if (
            message.amendment_id == change.change_id and change.awaiting == "steps" and message.amount > 0
        ):
            reason = (
                f"credit limit exceeded by the change: {message.amount:.2f} more on top of an open balance of"
                f" {message.open_balance:.2f} is over the limit of {message.credit_limit:.2f}"
            )
            saga.emit(OrderChangeHeld(order_id=order.order_id, change_id=change.change_id, reasons=(reason,)))
        case InvoiceAdjustmentRefused() if (
            message.amendment_id == change.change_id and change.awaiting == "steps"
        ):
            # Refused for another reason than credit (the invoice is no longer open): nothing
            # for a person to decide; the reservation is put back and the change refused.
            saga.emit(
                OrderChangeUndoing(
                    order_id=order.order_id,
                    change_id=change.change_id,
                    reason=f"billing refused the change: {message.reason}",
                    refused_by="rules",
                    reply_by=now + policy.step_reply_after,
                )
            )
            _ask_undo(saga, policy)
    return saga.reaction


def _record_allocation(saga: _Folding, adjusted: ReservationAdjusted) -> None:
    """The order's allocation as inventory now holds it: reserved, or still waiting for stock
    (an order that was backordered keeps its wait's clock)."""
    order = saga.order
    if adjusted.waiting:
        saga.emit(
            OrderAwaitingStock(
                order_id=order.order_id, missing=adjusted.missing, alert_at=order.stock_alert_at
            )
        )
    elif adjusted.lines:
        saga.emit(OrderStockAllocated(order_id=order.order_id, allocations=adjusted.allocations))


def _apply_when_answered(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    order = saga.order
    change = order.change
    if change is None:
        return
    needed = {"stock", "invoice"} if order.invoiced else {"stock"}
    if not needed <= change.answered:
        return
    placed = _placed(order)
    if change.kind == "merge":
        saga.emit(
            OrderMerged(
                order_id=order.order_id,
                change_id=change.change_id,
                into_order_id=change.other_order_id or "",
                reason=change.reason,
                merged_by=change.actor,
                transferred=change.transferred,
            )
        )
        return
    saga.emit(
        OrderAmended(
            order_id=order.order_id,
            change_id=change.change_id,
            kind=change.kind,  # type: ignore[arg-type]
            previous_lines=placed.lines,
            lines=change.lines,
            shipping=change.shipping,
            subtotal=change.subtotal,
            weight_kg=change.weight_kg,
            total=change.invoice_total,
            reason=change.reason,
            amended_by=change.actor,
            split_into=change.other_order_id if change.kind == "split" else None,
            refunded=change.refunded,
            amount_paid=change.invoice_paid,
            transferred=change.transferred,
        )
    )
    _resume(saga, now, policy)


def _resume(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    """Go on from where the order stood, with its new lines and amounts: a backorder now
    reserved goes on to payment; a prepaid order that owes more waits for the difference
    (its shipments are made again once it is paid); a confirmed one ships the new lines."""
    order = saga.order
    placed = _placed(order)
    if order.stage in ("reserving", "invoicing"):
        if order.stock_allocated and not order.waiting_for_stock:
            _advance(saga, now, policy)
        return
    owes = placed.payment_terms == "prepaid" and order.amount_paid < order.amount_due
    if order.stage == "awaiting_payment" or (owes and order.stage in _SETTLED):
        if order.invoice_id is None:
            raise AssertionError(f"order {order.order_id!r} waits for payment without an invoice")
        if not owes:
            _confirm(saga, order.invoice_id, order.amount_due, now, policy)
            return
        saga.emit(
            OrderAwaitingPayment(
                order_id=order.order_id,
                invoice_id=order.invoice_id,
                amount_due=order.amount_due,
                payment_deadline=now + policy.payment_deadline_for(placed.channel),
            )
        )
        return
    _restart_shipments(saga, now, policy)


def _paid_meanwhile(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    """The order was paid in full while a change that did not happen was under way (the
    saga waits for a change before it confirms): confirmed now."""
    order = saga.order
    if order.stage == "awaiting_payment" and order.paid_in_full and order.invoice_id is not None:
        _confirm(saga, order.invoice_id, order.amount_due, now, policy)


def _restart_shipments(saga: _Folding, now: datetime, policy: SagaPolicy) -> None:
    """Shipments not yet dispatched were cancelled by the change: ask for them again."""
    if saga.order.stage == "fulfilling":
        _request_shipments(saga, now, policy)


# --- deadlines ------------------------------------------------------------------------------
# The persisted deadline of a change's request (saga_deadlines, kind "change").
DEADLINE = "change"


def chase(order: Order, now: datetime, policy: SagaPolicy) -> Reaction:
    """The participant the change waits for has not answered by its deadline: ask again (the
    same change id: done at most once), and after the last attempt a person is told."""
    change = order.change
    if change is None or change.kind != "amend" or change.awaiting not in ("steps", "undo"):
        return Reaction()
    if order.status == "needs_attention":
        return Reaction()
    saga = _Folding(order)
    step = "stock" if change.awaiting == "undo" or "stock" not in change.answered else "invoice"
    if change.attempts >= policy.step_max_attempts:
        participant = "inventory" if step == "stock" else "billing"
        saga.emit(
            OrderNeedsAttention(
                order_id=order.order_id,
                step="change",
                reason=f"{participant} did not answer change {change.change_id}"
                f" after {change.attempts} attempts",
            )
        )
        return saga.reaction
    saga.emit(
        OrderChangeResent(
            order_id=order.order_id,
            change_id=change.change_id,
            attempt=change.attempts + 1,
            reply_by=now + policy.step_reply_after,
        )
    )
    if change.awaiting == "undo":
        _ask_undo(saga, policy)
    elif step == "stock":
        _ask_stock(saga, policy)
    else:
        _ask_invoice(saga, now, policy)
    return saga.reaction
