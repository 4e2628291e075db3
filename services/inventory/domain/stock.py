"""Stock of one SKU across warehouses, its allocations to orders and its backorder queue.

Pure: no I/O, no clock. `decide_*` functions return the events a command produces; `evolve`
folds an event into the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from libs.domain import AggregateKind, DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderMoved,
    BackorderQueued,
    BackorderResized,
    LowStockCleared,
    LowStockDetected,
    ReorderPointSet,
    StockAdjusted,
    StockAllocated,
    StockConsumed,
    StockDeallocated,
    StockDispatched,
    StockReceived,
    StockTransferredIn,
    StockTransferredOut,
    StockTransitWrittenOff,
)

_EMPTY: Mapping[str, int] = MappingProxyType({})

# How a SKU's backorder queue shares stock with later orders (docs/backorders.md):
# "fifo": nobody takes stock while someone waits before them; "fill": a later order that fits
# in what is available takes it, unless an order waiting before it has been passed
# `max_passes` times already, which then waits for nobody else.
BackorderMode = Literal["fifo", "fill"]


@dataclass(frozen=True)
class BackorderPolicy:
    mode: BackorderMode = "fifo"
    by_sku: Mapping[str, BackorderMode] = field(default_factory=dict)
    max_passes: int = 3

    def mode_of(self, sku: str) -> BackorderMode:
        return self.by_sku.get(sku, self.mode)


FIFO = BackorderPolicy()


@dataclass(frozen=True)
class SkuStock:
    sku: str = ""
    on_hand: Mapping[str, int] = field(default_factory=dict)
    # order id -> {warehouse: quantity}; reserved stock stays on hand until it ships
    allocations: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # orders waiting for this SKU, in arrival order: (order id, quantity)
    backorders: tuple[tuple[str, int], ...] = ()
    # order id -> how often a later order took this SKU's stock while it waited (fill policy)
    passes: Mapping[str, int] = field(default_factory=dict)
    # transfer id -> (from warehouse, to warehouse, quantity still on its way): on hand nowhere
    in_transit: Mapping[str, tuple[str, str, int]] = field(default_factory=dict)
    # warehouse -> (min, max); `low_stock` holds the warehouses whose alert is open
    reorder_points: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    low_stock: frozenset[str] = frozenset()

    def in_transit_to(self, warehouse: str) -> int:
        return sum(q for _, to, q in self.in_transit.values() if to == warehouse)

    def in_transit_from(self, warehouse: str) -> int:
        return sum(q for source, _, q in self.in_transit.values() if source == warehouse)

    def reserved(self, warehouse: str) -> int:
        return sum(by_wh.get(warehouse, 0) for by_wh in self.allocations.values())

    def available(self, warehouse: str) -> int:
        return self.on_hand.get(warehouse, 0) - self.reserved(warehouse)

    def total_available(self) -> int:
        return sum(self.available(w) for w in self.on_hand)

    def is_queued(self, order_id: str) -> bool:
        return any(queued == order_id for queued, _ in self.backorders)

    def queue_ahead_of(self, order_id: str | None) -> bool:
        """True if some other order is waiting for this SKU before `order_id`."""
        return bool(self.waiting_before(order_id))

    def waiting_before(self, order_id: str | None) -> list[str]:
        """The orders waiting for this SKU that came before `order_id` (all of them, if it is
        not waiting itself: it came after them)."""
        ahead = []
        for queued, _ in self.backorders:
            if queued == order_id:
                break
            ahead.append(queued)
        return ahead

    def may_take(self, order_id: str, policy: BackorderPolicy) -> bool:
        """Whether `order_id` may take available stock of this SKU now, given who waits."""
        ahead = self.waiting_before(order_id)
        if not ahead:
            return True
        if policy.mode_of(self.sku) == "fifo":
            return False
        return all(self.passes.get(waiting, 0) < policy.max_passes for waiting in ahead)


def evolve(state: SkuStock, event: DomainEvent) -> SkuStock:
    if isinstance(event, StockReceived):
        on_hand = dict(state.on_hand)
        on_hand[event.warehouse] = on_hand.get(event.warehouse, 0) + event.quantity
        return replace(state, sku=event.sku, on_hand=on_hand)
    if isinstance(event, StockAllocated):
        passed = state.waiting_before(event.order_id)
        return replace(
            state,
            sku=event.sku,
            allocations={**state.allocations, event.order_id: event.warehouses},
            passes={**state.passes, **{q: state.passes.get(q, 0) + 1 for q in passed}}
            if passed
            else state.passes,
        )
    if isinstance(event, StockDeallocated):
        return _deallocated(state, event)
    if isinstance(event, StockDispatched | StockConsumed):
        return _dispatched(state, event)
    if isinstance(event, BackorderQueued):
        return replace(state, sku=event.sku, backorders=(*state.backorders, (event.order_id, event.quantity)))
    if isinstance(event, BackorderDequeued):
        passes = {q: n for q, n in state.passes.items() if q != event.order_id}
        return replace(
            state, backorders=tuple(b for b in state.backorders if b[0] != event.order_id), passes=passes
        )
    if isinstance(event, BackorderResized):
        resized = tuple((o, event.quantity if o == event.order_id else q) for o, q in state.backorders)
        return replace(state, backorders=resized)
    if isinstance(event, BackorderMoved):
        return _backorder_moved(state, event)
    return _moved(state, event)


def _deallocated(state: SkuStock, event: StockDeallocated) -> SkuStock:
    """The event names the units given back: all the order held (it then leaves the
    allocations) or part of it (what it keeps keeps its place among them)."""
    allocations: dict[str, Mapping[str, int]] = {}
    for order_id, by_wh in state.allocations.items():
        if order_id == event.order_id:
            by_wh = {
                w: q - event.warehouses.get(w, 0) for w, q in by_wh.items() if q > event.warehouses.get(w, 0)
            }
        if by_wh:
            allocations[order_id] = by_wh
    return replace(state, allocations=allocations)


def _backorder_moved(state: SkuStock, event: BackorderMoved) -> SkuStock:
    """The receiving order waits at the earlier of the two places (the giver's, or its own
    if it already waited before it), for what it had plus what it got; the giver's entry
    shrinks, or leaves when nothing is left. Passes go with the place."""
    giver, taker = event.from_order_id, event.to_order_id
    queue = [order_id for order_id, _ in state.backorders]
    if giver not in queue:
        return state
    had = dict(state.backorders)
    takes_givers_place = taker not in queue or queue.index(giver) < queue.index(taker)
    entries: list[tuple[str, int]] = []
    for order_id, quantity in state.backorders:
        if order_id == giver:
            if takes_givers_place:
                entries.append((taker, had.get(taker, 0) + event.quantity))
            if quantity > event.quantity:
                entries.append((giver, quantity - event.quantity))
        elif order_id == taker:
            if not takes_givers_place:
                entries.append((taker, quantity + event.quantity))
        else:
            entries.append((order_id, quantity))
    passes = dict(state.passes)
    if takes_givers_place and giver in passes:
        passes[taker] = passes[giver]
    if giver not in dict(entries):
        passes.pop(giver, None)
    return replace(state, backorders=tuple(entries), passes=passes)


def _moved(state: SkuStock, event: DomainEvent) -> SkuStock:
    """Warehouse operations: transfers, adjustments, reorder points and their alerts."""
    if isinstance(event, StockAdjusted):
        on_hand = {**state.on_hand, event.warehouse: state.on_hand.get(event.warehouse, 0) + event.delta}
        return replace(state, sku=event.sku, on_hand=on_hand)
    if isinstance(event, StockTransferredOut):
        source = event.from_warehouse
        on_hand = {**state.on_hand, source: state.on_hand.get(source, 0) - event.quantity}
        in_transit = {**state.in_transit, event.transfer_id: (source, event.to_warehouse, event.quantity)}
        return replace(state, sku=event.sku, on_hand=on_hand, in_transit=in_transit)
    if isinstance(event, StockTransferredIn | StockTransitWrittenOff):
        in_transit = dict(state.in_transit)
        unknown = (event.from_warehouse, event.to_warehouse, 0)
        source, destination, moving = in_transit.pop(event.transfer_id, unknown)
        if moving > event.quantity:
            in_transit[event.transfer_id] = (source, destination, moving - event.quantity)
        if isinstance(event, StockTransitWrittenOff):
            return replace(state, in_transit=in_transit)
        arrived = {**state.on_hand, destination: state.on_hand.get(destination, 0) + event.quantity}
        return replace(state, on_hand=arrived, in_transit=in_transit)
    if isinstance(event, ReorderPointSet):
        points = {**state.reorder_points, event.warehouse: (event.min, event.max)}
        return replace(state, sku=event.sku, reorder_points=points)
    if isinstance(event, LowStockDetected):
        return replace(state, low_stock=state.low_stock | {event.warehouse})
    if isinstance(event, LowStockCleared):
        return replace(state, low_stock=state.low_stock - {event.warehouse})
    return state


def _dispatched(state: SkuStock, event: StockDispatched | StockConsumed) -> SkuStock:
    """The goods left (shipped, or consumed by production): they are neither on hand nor
    reserved for the order any more. What the order still holds keeps its place among the
    allocations: the place says how new the reservation is (the newest are revoked first),
    and a dispatch does not make it newer."""
    on_hand = {**state.on_hand, event.warehouse: state.on_hand.get(event.warehouse, 0) - event.quantity}
    allocations: dict[str, Mapping[str, int]] = {}
    for order_id, by_wh in state.allocations.items():
        if order_id == event.order_id:
            held = {**by_wh, event.warehouse: by_wh.get(event.warehouse, 0) - event.quantity}
            by_wh = {warehouse: quantity for warehouse, quantity in held.items() if quantity > 0}
        if by_wh:
            allocations[order_id] = by_wh
    return replace(state, on_hand=on_hand, allocations=allocations)


SKU = AggregateKind[SkuStock]("sku", SkuStock, evolve)


def plan_allocation(
    stock: SkuStock, quantity: int, preferred_warehouses: Sequence[str]
) -> dict[str, int] | None:
    """Where to take `quantity` from, or None if all warehouses together cannot cover it.

    Preferred warehouses (the customer's region) come first; then the fullest ones, so an
    order is split across as few warehouses as possible.
    """
    if stock.total_available() < quantity:
        return None
    preferred = [w for w in preferred_warehouses if stock.available(w) > 0]
    others = sorted(
        (w for w in stock.on_hand if w not in preferred and stock.available(w) > 0),
        key=lambda w: (-stock.available(w), w),
    )
    # A single preferred warehouse that covers everything beats splitting.
    for warehouse in preferred + others:
        if stock.available(warehouse) >= quantity:
            return {warehouse: quantity}
    plan: dict[str, int] = {}
    remaining = quantity
    for warehouse in preferred + others:
        take = min(stock.available(warehouse), remaining)
        if take:
            plan[warehouse] = take
            remaining -= take
        if not remaining:
            return plan
    return None  # pragma: no cover - total_available said it fits


def decide_receipt(
    stock: SkuStock, sku: str, warehouse: str, quantity: int, receipt_id: str
) -> list[DomainEvent]:
    if quantity <= 0:
        raise InvalidRequest("invalid_quantity", "a receipt's quantity must be a positive integer")
    return [StockReceived(sku=sku, warehouse=warehouse, quantity=quantity, receipt_id=receipt_id)]


@dataclass(frozen=True)
class Receipt:
    """What one receipt id books: a quantity of a SKU into a warehouse."""

    receipt_id: str
    sku: str
    warehouse: str
    quantity: int

    def __str__(self) -> str:
        return f"{self.sku} x {self.quantity} at {self.warehouse}"


def check_repeated_receipt(booked: Receipt, again: Receipt) -> None:
    """A receipt id names one delivery. Sent again with the same stock it is a repeat that
    changes nothing; with other stock it is a mistake the sender has to hear about."""
    if (booked.sku, booked.warehouse, booked.quantity) != (again.sku, again.warehouse, again.quantity):
        raise DomainError(
            "receipt_reused",
            f"receipt {again.receipt_id} was already used for {booked}; this request says {again}",
        )


def decide_dispatch(
    stock: SkuStock, order_id: str, warehouse: str, quantity: int, shipment_id: str
) -> list[DomainEvent]:
    """Take an order's reserved goods out of a warehouse (a shipment dispatched or collected).
    Only what the order holds there can leave, so nothing leaves twice."""
    held = stock.allocations.get(order_id, _EMPTY).get(warehouse, 0)
    if held < quantity:
        raise DomainError(
            "not_reserved",
            f"shipment {shipment_id} takes {quantity} of {stock.sku} from {warehouse}, but order"
            f" {order_id} holds {held} there",
        )
    return [
        StockDispatched(
            sku=stock.sku,
            order_id=order_id,
            warehouse=warehouse,
            quantity=quantity,
            shipment_id=shipment_id,
        )
    ]
