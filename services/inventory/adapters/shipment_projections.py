"""Projector for shipments: the `shipments` table, with each shipment's history as it happened."""

from __future__ import annotations

import json
from typing import Any

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import (
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentEvent,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentReadyForPickup,
    ShipmentTracked,
)
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

_CREATE = Sql(
    "INSERT INTO shipments (shipment_id, order_id, warehouse, method, lines, status, weight_kg,"
    " history, created_at, updated_at)"
    " VALUES (:id, :order_id, :warehouse, :method, CAST(:lines AS jsonb), 'pending', :weight,"
    " CAST(:entry AS jsonb), :at, :at) ON CONFLICT DO NOTHING"
)
_MOVE = Sql(
    "UPDATE shipments SET status = :status, updated_at = :at,"
    " history = history || CAST(:entry AS jsonb) WHERE shipment_id = :id"
)
_PACK = Sql(
    "UPDATE shipments SET status = 'packed', weight_kg = coalesce(:weight, weight_kg), parcels = :parcels,"
    " updated_at = :at, history = history || CAST(:entry AS jsonb) WHERE shipment_id = :id"
)
_DISPATCH = Sql(
    "UPDATE shipments SET status = 'dispatched', carrier = :carrier, tracking_number = :tracking,"
    " updated_at = :at, history = history || CAST(:entry AS jsonb) WHERE shipment_id = :id"
)
_TRACK = Sql(
    "UPDATE shipments SET updated_at = :at, history = history || CAST(:entry AS jsonb)"
    " WHERE shipment_id = :id"
)

# The status each event moves a shipment to.
_STATUS_OF: dict[type[ShipmentEvent], str] = {
    ShipmentPicked: "picking",
    ShipmentReadyForPickup: "ready_for_pickup",
    ShipmentCollected: "collected",
    ShipmentDelivered: "delivered",
    ShipmentCancelled: "cancelled",
}


def _entry(status: str, at: str, actor: str, **more: Any) -> str:
    return json.dumps([{"status": status, "at": at, "actor": actor, **more}])


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if not isinstance(event, ShipmentEvent):
        return
    at, actor = envelope.occurred_at, envelope.actor
    row = ("shipment", event.shipment_id)
    common = {"id": event.shipment_id, "at": at}
    if isinstance(event, ShipmentCreated):
        lines = json.dumps([line.model_dump() for line in event.lines])
        writes.add(
            _CREATE,
            {
                **common,
                "order_id": event.order_id,
                "warehouse": event.warehouse,
                "method": event.method,
                "lines": lines,
                "weight": event.weight_kg,
                "entry": _entry("pending", at.isoformat(), actor),
            },
            row,
        )
    elif isinstance(event, ShipmentPacked):
        entry = _entry("packed", at.isoformat(), actor)
        writes.add(
            _PACK, {**common, "weight": event.weight_kg, "parcels": event.parcels, "entry": entry}, row
        )
    elif isinstance(event, ShipmentDispatched):
        entry = _entry("dispatched", at.isoformat(), actor)
        writes.add(
            _DISPATCH,
            {**common, "carrier": event.carrier, "tracking": event.tracking_number, "entry": entry},
            row,
        )
    elif isinstance(event, ShipmentTracked):
        # A carrier's report: when the carrier says it happened, and where.
        entry = _entry(
            event.status,
            event.carrier_occurred_at.isoformat(),
            actor,
            location=event.location,
            tracking_number=event.tracking_number,
        )
        writes.add(_TRACK, {**common, "entry": entry}, row)
    elif type(event) in _STATUS_OF:
        status = _STATUS_OF[type(event)]
        writes.add(_MOVE, {**common, "status": status, "entry": _entry(status, at.isoformat(), actor)}, row)
