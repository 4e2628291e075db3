"""Inventory use cases: each loads aggregates, asks the domain, and records the events in
the caller's unit of work (one transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import NAMESPACE_URL, uuid5

from libs.domain import InvalidRequest
from libs.events import Decoded
from libs.events.base import DomainEvent
from libs.events.inventory import (
    AdjustReservation,
    BackorderDequeued,
    ConsumeStock,
    CreateShipments,
    MoveReservations,
    ReceiveStock,
    ReleaseStock,
    ReserveStock,
    StockReceived,
)
from libs.runtime import inbox
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import queries
from services.inventory.app import shipments
from services.inventory.domain import reservation as reservation_domain
from services.inventory.domain import reservation_changes
from services.inventory.domain import warehouse as warehouse_domain
from services.inventory.domain.reorder import low_stock_events
from services.inventory.domain.reservation import RESERVATION, Decision, Reservation
from services.inventory.domain.stock import (
    SKU,
    BackorderPolicy,
    Receipt,
    SkuStock,
    check_repeated_receipt,
    decide_receipt,
)
from services.inventory.domain.stock import evolve as evolve_stock
from services.inventory.settings import backorder_policy


@dataclass
class LoadedSkus:
    """SKU aggregates loaded in this unit of work, with the versions they were loaded at."""

    states: dict[str, SkuStock] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    async def ensure(self, uow: UnitOfWork, skus: Iterable[str]) -> dict[str, SkuStock]:
        for sku in skus:
            if sku not in self.states:
                self.states[sku], self.versions[sku] = await uow.load(SKU, sku)
        return self.states

    async def record(self, uow: UnitOfWork, sku: str, events: list[DomainEvent]) -> None:
        if not events:
            return
        self.versions[sku] = await uow.record(SKU, sku, self.versions[sku], events)
        state = self.states[sku]
        for event in events:
            state = evolve_stock(state, event)
        self.states[sku] = state
        uow.before_flush(("low-stock", sku), lambda: _follow_low_stock(uow, sku))


async def _follow_low_stock(uow: UnitOfWork, sku: str) -> None:
    """Open or close the SKU's low-stock alerts on the stock this unit of work leaves it with,
    whatever moved it (a reservation, a receipt, a transfer, an adjustment, a dispatch)."""
    stock, version = await uow.load(SKU, sku)
    alerts = low_stock_events(stock)
    if alerts:
        await uow.record(SKU, sku, version, alerts)


async def _warehouses_in_region(uow: UnitOfWork, region: str | None) -> list[str]:
    # Asked alike by most messages of a consumed batch; warehouses are rarely registered.
    return await uow.memo(("warehouses", region), lambda: queries.warehouses_in_region(uow.conn, region))


async def _apply(uow: UnitOfWork, order_id: str, version: int, decision: Decision, skus: LoadedSkus) -> None:
    for sku, events in decision.skus.items():
        await skus.record(uow, sku, events)
    if decision.reservation:
        await uow.record(RESERVATION, order_id, version, decision.reservation)


async def preload(uow: UnitOfWork, batch: Sequence[Decoded]) -> None:
    """The reservations and SKUs a batch of inventory commands will load, in two round trips."""
    kinds = (
        ReserveStock | ReleaseStock | CreateShipments | ConsumeStock | AdjustReservation | MoveReservations
    )
    commands = [d.message for d in batch if isinstance(d.message, kinds)]
    sources = [s.from_order_id for c in commands if isinstance(c, MoveReservations) for s in c.sources]
    await uow.preload(RESERVATION, [*(c.order_id for c in commands), *sources])
    await uow.preload(SKU, [line.sku for c in commands if isinstance(c, ReserveStock) for line in c.lines])


async def reserve_stock(uow: UnitOfWork, decoded: Decoded) -> None:
    command = decoded.message
    if not isinstance(command, ReserveStock):  # routed by type, so a bug if it happens
        raise TypeError(f"reserve_stock was given a {type(command).__name__}")
    reservation, version = await uow.load(RESERVATION, command.order_id)
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, {line.sku for line in command.lines})
    preferred = await _warehouses_in_region(uow, command.region)
    decision = reservation_domain.decide_reserve(
        reservation,
        command.order_id,
        command.lines,
        command.region,
        command.backorder,
        stocks,
        preferred,
        backorder_policy(),
    )
    await _apply(uow, command.order_id, version, decision, skus)


async def release_stock(uow: UnitOfWork, decoded: Decoded) -> None:
    command = decoded.message
    if not isinstance(command, ReleaseStock):  # routed by type, so a bug if it happens
        raise TypeError(f"release_stock was given a {type(command).__name__}")
    reservation, version = await uow.load(RESERVATION, command.order_id)
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, reservation_domain.skus_held(reservation))
    decision = reservation_domain.decide_release(reservation, command.order_id, command.reason, stocks)
    await _apply(uow, command.order_id, version, decision, skus)
    await shipments.cancel_order_shipments(uow, command.order_id, command.reason)
    if reservation.status == "reserved":
        # Freed stock may be exactly what a backordered order is waiting for.
        for sku in decision.skus:
            await serve_backorders(uow, sku, skus)


async def adjust_reservation(uow: UnitOfWork, decoded: Decoded) -> None:
    """An amendment: the order's reservation follows its new lines (only the difference)."""
    command = decoded.message
    if not isinstance(command, AdjustReservation):  # routed by type, so a bug if it happens
        raise TypeError(f"adjust_reservation was given a {type(command).__name__}")
    reservation, version = await uow.load(RESERVATION, command.order_id)
    skus = LoadedSkus()
    wanted = reservation_domain.skus_held(reservation) | {line.sku for line in command.lines}
    stocks = await skus.ensure(uow, sorted(wanted))
    decision = reservation_changes.decide_adjust(
        reservation,
        command.order_id,
        command.amendment_id,
        command.lines,
        command.backorder,
        stocks,
        await _warehouses_in_region(uow, reservation.region),
        backorder_policy(),
        await shipments.order_shipments(uow, command.order_id),
        command.cancel_shipments,
    )
    await _apply_desk(uow, decision, {command.order_id: version}, skus)


async def move_reservations(uow: UnitOfWork, decoded: Decoded) -> None:
    """A split or a merge: units of the sources' reservations move to a new order's."""
    command = decoded.message
    if not isinstance(command, MoveReservations):  # routed by type, so a bug if it happens
        raise TypeError(f"move_reservations was given a {type(command).__name__}")
    target, version = await uow.load(RESERVATION, command.order_id)
    versions = {command.order_id: version}
    sources: list[reservation_changes.Source] = []
    wanted: set[str] = set()
    for move in command.sources:
        reservation, versions[move.from_order_id] = await uow.load(RESERVATION, move.from_order_id)
        wanted |= reservation_domain.skus_held(reservation) | {line.sku for line in move.lines}
        sources.append(
            reservation_changes.Source(
                move.from_order_id,
                reservation,
                reservation_domain.merge_lines(move.lines),
                await _warehouses_in_region(uow, reservation.region),
                await shipments.order_shipments(uow, move.from_order_id),
            )
        )
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, sorted(wanted))
    decision = reservation_changes.decide_move(
        target,
        command.order_id,
        command.move_id,
        sources,
        command.region,
        command.backorder,
        stocks,
        await _warehouses_in_region(uow, command.region),
        backorder_policy(),
    )
    await _apply_desk(uow, decision, versions, skus)


async def _apply_desk(
    uow: UnitOfWork, decision: reservation_changes.DeskDecision, versions: dict[str, int], skus: LoadedSkus
) -> None:
    """Record an amendment's or a move's events in this unit of work; stock it gave back (or
    a queue it changed) serves the orders waiting at once. A repeated command is answered again as it was the
    first time: the answers are sent, not recorded (they changed nothing)."""
    for sku, events in decision.skus.items():
        await skus.record(uow, sku, events)
    for order_id, events in decision.reservations.items():
        await uow.record(RESERVATION, order_id, versions[order_id], events)
    await shipments.record(uow, decision.shipments)
    for sku in sorted(decision.to_serve):
        await serve_backorders(uow, sku, skus)
    for answer in decision.repeated:
        await uow.send(answer, key=answer.order_id)


async def consume_stock(uow: UnitOfWork, decoded: Decoded) -> None:
    """Production used a production order's reserved components (the reservation is keyed
    by the production order's id, as a sales order's is by the order's)."""
    command = decoded.message
    if not isinstance(command, ConsumeStock):  # routed by type, so a bug if it happens
        raise TypeError(f"consume_stock was given a {type(command).__name__}")
    reservation, version = await uow.load(RESERVATION, command.order_id)
    skus = LoadedSkus()
    await skus.ensure(uow, reservation_domain.skus_held(reservation))
    decision = reservation_domain.decide_consume(reservation, command.order_id)
    await _apply(uow, command.order_id, version, decision, skus)


async def receive_produced_stock(uow: UnitOfWork, decoded: Decoded) -> None:
    """Finished goods from production: a receipt like any other (once per receipt id)."""
    command = decoded.message
    if not isinstance(command, ReceiveStock):  # routed by type, so a bug if it happens
        raise TypeError(f"receive_produced_stock was given a {type(command).__name__}")
    await receive_stock(uow, command.sku, command.warehouse, command.quantity, command.receipt_id)


async def register_warehouse(uow: UnitOfWork, code: str, name: str, region: str) -> bool:
    state, version = await uow.load(warehouse_domain.WAREHOUSE, code)
    events = warehouse_domain.decide_register(state, code, name, region)
    await uow.record(warehouse_domain.WAREHOUSE, code, version, events)
    return bool(events)


async def receive_stock(uow: UnitOfWork, sku: str, warehouse: str, quantity: int, receipt_id: str) -> bool:
    """Book a receipt (once per receipt id) and serve the SKU's backorders, oldest first.
    False if this receipt was booked before; refused if its id was booked for other stock."""
    if not await queries.warehouse_exists(uow.conn, warehouse):
        raise InvalidRequest("unknown_warehouse", f"warehouse {warehouse!r} is not registered")
    if not await inbox.claim(uow.conn, "stock-receipts", uuid5(NAMESPACE_URL, f"receipt:{receipt_id}")):
        booked = _booked_in(uow, receipt_id) or await queries.receipt(uow.conn, receipt_id)
        if booked is not None:
            check_repeated_receipt(booked, Receipt(receipt_id, sku, warehouse, quantity))
        return False
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, [sku])
    await skus.record(uow, sku, decide_receipt(stocks[sku], sku, warehouse, quantity, receipt_id))
    await serve_backorders(uow, sku, skus)
    return True


def _booked_in(uow: UnitOfWork, receipt_id: str) -> Receipt | None:
    """A receipt booked earlier in this unit of work (a group of concurrent requests): not in
    the stock_receipts table until it flushes."""
    for event in uow.recorded:
        if isinstance(event, StockReceived) and event.receipt_id == receipt_id:
            return Receipt(receipt_id, event.sku, event.warehouse, event.quantity)
    return None


async def serve_backorders(uow: UnitOfWork, sku: str, skus: LoadedSkus) -> None:
    """Reserve for waiting orders in arrival order. Under first-in first-out, stop at the
    first that still cannot be served, so a later, smaller order never jumps the queue; under
    fill-what-fits, go on down the queue to the orders that fit, as long as the orders before
    them have not been passed too often (SkuStock.may_take). After each order served, start
    again from the head: the stock, and who may pass whom, changed."""
    policy = backorder_policy()
    while await _serve_one(uow, sku, skus, policy):
        pass


async def _serve_one(uow: UnitOfWork, sku: str, skus: LoadedSkus, policy: BackorderPolicy) -> bool:
    """Serve (or drop, if stale) the first queued order that can be; False if none can."""
    stocks = await skus.ensure(uow, [sku])
    for order_id, _ in stocks[sku].backorders:
        reservation, version = await uow.load(RESERVATION, order_id)
        if reservation.status != "backordered":
            # A stale queue entry (released meanwhile): drop it and look again.
            await skus.record(uow, sku, [BackorderDequeued(sku=sku, order_id=order_id)])
            return True
        if await _try_serve(uow, reservation, version, skus, policy):
            return True
        if policy.mode_of(sku) == "fifo" or stocks[sku].total_available() == 0:
            return False
    return False


async def _try_serve(
    uow: UnitOfWork, reservation: Reservation, version: int, skus: LoadedSkus, policy: BackorderPolicy
) -> bool:
    wanted = reservation_domain.merge_lines(reservation.lines)
    stocks = await skus.ensure(uow, wanted)
    preferred = await _warehouses_in_region(uow, reservation.region)
    plans = reservation_domain.try_allocate(reservation.order_id, wanted, stocks, preferred, policy)
    if plans is None:
        return False
    decision = reservation_domain.allocation_events(reservation.order_id, plans, stocks)
    await _apply(uow, reservation.order_id, version, decision, skus)
    # An order that had shipments before its stock was revoked ships again.
    await shipments.follow_allocation(uow, reservation.order_id, "reserved again from stock that arrived")
    return True
