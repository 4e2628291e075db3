"""Shipments: what one warehouse sends (or hands over) for one order, and how far it got.

Pure: no I/O, no clock. `decide_*` functions return the events a command produces (none when
the shipment already is where the command would take it); `evolve` folds an event into the
state. Which status may follow which is the table `MOVES`; every refusal names both statuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args
from uuid import UUID, uuid5

from libs.domain import AggregateKind, DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import (
    CarrierStatus,
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentReadyForPickup,
    ShipmentStatus,
    ShipmentTracked,
)
from libs.events.values import Allocation, ShippingMethod, SkuQuantity

# Every shipment id is derived from its order, warehouse and generation, so a repeated
# CreateShipments (or one replayed from the topic) names the same shipments and cannot create
# more, and a shipment created again for a warehouse whose earlier one was cancelled (its stock
# re-planned) gets an id of its own.
SHIPMENT_NAMESPACE = UUID("6f1d3c55-2b8e-4c1e-9a55-0c8f5f6d7e21")
# ShipmentCreated.weight_kg's upper bound: a heavier estimate is left unknown.
MAX_WEIGHT_KG = Decimal("100000")

CARRIED: frozenset[ShippingMethod] = frozenset({"standard", "express"})
ANY_METHOD: frozenset[ShippingMethod] = frozenset(get_args(ShippingMethod))


@dataclass(frozen=True)
class Move:
    """A status a shipment may take: from which statuses, for which shipping methods."""

    to: ShipmentStatus
    after: tuple[ShipmentStatus, ...]
    methods: frozenset[ShippingMethod] = ANY_METHOD


MOVES: dict[ShipmentStatus, Move] = {
    move.to: move
    for move in (
        Move("picking", ("pending",)),
        Move("packed", ("picking",)),
        Move("dispatched", ("packed",), CARRIED),
        Move("delivered", ("dispatched",), CARRIED),
        Move("ready_for_pickup", ("packed",), frozenset({"pickup"})),
        Move("collected", ("ready_for_pickup",), frozenset({"pickup"})),
        # Until the goods have left the warehouse.
        Move("cancelled", ("pending", "picking", "packed", "ready_for_pickup")),
    )
}


@dataclass(frozen=True)
class CarrierReport:
    """One thing a carrier said about a parcel; the same report twice is one report."""

    status: CarrierStatus
    location: str
    occurred_at: datetime


@dataclass(frozen=True)
class Shipment:
    shipment_id: str = ""
    order_id: str = ""
    warehouse: str = ""
    method: ShippingMethod = "standard"
    lines: tuple[SkuQuantity, ...] = ()
    status: ShipmentStatus | Literal["none"] = "none"
    carrier: str | None = None
    tracking_number: str | None = None
    weight_kg: Decimal | None = None
    parcels: int = 1
    reports: frozenset[CarrierReport] = frozenset()

    @property
    def exists(self) -> bool:
        return self.status != "none"


def evolve(state: Shipment, event: DomainEvent) -> Shipment:
    if isinstance(event, ShipmentCreated):
        return Shipment(
            shipment_id=event.shipment_id,
            order_id=event.order_id,
            warehouse=event.warehouse,
            method=event.method,
            lines=event.lines,
            status="pending",
            weight_kg=event.weight_kg,
        )
    if isinstance(event, ShipmentPicked):
        return replace(state, status="picking")
    if isinstance(event, ShipmentPacked):
        weight = event.weight_kg if event.weight_kg is not None else state.weight_kg
        return replace(state, status="packed", weight_kg=weight, parcels=event.parcels)
    if isinstance(event, ShipmentDispatched):
        return replace(
            state, status="dispatched", carrier=event.carrier, tracking_number=event.tracking_number
        )
    if isinstance(event, ShipmentReadyForPickup):
        return replace(state, status="ready_for_pickup")
    if isinstance(event, ShipmentCollected):
        return replace(state, status="collected")
    if isinstance(event, ShipmentDelivered):
        return replace(state, status="delivered")
    if isinstance(event, ShipmentCancelled):
        return replace(state, status="cancelled")
    if isinstance(event, ShipmentTracked):
        report = CarrierReport(event.status, event.location, event.carrier_occurred_at)
        return replace(state, reports=state.reports | {report})
    return state


SHIPMENT = AggregateKind[Shipment]("shipment", Shipment, evolve)


class MissingFields(InvalidRequest):
    """The request lacks fields this shipment needs (422 naming each)."""

    def __init__(self, fields: Sequence[str], message: str) -> None:
        super().__init__("missing_fields", message)
        self.fields = tuple(fields)


def shipment_id_for(order_id: str, warehouse: str, generation: int = 0) -> str:
    """Generation 0 is the order's first shipment from the warehouse; each later one the next.
    A warehouse code holds no '#' or '/', so no two (order, warehouse, generation) share a name."""
    name = f"{order_id}/{warehouse}" if generation == 0 else f"{order_id}/{warehouse}#{generation}"
    return str(uuid5(SHIPMENT_NAMESPACE, name))


def _moves_to(shipment: Shipment, to: ShipmentStatus) -> bool:
    """True if `to` is a move from where the shipment is; False if it already is there (a
    repeat that changes nothing); refused (409 naming both statuses) otherwise."""
    if shipment.status == to:
        return False
    move = MOVES[to]
    if shipment.method not in move.methods:
        methods = " and ".join(sorted(move.methods))
        raise DomainError(
            "shipment_transition_refused",
            f"shipment {shipment.shipment_id} is {shipment.status} and ships by {shipment.method}:"
            f" it cannot become {to} (only {methods} shipments do)",
        )
    if shipment.status not in move.after:
        raise DomainError(
            "shipment_transition_refused",
            f"shipment {shipment.shipment_id} is {shipment.status}: it cannot become {to}"
            f" (only from {' or '.join(move.after)})",
        )
    return True


# -- creation ---------------------------------------------------------------------------------


def parcel_weight(
    lines: Iterable[SkuQuantity], catalogue_weights: Mapping[str, Decimal | None]
) -> Decimal | None:
    """The goods' weight when the catalogue knows every SKU's (and it is within the bound)."""
    total = Decimal("0")
    for line in lines:
        weight = catalogue_weights.get(line.sku)
        if weight is None:
            return None
        total += weight * line.quantity
    return total if total <= MAX_WEIGHT_KG else None


def decide_create_shipments(
    order_id: str,
    method: ShippingMethod,
    allocations: Sequence[Allocation],
    catalogue_weights: Mapping[str, Decimal | None],
    existing: Sequence[Shipment],
) -> list[ShipmentCreated]:
    """One shipment per warehouse that holds part of the order's reservation and has no live
    (not cancelled) shipment of the order: a repeated command creates nothing, and one sent
    again after an amendment cancelled the order's shipments ships its allocation as it now
    is, each under the next generation's id of its warehouse."""
    live = {s.warehouse for s in existing if s.status != "cancelled"}
    known = {s.shipment_id for s in existing}
    by_warehouse: dict[str, dict[str, int]] = {}
    for allocation in allocations:
        skus = by_warehouse.setdefault(allocation.warehouse, {})
        skus[allocation.sku] = skus.get(allocation.sku, 0) + allocation.quantity
    created = []
    for warehouse, skus in sorted(by_warehouse.items()):
        if warehouse in live:
            continue
        generation = sum(1 for s in existing if s.warehouse == warehouse)
        while shipment_id_for(order_id, warehouse, generation) in known:
            generation += 1
        lines = tuple(SkuQuantity(sku=sku, quantity=quantity) for sku, quantity in sorted(skus.items()))
        created.append(
            ShipmentCreated(
                shipment_id=shipment_id_for(order_id, warehouse, generation),
                order_id=order_id,
                warehouse=warehouse,
                method=method,
                lines=lines,
                weight_kg=parcel_weight(lines, catalogue_weights),
            )
        )
    return created


# Goods still in the warehouse, the shipment the warehouse is furthest along with first: when
# only some of a warehouse's shipments still fit what the order holds there, those are kept.
NOT_LEFT: tuple[ShipmentStatus, ...] = ("ready_for_pickup", "packed", "picking", "pending")


def decide_follow_allocation(
    order_id: str,
    shipments: Sequence[Shipment],
    held: Mapping[str, Mapping[str, int]],
    catalogue_weights: Mapping[str, Decimal | None],
    reason: str,
) -> list[ShipmentCancelled | ShipmentCreated]:
    """Keep an order's shipments equal to what it holds and has not dispatched, per warehouse.

    `held` is that stock, SKU -> {warehouse: quantity} (a dispatch takes its goods out of it,
    so a shipment that left is neither counted nor touched). Run whenever the order's
    allocation changes after its shipments were asked for (`shipments` is not empty): a
    shipment whose goods have not left and whose lines no longer fit what the order holds at
    its warehouse is cancelled with `reason`; what the shipments kept do not cover (a reduced
    quantity, or stock re-planned to another warehouse) becomes a new shipment, of the next
    generation of its warehouse. Nothing changes when they already match: a repeat is harmless."""
    if not shipments:
        return []  # not asked for yet: CreateShipments ships the allocation as it is then
    room: dict[str, dict[str, int]] = {}
    for sku, by_warehouse in held.items():
        for warehouse, quantity in by_warehouse.items():
            if quantity > 0:
                room.setdefault(warehouse, {})[sku] = quantity
    waiting = sorted(
        (s for s in shipments if s.status in NOT_LEFT),
        key=lambda s: (NOT_LEFT.index(s.status), s.shipment_id),
    )
    decided: list[ShipmentCancelled | ShipmentCreated] = []
    for shipment in waiting:
        free = room.get(shipment.warehouse, {})
        if all(free.get(line.sku, 0) >= line.quantity for line in shipment.lines):
            for line in shipment.lines:
                free[line.sku] -= line.quantity
        else:
            decided.append(
                ShipmentCancelled(shipment_id=shipment.shipment_id, order_id=order_id, reason=reason)
            )
    known = {s.shipment_id for s in shipments}
    method = shipments[0].method
    for warehouse, skus in sorted(room.items()):
        lines = tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in sorted(skus.items()) if q > 0)
        if not lines:
            continue
        generation = sum(1 for s in shipments if s.warehouse == warehouse)
        while shipment_id_for(order_id, warehouse, generation) in known:
            generation += 1
        decided.append(
            ShipmentCreated(
                shipment_id=shipment_id_for(order_id, warehouse, generation),
                order_id=order_id,
                warehouse=warehouse,
                method=method,
                lines=lines,
                weight_kg=parcel_weight(lines, catalogue_weights),
            )
        )
    return decided


# -- the warehouse's steps ----------------------------------------------------------------------


def decide_pick(shipment: Shipment) -> list[DomainEvent]:
    if not _moves_to(shipment, "picking"):
        return []
    return [ShipmentPicked(shipment_id=shipment.shipment_id, order_id=shipment.order_id)]


def decide_pack(shipment: Shipment, weight_kg: Decimal | None = None, parcels: int = 1) -> list[DomainEvent]:
    if not _moves_to(shipment, "packed"):
        return []
    return [
        ShipmentPacked(
            shipment_id=shipment.shipment_id, order_id=shipment.order_id, weight_kg=weight_kg, parcels=parcels
        )
    ]


def decide_dispatch(
    shipment: Shipment, carrier: str | None, tracking_number: str | None
) -> list[DomainEvent]:
    """The goods leave with a carrier. Sent again with the same carrier and tracking number (or
    none) it is a repeat; with others it is refused, since the parcel left under the first."""
    if shipment.status == "dispatched":
        said = (carrier or shipment.carrier, tracking_number or shipment.tracking_number)
        if said != (shipment.carrier, shipment.tracking_number):
            raise DomainError(
                "shipment_already_dispatched",
                f"shipment {shipment.shipment_id} was dispatched with {shipment.carrier}"
                f" {shipment.tracking_number}; this request says {said[0]} {said[1]}",
            )
        return []
    _moves_to(shipment, "dispatched")
    missing = [
        name for name, value in (("carrier", carrier), ("tracking_number", tracking_number)) if not value
    ]
    if missing:
        raise MissingFields(
            missing,
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required to dispatch"
            f" a {shipment.method} shipment",
        )
    return [
        ShipmentDispatched(
            shipment_id=shipment.shipment_id,
            order_id=shipment.order_id,
            warehouse=shipment.warehouse,
            lines=shipment.lines,
            carrier=carrier,
            tracking_number=tracking_number,
        )
    ]


def decide_ready_for_pickup(shipment: Shipment) -> list[DomainEvent]:
    if not _moves_to(shipment, "ready_for_pickup"):
        return []
    return [ShipmentReadyForPickup(shipment_id=shipment.shipment_id, order_id=shipment.order_id)]


def decide_collect(shipment: Shipment) -> list[DomainEvent]:
    if not _moves_to(shipment, "collected"):
        return []
    return [
        ShipmentCollected(
            shipment_id=shipment.shipment_id,
            order_id=shipment.order_id,
            warehouse=shipment.warehouse,
            lines=shipment.lines,
        )
    ]


def decide_deliver(shipment: Shipment) -> list[DomainEvent]:
    if not _moves_to(shipment, "delivered"):
        return []
    return [ShipmentDelivered(shipment_id=shipment.shipment_id, order_id=shipment.order_id)]


def decide_cancel(shipment: Shipment, reason: str) -> list[DomainEvent]:
    """The order was cancelled: a shipment whose goods have not left is cancelled; one that
    left (or was cancelled before) stays as it is. Never refused: it is a compensation."""
    if shipment.status not in MOVES["cancelled"].after:
        return []
    return [ShipmentCancelled(shipment_id=shipment.shipment_id, order_id=shipment.order_id, reason=reason)]


def decide_track(shipment: Shipment, tracking_number: str, report: CarrierReport) -> list[DomainEvent]:
    """A carrier's report joins the shipment's history once; `delivered` also delivers it."""
    if report in shipment.reports:
        return []
    events: list[DomainEvent] = [
        ShipmentTracked(
            shipment_id=shipment.shipment_id,
            order_id=shipment.order_id,
            tracking_number=tracking_number,
            status=report.status,
            location=report.location,
            carrier_occurred_at=report.occurred_at,
        )
    ]
    if report.status == "delivered" and shipment.status == "dispatched":
        events.append(ShipmentDelivered(shipment_id=shipment.shipment_id, order_id=shipment.order_id))
    return events


def goods_taken(events: Iterable[DomainEvent]) -> list[tuple[str, str, str, SkuQuantity]]:
    """What the events take out of a warehouse: (shipment id, order id, warehouse, line)."""
    return [
        (event.shipment_id, event.order_id, event.warehouse, line)
        for event in events
        if isinstance(event, ShipmentDispatched | ShipmentCollected)
        for line in event.lines
    ]
