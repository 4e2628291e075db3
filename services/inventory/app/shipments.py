"""Shipment use cases: create an order's shipments, move them through the warehouse, take
their goods out of stock, follow the carrier, follow the order's allocation when its stock is
re-planned, cancel them with the order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial

from libs.domain import DomainError, NotFound
from libs.events import Decoded
from libs.events.base import DomainEvent
from libs.events.inventory import CreateShipments, ShipmentCreated, ShipmentDispatched
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import shipment_queries
from services.inventory.domain import shipment as shipment_domain
from services.inventory.domain.product import PRODUCT
from services.inventory.domain.reservation import RESERVATION, skus_held
from services.inventory.domain.shipment import SHIPMENT, CarrierReport, Shipment
from services.inventory.domain.stock import SKU, decide_dispatch

log = logging.getLogger(__name__)

# A warehouse step: the shipment as it is -> the events (none if it already is there).
Step = Callable[[Shipment], list[DomainEvent]]


async def create_shipments(uow: UnitOfWork, decoded: Decoded) -> None:
    """One shipment per warehouse holding part of the order's reservation that has no live
    shipment of the order (none for a repeated command); none if it holds no reservation."""
    command = decoded.message
    if not isinstance(command, CreateShipments):  # routed by type, so a bug if it happens
        raise TypeError(f"create_shipments was given a {type(command).__name__}")
    reservation, _ = await uow.load(RESERVATION, command.order_id)
    if reservation.status != "reserved":
        reason = f"CreateShipments for order {command.order_id}: its reservation is {reservation.status}"
        uow.after_commit(partial(log.warning, "%s, nothing to ship", reason))
        return
    weights = {
        sku: (await uow.load(PRODUCT, sku))[0].weight_kg
        for sku in sorted({allocation.sku for allocation in reservation.allocations})
    }
    existing = await order_shipments(uow, command.order_id)
    planned = shipment_domain.decide_create_shipments(
        command.order_id, command.shipping.method, reservation.allocations, weights, existing
    )
    for created in planned:
        shipment, version = await uow.load(SHIPMENT, created.shipment_id)
        if not shipment.exists:
            await uow.record(SHIPMENT, created.shipment_id, version, [created])


async def follow_allocation(uow: UnitOfWork, order_id: str, reason: str) -> None:
    """The order's allocation changed after its shipments were asked for (its stock was
    revoked and reserved again, or it waited and its backorder was filled): its shipments
    follow what it now holds, in the caller's unit of work. Run after the allocation's events
    are recorded; an order without shipments is left to CreateShipments."""
    shipment_ids = await _order_shipment_ids(uow, order_id)
    if not shipment_ids:
        return
    loaded = {shipment_id: await uow.load(SHIPMENT, shipment_id) for shipment_id in shipment_ids}
    reservation, _ = await uow.load(RESERVATION, order_id)
    skus = skus_held(reservation) | {line.sku for s, _ in loaded.values() for line in s.lines}
    held = {sku: (await uow.load(SKU, sku))[0].allocations.get(order_id, {}) for sku in sorted(skus)}
    weights = {sku: (await uow.load(PRODUCT, sku))[0].weight_kg for sku in sorted(skus) if held[sku]}
    decided = shipment_domain.decide_follow_allocation(
        order_id, [shipment for shipment, _ in loaded.values()], held, weights, reason
    )
    for event in decided:
        # A new shipment's stream starts at 0: two units of work creating the same generation
        # at once meet at the (stream_id, version) key, and the loser is run again on fresh state.
        version = loaded[event.shipment_id][1] if event.shipment_id in loaded else 0
        await uow.record(SHIPMENT, event.shipment_id, version, [event])


async def advance(uow: UnitOfWork, shipment_id: str, step: Step) -> bool:
    """Run one warehouse step on a shipment; goods that leave with it leave stock in the same
    transaction. False if the shipment already was where the step takes it."""
    shipment, version = await _load_existing(uow, shipment_id)
    events = step(shipment)
    if not events:
        return False
    await uow.record(SHIPMENT, shipment_id, version, events)
    await _take_goods_out(uow, events)
    return True


async def dispatch(
    uow: UnitOfWork, shipment_id: str, carrier: str | None, tracking_number: str | None
) -> bool:
    if tracking_number is not None:
        holder = await _shipment_tracked_as(uow, tracking_number)
        if holder is not None and holder != shipment_id:
            raise DomainError(
                "tracking_number_in_use",
                f"tracking number {tracking_number} already names shipment {holder}",
            )
    return await advance(
        uow, shipment_id, lambda shipment: shipment_domain.decide_dispatch(shipment, carrier, tracking_number)
    )


async def track(uow: UnitOfWork, tracking_number: str, report: CarrierReport) -> tuple[str, bool]:
    """Apply a carrier's report to the shipment dispatched under `tracking_number`: its id, and
    False if this report was applied before."""
    shipment_id = await _shipment_tracked_as(uow, tracking_number)
    if shipment_id is None:
        raise NotFound(
            "unknown_tracking_number", f"no shipment was dispatched with tracking number {tracking_number}"
        )
    shipment, version = await uow.load(SHIPMENT, shipment_id)
    events = shipment_domain.decide_track(shipment, tracking_number, report)
    if events:
        await uow.record(SHIPMENT, shipment_id, version, events)
    return shipment_id, bool(events)


async def cancel_order_shipments(uow: UnitOfWork, order_id: str, reason: str) -> None:
    """The order was cancelled: cancel its shipments whose goods have not left."""
    for shipment_id in await _order_shipment_ids(uow, order_id):
        shipment, version = await uow.load(SHIPMENT, shipment_id)
        events = shipment_domain.decide_cancel(shipment, reason)
        if events:
            await uow.record(SHIPMENT, shipment_id, version, events)


async def order_shipments(uow: UnitOfWork, order_id: str) -> list[Shipment]:
    """Every shipment of the order, whatever its status."""
    return [(await uow.load(SHIPMENT, s))[0] for s in await _order_shipment_ids(uow, order_id)]


async def record(uow: UnitOfWork, decided: Mapping[str, list[DomainEvent]]) -> None:
    """Append what a decision over an order's shipments decided, per shipment id."""
    for shipment_id, events in decided.items():
        _, version = await uow.load(SHIPMENT, shipment_id)
        await uow.record(SHIPMENT, shipment_id, version, events)


async def _load_existing(uow: UnitOfWork, shipment_id: str) -> tuple[Shipment, int]:
    shipment, version = await uow.load(SHIPMENT, shipment_id)
    if not shipment.exists:
        raise NotFound("unknown_shipment", f"no shipment {shipment_id!r}")
    return shipment, version


async def _take_goods_out(uow: UnitOfWork, events: list[DomainEvent]) -> None:
    for shipment_id, order_id, warehouse, line in shipment_domain.goods_taken(events):
        stock, version = await uow.load(SKU, line.sku)
        taken = decide_dispatch(stock, order_id, warehouse, line.quantity, shipment_id)
        await uow.record(SKU, line.sku, version, taken)


async def _order_shipment_ids(uow: UnitOfWork, order_id: str) -> list[str]:
    """The order's shipments: those committed (the read model) and those created earlier in
    this unit of work (a consumed batch), which the read model shows only after it flushes."""
    created_here = [
        event.shipment_id
        for event in uow.recorded
        if isinstance(event, ShipmentCreated) and event.order_id == order_id
    ]
    committed = await shipment_queries.shipment_ids_of_order(uow.conn, order_id)
    return list(dict.fromkeys([*committed, *created_here]))


async def _shipment_tracked_as(uow: UnitOfWork, tracking_number: str) -> str | None:
    for event in reversed(uow.recorded):
        if isinstance(event, ShipmentDispatched) and event.tracking_number == tracking_number:
            return event.shipment_id
    return await shipment_queries.shipment_tracked_as(uow.conn, tracking_number)
