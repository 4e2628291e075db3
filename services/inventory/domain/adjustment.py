"""Stock adjustments, and what they do to reservations when the goods are gone.

An adjustment books on hand to what is really there. It may take on hand below what is
reserved: then the newest reservations that no longer fit lose that stock (nothing is ever
promised from stock that does not exist), and each order concerned is planned again at once,
from other warehouses, or else backordered or refused by the policy its reservation carries.
A quantity already dispatched has left the allocations, so it is never revoked.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from libs.domain import DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import (
    AdjustmentReason,
    BackorderQueued,
    ReservationRevoked,
    StockAdjusted,
    StockAllocated,
    StockDeallocated,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain.reservation import Decision, Reservation, merge_lines
from services.inventory.domain.stock import SkuStock, plan_allocation
from services.inventory.domain.stock import evolve as evolve_stock

# Which way each reason may move stock: damage and loss take it away, found stock adds to it.
DIRECTION: dict[AdjustmentReason, str] = {
    "damage": "-",
    "loss": "-",
    "found": "+",
    "correction": "±",
    "count": "±",
}


def decide_adjustment(
    stock: SkuStock,
    sku: str,
    warehouse: str,
    delta: int,
    reason: AdjustmentReason,
    note: str,
    approved_by: str,
    count_id: str | None = None,
) -> list[DomainEvent]:
    if delta == 0:
        raise InvalidRequest("invalid_delta", "an adjustment's delta must not be zero")
    direction = DIRECTION[reason]
    if (direction == "-" and delta > 0) or (direction == "+" and delta < 0):
        sign = "negative" if direction == "-" else "positive"
        raise InvalidRequest("invalid_delta", f"an adjustment for {reason} takes a {sign} delta, not {delta}")
    on_hand = stock.on_hand.get(warehouse, 0)
    if on_hand + delta < 0:
        raise DomainError(
            "below_zero",
            f"SKU {sku}: {on_hand} on hand at {warehouse}; an adjustment of {delta} would take it below zero",
        )
    return [
        StockAdjusted(
            sku=sku,
            warehouse=warehouse,
            delta=delta,
            reason=reason,
            note=note,
            approved_by=approved_by,
            count_id=count_id,
        )
    ]


@dataclass(frozen=True)
class Revocation:
    """Stock an order held that is gone."""

    order_id: str
    sku: str
    warehouse: str
    quantity: int


def revocations(stock: SkuStock, warehouse: str) -> list[Revocation]:
    """Where more is reserved than is on hand: the newest reservations lose what does not fit,
    newest first (allocations are kept in the order they were made)."""
    shortfall = stock.reserved(warehouse) - stock.on_hand.get(warehouse, 0)
    found: list[Revocation] = []
    for order_id, held in reversed(list(stock.allocations.items())):
        if shortfall <= 0:
            break
        take = min(held.get(warehouse, 0), shortfall)
        if take > 0:
            found.append(Revocation(order_id, stock.sku, warehouse, take))
            shortfall -= take
    return found


def release_revoked(stock: SkuStock, revoked: Sequence[Revocation]) -> list[DomainEvent]:
    """The SKU events that take the revoked stock away from its orders: each order keeps the
    rest of what it held of the SKU, until it is planned again. Every release comes before
    any re-allocation, so no allocation is ever made while more is reserved than on hand."""
    released: list[DomainEvent] = []
    kept_again: list[DomainEvent] = []
    for revocation in revoked:
        held = dict(stock.allocations[revocation.order_id])
        released.append(StockDeallocated(sku=stock.sku, order_id=revocation.order_id, warehouses=dict(held)))
        held[revocation.warehouse] -= revocation.quantity
        kept = {warehouse: quantity for warehouse, quantity in held.items() if quantity > 0}
        if kept:
            kept_again.append(StockAllocated(sku=stock.sku, order_id=revocation.order_id, warehouses=kept))
    return [*released, *kept_again]


def wanted_by(reservation: Reservation) -> dict[str, int]:
    """What the order asked for, per SKU. A reservation answered before its request was kept
    with it asked for exactly what it was allocated."""
    if reservation.lines:
        return merge_lines(reservation.lines)
    wanted: dict[str, int] = {}
    for allocation in reservation.allocations:
        wanted[allocation.sku] = wanted.get(allocation.sku, 0) + allocation.quantity
    return wanted


def decide_replan(
    reservation: Reservation,
    order_id: str,
    revoked: Sequence[Revocation],
    reason: str,
    stocks: Mapping[str, SkuStock],
    preferred: Sequence[str],
) -> Decision:
    """The order lost `revoked` (already taken off its allocations by `release_revoked`):
    say so on its reservation, and reserve it again at once.

    `stocks` holds every SKU the order asks for. Each SKU it lost stock of is planned again as
    a whole (what it still holds of it plus what it lost, never what was dispatched), by the
    same rules as a new reservation: its region first, one warehouse rather than a split. On
    success: StockReserved with the order's whole new allocation. Otherwise it is short like a
    new request would be: it gives up everything it holds and waits in the backorder queues
    (or is refused) by the policy its request carried. It keeps its claim over orders already
    waiting: what it held was promised before they queued."""
    events: list[DomainEvent] = [
        ReservationRevoked(
            order_id=order_id, sku=r.sku, warehouse=r.warehouse, quantity=r.quantity, reason=reason
        )
        for r in revoked
    ]
    need: dict[str, int] = {}
    for revocation in revoked:
        need[revocation.sku] = need.get(revocation.sku, 0) + revocation.quantity
    kept = {sku: dict(stocks[sku].allocations.get(order_id, {})) for sku in need}
    let_go = {
        sku: [StockDeallocated(sku=sku, order_id=order_id, warehouses=held)] if held else []
        for sku, held in kept.items()
    }
    plans = {
        sku: plan_allocation(_folded(stocks[sku], let_go[sku]), sum(kept[sku].values()) + quantity, preferred)
        for sku, quantity in need.items()
    }
    skus: dict[str, list[DomainEvent]] = {}
    found = {sku: plan for sku, plan in plans.items() if plan is not None}
    if len(found) == len(plans):
        for sku, plan in found.items():
            skus[sku] = [*let_go[sku], StockAllocated(sku=sku, order_id=order_id, warehouses=plan)]
        allocations = tuple(
            Allocation(sku=sku, warehouse=warehouse, quantity=quantity)
            for sku in sorted(wanted_by(reservation).keys() | need.keys())
            for warehouse, quantity in sorted(_held_after(stocks[sku], order_id, skus.get(sku, [])).items())
        )
        return Decision([*events, StockReserved(order_id=order_id, allocations=allocations)], skus)
    wanted = wanted_by(reservation)
    for sku, stock in stocks.items():
        if order_id in stock.allocations:
            skus[sku] = [
                StockDeallocated(sku=sku, order_id=order_id, warehouses=dict(stock.allocations[order_id]))
            ]
    missing = tuple(
        SkuQuantity(sku=sku, quantity=quantity - max(stocks[sku].total_available(), 0))
        for sku, quantity in need.items()
        if plans[sku] is None
    )
    if reservation.backorder:
        for item in missing:
            skus.setdefault(item.sku, []).append(
                BackorderQueued(sku=item.sku, order_id=order_id, quantity=wanted.get(item.sku, item.quantity))
            )
    lines = reservation.lines or tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in sorted(wanted.items()))
    shortage = StockShortage(
        order_id=order_id,
        lines=lines,
        region=reservation.region,
        missing=missing,
        backordered=reservation.backorder,
    )
    return Decision([*events, shortage], skus)


def _folded(stock: SkuStock, events: Sequence[DomainEvent]) -> SkuStock:
    for event in events:
        stock = evolve_stock(stock, event)
    return stock


def _held_after(stock: SkuStock, order_id: str, events: Sequence[DomainEvent]) -> Mapping[str, int]:
    allocated = [e for e in events if isinstance(e, StockAllocated)]
    return allocated[-1].warehouses if allocated else stock.allocations.get(order_id, {})
