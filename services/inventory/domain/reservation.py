"""An order's reservation: what it asked for, and whether it is reserved, waiting or released.

The decisions here span several SKUs; each returns the events per aggregate so the handler
appends them all in one transaction (one service, one database, one commit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from libs.domain import AggregateKind
from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderQueued,
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    ReservationConsumed,
    ReservationRequested,
    ReservationRevoked,
    StockAllocated,
    StockConsumed,
    StockDeallocated,
    StockReleased,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain.stock import FIFO, BackorderPolicy, SkuStock, plan_allocation

# consumed: a production order's components went into production (ConsumeStock)
Status = Literal["new", "reserved", "backordered", "refused", "released", "consumed"]


@dataclass(frozen=True)
class Reservation:
    order_id: str = ""
    status: Status = "new"
    lines: tuple[SkuQuantity, ...] = ()
    region: str | None = None
    allocations: tuple[Allocation, ...] = ()
    # the shortage policy of the request: wait in the backorder queue, or be refused
    backorder: bool = True
    # amendment or move id -> this order's answer to it, given again to a repeated command
    answers: Mapping[str, ReservationAdjusted | ReservationAdjustmentRefused] = field(default_factory=dict)
    # the first StockReserved or StockShortage: for an order a move created, the move's answer
    first_answer: StockReserved | StockShortage | None = None


def evolve(state: Reservation, event: DomainEvent) -> Reservation:
    if isinstance(event, StockReserved | StockShortage) and state.first_answer is None:
        state = replace(state, first_answer=event)
    if isinstance(event, ReservationAdjusted | ReservationAdjustmentRefused):
        return _adjusted(state, event)
    if isinstance(event, ReservationRequested):
        return replace(
            state, order_id=event.order_id, lines=event.lines, region=event.region, backorder=event.backorder
        )
    if isinstance(event, ReservationRevoked):
        return replace(state, allocations=_without(state.allocations, event))
    if isinstance(event, StockReserved):
        return replace(state, order_id=event.order_id, status="reserved", allocations=event.allocations)
    if isinstance(event, StockShortage):
        return replace(
            state,
            order_id=event.order_id,
            status="backordered" if event.backordered else "refused",
            lines=event.lines,
            region=event.region,
            allocations=(),
        )
    if isinstance(event, StockReleased):
        return replace(state, status="released", allocations=())
    if isinstance(event, ReservationConsumed):
        return replace(state, status="consumed", allocations=())
    return state


def _adjusted(state: Reservation, event: ReservationAdjusted | ReservationAdjustmentRefused) -> Reservation:
    if event.amendment_id in state.answers:
        return state  # the same answer given again changes nothing
    answers = {**state.answers, event.amendment_id: event}
    if isinstance(event, ReservationAdjustmentRefused):
        return replace(state, answers=answers)
    status: Status = "released" if not event.lines else "backordered" if event.waiting else "reserved"
    return replace(state, status=status, lines=event.lines, allocations=event.allocations, answers=answers)


def _without(allocations: tuple[Allocation, ...], revoked: ReservationRevoked) -> tuple[Allocation, ...]:
    kept = []
    for allocation in allocations:
        if (allocation.sku, allocation.warehouse) == (revoked.sku, revoked.warehouse):
            left = allocation.quantity - revoked.quantity
            if left > 0:
                kept.append(allocation.model_copy(update={"quantity": left}))
        else:
            kept.append(allocation)
    return tuple(kept)


def skus_held(reservation: Reservation) -> set[str]:
    return {a.sku for a in reservation.allocations} | {line.sku for line in reservation.lines}


RESERVATION = AggregateKind[Reservation]("reservation", Reservation, evolve)


@dataclass(frozen=True)
class Decision:
    """Events to append, per aggregate: the reservation's and each touched SKU's."""

    reservation: list[DomainEvent]
    skus: dict[str, list[DomainEvent]]


def merge_lines(lines: Sequence[SkuQuantity]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    return wanted


def try_allocate(
    order_id: str,
    wanted: Mapping[str, int],
    stocks: Mapping[str, SkuStock],
    preferred: Sequence[str],
    policy: BackorderPolicy = FIFO,
) -> dict[str, dict[str, int]] | None:
    """A plan for every SKU, or None. Stock of a SKU others wait for is theirs first: under
    first-in first-out nobody may take it while an order queued earlier waits; under
    fill-what-fits a later order may, until an order waiting before it has been passed the
    policy's maximum number of times (SkuStock.may_take)."""
    plans: dict[str, dict[str, int]] = {}
    for sku, quantity in wanted.items():
        stock = stocks[sku]
        if not stock.may_take(order_id, policy):
            return None
        plan = plan_allocation(stock, quantity, preferred)
        if plan is None:
            return None
        plans[sku] = plan
    return plans


def allocation_events(
    order_id: str, plans: Mapping[str, Mapping[str, int]], stocks: Mapping[str, SkuStock]
) -> Decision:
    skus: dict[str, list[DomainEvent]] = {}
    allocations: list[Allocation] = []
    for sku, plan in plans.items():
        events: list[DomainEvent] = [StockAllocated(sku=sku, order_id=order_id, warehouses=dict(plan))]
        if stocks[sku].is_queued(order_id):
            events.append(BackorderDequeued(sku=sku, order_id=order_id))
        skus[sku] = events
        allocations += [Allocation(sku=sku, warehouse=w, quantity=q) for w, q in sorted(plan.items())]
    return Decision([StockReserved(order_id=order_id, allocations=tuple(allocations))], skus)


def decide_reserve(
    reservation: Reservation,
    order_id: str,
    lines: Sequence[SkuQuantity],
    region: str | None,
    backorder: bool,
    stocks: Mapping[str, SkuStock],
    preferred: Sequence[str],
    policy: BackorderPolicy = FIFO,
) -> Decision:
    if reservation.status != "new":
        return Decision([], {})  # already answered: a redelivered or repeated request
    # Kept with the reservation, so a revoked one is planned again by the same rules.
    requested = ReservationRequested(
        order_id=order_id, lines=tuple(lines), region=region, backorder=backorder
    )
    wanted = merge_lines(lines)
    plans = try_allocate(order_id, wanted, stocks, preferred, policy)
    if plans is not None:
        allocated = allocation_events(order_id, plans, stocks)
        return Decision([requested, *allocated.reservation], allocated.skus)
    missing = tuple(
        SkuQuantity(sku=sku, quantity=max(quantity - stocks[sku].total_available(), 0) or quantity)
        for sku, quantity in wanted.items()
        if stocks[sku].total_available() < quantity or not stocks[sku].may_take(order_id, policy)
    )
    shortage = StockShortage(
        order_id=order_id, lines=tuple(lines), region=region, missing=missing, backordered=backorder
    )
    skus: dict[str, list[DomainEvent]] = {}
    if backorder:
        for item in missing:
            skus[item.sku] = [BackorderQueued(sku=item.sku, order_id=order_id, quantity=wanted[item.sku])]
    return Decision([requested, shortage], skus)


def decide_release(
    reservation: Reservation, order_id: str, reason: str, stocks: Mapping[str, SkuStock]
) -> Decision:
    """Release whatever the order holds: its allocations, or its places in backorder queues.
    Answered every time (even when nothing is held) so the saga always gets its reply."""
    skus: dict[str, list[DomainEvent]] = {}
    for sku, stock in stocks.items():
        events: list[DomainEvent] = []
        if order_id in stock.allocations:
            events.append(
                StockDeallocated(sku=sku, order_id=order_id, warehouses=dict(stock.allocations[order_id]))
            )
        if stock.is_queued(order_id):
            events.append(BackorderDequeued(sku=sku, order_id=order_id))
        if events:
            skus[sku] = events
    released = StockReleased(order_id=order_id, allocations=reservation.allocations, reason=reason)
    return Decision([released], skus)


def decide_consume(reservation: Reservation, order_id: str) -> Decision:
    """Take what a production order holds out of stock, once: on hand and its reservation
    fall together in each warehouse. A reservation not (or no longer) reserved consumes
    nothing (a repeated command: the first answered it)."""
    if reservation.status != "reserved":
        return Decision([], {})
    skus: dict[str, list[DomainEvent]] = {}
    for allocation in reservation.allocations:
        skus.setdefault(allocation.sku, []).append(
            StockConsumed(
                sku=allocation.sku,
                order_id=order_id,
                warehouse=allocation.warehouse,
                quantity=allocation.quantity,
            )
        )
    return Decision([ReservationConsumed(order_id=order_id, consumed=reservation.allocations)], skus)
