"""The Return aggregate: goods a customer sends back after delivery, and what follows.

requested -> approved (or rejected) -> received -> completed. On receipt, inventory restocks
the resellable units and books the damaged ones as a loss; billing credits the received lines
and refunds what was paid for them (resolution refund), or the units are reserved and shipped
again under the return's id (resolution replace). The order keeps its own account of what
came back (OrderReturnRequested, OrderReturnRejected, OrderGoodsReturned): its version check
is what keeps two returns from claiming the same unit.

Pure: no I/O, no clock. `decide_*` functions return a ReturnDecision (events for the
return's stream and for the order's, commands for the participants).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from libs.domain import AggregateKind, DomainError, InvalidRequest, NotFound
from libs.events.base import DomainEvent, Message
from libs.events.billing import CreditNoteIssued, IssueReturnCredit
from libs.events.inventory import (
    CreateShipments,
    ReceiveReturnedGoods,
    ReserveStock,
    ReturnedGoods,
    ReturnedGoodsReceived,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    StockReserved,
    StockShortage,
)
from libs.events.order import (
    OrderGoodsReturned,
    OrderReturnRejected,
    OrderReturnRequested,
    ReceivedLine,
    ReturnApproved,
    ReturnCompleted,
    ReturnCondition,
    ReturnCredited,
    ReturnLine,
    ReturnNeedsAttention,
    ReturnReceived,
    ReturnRejected,
    ReturnReplacementRequested,
    ReturnReplacementUpdated,
    ReturnRequested,
    ReturnResolution,
    ReturnRestocked,
    ReturnStepResent,
)
from libs.events.values import SkuQuantity
from services.order.domain.order import Order
from services.order.domain.saga import Outgoing

ReturnStatus = Literal["new", "requested", "approved", "rejected", "received", "completed"]
# Order statuses in which its goods are with the customer, so a return may be asked for.
RETURNABLE_STATUSES = frozenset({"delivered", "completed", "partially_returned", "returned"})
REPLACEMENT_ARRIVED = frozenset({"delivered", "collected"})


@dataclass(frozen=True)
class ReturnPolicy:
    """How long after delivery a customer may still ask to return goods."""

    window: timedelta = timedelta(days=30)
    # What a receipt asks of inventory and billing: unanswered by then it is asked again, and
    # after the last attempt the return needs a person (nothing waits forever).
    reply_after: timedelta = timedelta(minutes=2)
    max_attempts: int = 3


@dataclass(frozen=True)
class Return:
    return_id: str = ""
    order_id: str = ""
    status: ReturnStatus = "new"
    resolution: ReturnResolution = "refund"
    lines: tuple[ReturnLine, ...] = ()
    received: tuple[ReceivedLine, ...] = ()
    restocked: bool = False
    credited: bool = False
    replacement_status: str | None = None
    attempts: int = 1
    attention: str | None = None

    @property
    def exists(self) -> bool:
        return self.status != "new"

    def requested(self, sku: str) -> int:
        return sum(line.quantity for line in self.lines if line.sku == sku)

    @property
    def settled(self) -> bool:
        """Everything the receipt set off has been answered."""
        if not self.restocked:
            return False
        if self.resolution == "refund":
            return self.credited
        return self.replacement_status in REPLACEMENT_ARRIVED


def evolve(state: Return, event: DomainEvent) -> Return:  # noqa: PLR0911 - one branch per event
    match event:
        case ReturnRequested():
            return replace(
                state,
                return_id=event.return_id,
                order_id=event.order_id,
                status="requested",
                resolution=event.resolution,
                lines=event.lines,
            )
        case ReturnApproved():
            return replace(state, status="approved")
        case ReturnRejected():
            return replace(state, status="rejected")
        case ReturnReceived():
            return replace(state, status="received", received=event.lines)
        case ReturnRestocked():
            return replace(state, restocked=True)
        case ReturnCredited():
            return replace(state, credited=True)
        case ReturnReplacementRequested():
            return replace(state, replacement_status="requested")
        case ReturnReplacementUpdated():
            return replace(state, replacement_status=event.status)
        case ReturnCompleted():
            return replace(state, status="completed")
        case ReturnStepResent():
            return replace(state, attempts=event.attempt)
        case ReturnNeedsAttention():
            return replace(state, attention=event.reason)
    return state


RETURN = AggregateKind[Return]("return", Return, evolve)


@dataclass
class ReturnDecision:
    returns: list[DomainEvent] = field(default_factory=list)
    order: list[DomainEvent] = field(default_factory=list)
    commands: list[Outgoing] = field(default_factory=list)


@dataclass(frozen=True)
class Receipt:
    """One line of what came back, as the warehouse reports it."""

    sku: str
    quantity: int
    condition: ReturnCondition


# -- the order desk ------------------------------------------------------------------------


def decide_request(
    order: Order,
    return_id: str,
    lines: Sequence[ReturnLine],
    resolution: ReturnResolution,
    actor: str,
    now: datetime,
    delivered_at: datetime | None,
    policy: ReturnPolicy,
) -> ReturnDecision:
    if not order.exists:
        raise NotFound("unknown_order", f"order {order.order_id} does not exist")
    if order.status not in RETURNABLE_STATUSES or delivered_at is None:
        raise DomainError(
            "not_delivered",
            f"order {order.order_id} is {order.status}: only delivered goods can be returned",
        )
    closes = delivered_at + policy.window
    if now > closes:
        raise DomainError(
            "return_window_closed",
            f"order {order.order_id} was delivered on {delivered_at:%Y-%m-%d %H:%M} UTC; its return window"
            f" of {_days(policy.window)} closed on {closes:%Y-%m-%d %H:%M} UTC",
        )
    asked: dict[str, int] = {}
    for number, line in enumerate(lines):
        if line.sku not in order.ordered:
            raise InvalidRequest(
                "unknown_line", f"lines[{number}].sku: order {order.order_id} has no line for {line.sku}"
            )
        asked[line.sku] = asked.get(line.sku, 0) + line.quantity
    for sku, quantity in asked.items():
        if quantity > (returnable := order.returnable(sku)):
            raise DomainError(
                "more_than_returnable",
                f"lines: {quantity} x {sku} asked for, but only {returnable} of the"
                f" {order.ordered[sku]} delivered can still be returned (the rest came back or"
                " is in another open return)",
            )
    requested = ReturnRequested(
        return_id=return_id,
        order_id=order.order_id,
        lines=tuple(lines),
        resolution=resolution,
        requested_by=actor,
    )
    claimed = OrderReturnRequested(
        order_id=order.order_id,
        return_id=return_id,
        lines=tuple(SkuQuantity(sku=sku, quantity=quantity) for sku, quantity in asked.items()),
    )
    return ReturnDecision(returns=[requested], order=[claimed])


def decide_approve(state: Return, actor: str) -> ReturnDecision:
    _require(state)
    if state.status == "approved":
        return ReturnDecision()  # approved twice: the same decision
    if state.status != "requested":
        raise DomainError(
            "return_not_requested", f"return {state.return_id} is {state.status}, not requested"
        )
    return ReturnDecision(
        returns=[ReturnApproved(return_id=state.return_id, order_id=state.order_id, approved_by=actor)]
    )


def decide_reject(state: Return, reason: str, actor: str) -> ReturnDecision:
    _require(state)
    if state.status == "rejected":
        return ReturnDecision()
    if state.status not in ("requested", "approved"):
        raise DomainError(
            "return_not_open", f"return {state.return_id} is {state.status}: it can no longer be rejected"
        )
    rejected = ReturnRejected(
        return_id=state.return_id, order_id=state.order_id, reason=reason, rejected_by=actor
    )
    released = OrderReturnRejected(order_id=state.order_id, return_id=state.return_id)
    return ReturnDecision(returns=[rejected], order=[released])


def decide_receive(
    state: Return,
    order: Order,
    receipts: Sequence[Receipt],
    actor: str,
    now: datetime | None = None,
    policy: ReturnPolicy | None = None,
) -> ReturnDecision:
    _require(state)
    if state.status != "approved":
        raise DomainError(
            "return_not_approved",
            f"return {state.return_id} is {state.status}: goods are received for an approved return only",
        )
    received_per_sku: dict[str, int] = {}
    for number, receipt in enumerate(receipts):
        received_per_sku[receipt.sku] = received_per_sku.get(receipt.sku, 0) + receipt.quantity
        if received_per_sku[receipt.sku] > state.requested(receipt.sku):
            raise InvalidRequest(
                "more_than_requested",
                f"lines[{number}].quantity: return {state.return_id} asked to return"
                f" {state.requested(receipt.sku)} x {receipt.sku}, not {received_per_sku[receipt.sku]}",
            )
    lines = _into_warehouses(order, receipts)
    reply_by = now + policy.reply_after if now is not None and policy is not None else None
    received = ReturnReceived(
        return_id=state.return_id, order_id=state.order_id, lines=lines, received_by=actor, reply_by=reply_by
    )
    returned = {**order.returned}
    replaced = state.resolution == "replace"
    for sku, quantity in received_per_sku.items():
        returned[sku] = returned.get(sku, 0) + (0 if replaced else quantity)
    goods_returned = OrderGoodsReturned(
        order_id=state.order_id,
        return_id=state.return_id,
        lines=tuple(SkuQuantity(sku=sku, quantity=quantity) for sku, quantity in received_per_sku.items()),
        fully_returned=all(returned.get(sku, 0) >= quantity for sku, quantity in order.ordered.items()),
        replaced=replaced,
    )
    decision = ReturnDecision(returns=[received], order=[goods_returned])
    after = evolve(state, received)
    decision.commands.append(_restock(after))
    if state.resolution == "refund":
        decision.commands.append(_credit(after))
    else:
        decision.returns.append(
            ReturnReplacementRequested(
                return_id=state.return_id, order_id=state.order_id, lines=_units(after)
            )
        )
        decision.commands.append(_reserve(after, order))
    return decision


def _units(state: Return) -> tuple[SkuQuantity, ...]:
    per_sku: dict[str, int] = {}
    for line in state.received:
        per_sku[line.sku] = per_sku.get(line.sku, 0) + line.quantity
    return tuple(SkuQuantity(sku=sku, quantity=quantity) for sku, quantity in per_sku.items())


def _again(state: Return) -> str:
    """A request asked again is another message (else the inbox would take it for the first)."""
    return f":{state.attempts}" if state.attempts > 1 else ""


def _restock(state: Return) -> Outgoing:
    command = ReceiveReturnedGoods(
        return_id=state.return_id, order_id=state.order_id, lines=_goods(state.received)
    )
    return Outgoing(command, f"return:{state.return_id}:restock{_again(state)}")


def _credit(state: Return) -> Outgoing:
    credit = IssueReturnCredit(
        order_id=state.order_id,
        return_id=state.return_id,
        lines=_units(state),
        reason=f"return {state.return_id}",
    )
    return Outgoing(credit, f"return:{state.return_id}:credit{_again(state)}")


def _reserve(state: Return, order: Order) -> Outgoing:
    region = order.placed.customer.region if order.placed is not None else None
    reserve = ReserveStock(order_id=state.return_id, lines=_units(state), region=region, backorder=True)
    return Outgoing(reserve, f"return:{state.return_id}:reserve{_again(state)}")


def _ship(state: Return, order: Order) -> Outgoing | None:
    if order.placed is None:
        return None
    ship = CreateShipments(order_id=state.return_id, shipping=order.placed.shipping)
    return Outgoing(ship, f"return:{state.return_id}:ship{_again(state)}")


def _unanswered(state: Return) -> list[str]:
    """What the receipt asked of a participant that has not been answered yet. A replacement
    waiting for stock (backordered) or on its way waits for the world, not for an answer."""
    steps = [] if state.restocked else ["restock"]
    if state.resolution == "refund" and not state.credited:
        steps.append("credit")
    if state.resolution == "replace" and state.replacement_status in ("requested", "reserved"):
        steps.append("reserve" if state.replacement_status == "requested" else "ship")
    return steps


def chase(state: Return, order: Order, now: datetime, policy: ReturnPolicy) -> ReturnDecision:
    """The receipt's deadline passed: ask again what is unanswered, or, after the last
    attempt, tell a person. Inventory and billing do each at most once (by the return's id)."""
    decision = ReturnDecision()
    steps = _unanswered(state)
    if state.status != "received" or state.attention is not None or not steps:
        return decision
    ids = {"return_id": state.return_id, "order_id": state.order_id}
    if state.attempts >= policy.max_attempts:
        who = " and ".join(sorted({"billing" if step == "credit" else "inventory" for step in steps}))
        asked = ", ".join(steps)
        reason = f"{who} did not answer return {state.return_id} ({asked}) after {state.attempts} attempts"
        decision.returns.append(ReturnNeedsAttention(**ids, reason=reason))
        return decision
    resent = ReturnStepResent(
        **ids, attempt=state.attempts + 1, steps=tuple(steps), reply_by=now + policy.reply_after
    )
    decision.returns.append(resent)
    again = evolve(state, resent)
    requests = {"restock": lambda: _restock(again), "credit": lambda: _credit(again)}
    requests["reserve"] = lambda: _reserve(again, order)
    for step in steps:
        if step == "ship":
            if (ship := _ship(again, order)) is not None:
                decision.commands.append(ship)
        else:
            decision.commands.append(requests[step]())
    return decision


def _require(state: Return) -> None:
    if not state.exists:
        raise NotFound("unknown_return", f"return {state.return_id} does not exist")


def _into_warehouses(order: Order, receipts: Sequence[Receipt]) -> tuple[ReceivedLine, ...]:
    """The units go back to the warehouses that shipped them, filling each one's allocation in
    turn across the receipt's lines (an order's SKU may have shipped from several)."""
    room = {(a.sku, a.warehouse): a.quantity for a in order.allocations}
    lines: list[ReceivedLine] = []
    for receipt in receipts:
        places = [warehouse for sku, warehouse in room if sku == receipt.sku]
        if not places:
            raise DomainError(
                "unknown_warehouse", f"order {order.order_id} has no warehouse that shipped {receipt.sku}"
            )
        remaining = receipt.quantity
        for number, warehouse in enumerate(places):
            last = number == len(places) - 1
            quantity = remaining if last else min(remaining, room[(receipt.sku, warehouse)])
            if quantity <= 0:
                continue
            room[(receipt.sku, warehouse)] -= quantity
            remaining -= quantity
            lines.append(
                ReceivedLine(
                    sku=receipt.sku, quantity=quantity, condition=receipt.condition, warehouse=warehouse
                )
            )
    return tuple(lines)


def _goods(lines: Sequence[ReceivedLine]) -> tuple[ReturnedGoods, ...]:
    by_place: dict[tuple[str, str], ReturnedGoods] = {}
    for line in lines:
        goods = by_place.get(
            (line.sku, line.warehouse), ReturnedGoods(sku=line.sku, warehouse=line.warehouse)
        )
        if line.condition == "resellable":
            goods = goods.model_copy(update={"resellable": goods.resellable + line.quantity})
        else:
            goods = goods.model_copy(update={"damaged": goods.damaged + line.quantity})
        by_place[(line.sku, line.warehouse)] = goods
    return tuple(by_place.values())


def _days(window: timedelta) -> str:
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


# -- participants' answers -----------------------------------------------------------------


_SHIPMENT_MILESTONES: dict[type[Message], str] = {
    ShipmentCreated: "created",
    ShipmentDispatched: "dispatched",
    ShipmentCollected: "collected",
    ShipmentDelivered: "delivered",
}


def react(state: Return, order: Order, message: Message) -> ReturnDecision:
    """Record a participant's answer about this return; a repeated or late one changes nothing."""
    decision = ReturnDecision()
    if not state.exists:
        return decision
    ids = {"return_id": state.return_id, "order_id": state.order_id}
    match message:
        case ReturnedGoodsReceived() if not state.restocked:
            decision.returns.append(
                ReturnRestocked(**ids, restocked=message.restocked, written_off=message.written_off)
            )
        case CreditNoteIssued() if not state.credited:
            decision.returns.append(
                ReturnCredited(
                    **ids,
                    credit_note_id=message.credit_note_id,
                    credit_amount=message.amount,
                    refund_id=message.refund_id,
                    refund_amount=message.refund_amount,
                )
            )
        case StockReserved() if state.replacement_status in ("requested", "backordered"):
            decision.returns.append(ReturnReplacementUpdated(**ids, status="reserved"))
            if (ship := _ship(replace(state, attempts=1), order)) is not None:
                decision.commands.append(ship)
        case StockShortage() if state.replacement_status == "requested":
            decision.returns.append(ReturnReplacementUpdated(**ids, status="backordered"))
        case ShipmentCreated() | ShipmentDispatched() | ShipmentCollected() | ShipmentDelivered():
            milestone = _SHIPMENT_MILESTONES[type(message)]
            if state.replacement_status != milestone and state.replacement_status not in REPLACEMENT_ARRIVED:
                decision.returns.append(
                    ReturnReplacementUpdated(**ids, status=milestone, shipment_id=message.shipment_id)
                )
    after = state
    for event in decision.returns:
        after = evolve(after, event)
    if decision.returns and after.settled and after.status == "received":
        decision.returns.append(ReturnCompleted(**ids))
    return decision
