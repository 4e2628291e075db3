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
    BackorderDequeued,
    CreateShipments,
    ReleaseStock,
    ReserveStock,
    StockReceived,
)
from libs.runtime import inbox
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import queries
from services.inventory.app import shipments
from services.inventory.domain import reservation as reservation_domain
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
    kinds = ReserveStock | ReleaseStock | CreateShipments
    commands = [d.message for d in batch if isinstance(d.message, kinds)]
    await uow.preload(RESERVATION, [c.order_id for c in commands])
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
