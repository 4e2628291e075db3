"""Inline projector: keeps the inventory query tables in step with the events."""

from __future__ import annotations

import json

import asyncpg

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderQueued,
    StockAllocated,
    StockDeallocated,
    StockReceived,
    StockReleased,
    StockReserved,
    StockShortage,
    WarehouseRegistered,
)
from libs.runtime.db import Sql

_RECEIVE = Sql(
    "INSERT INTO stock_levels (sku, warehouse, on_hand, reserved) VALUES (:sku, :wh, :qty, 0)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = stock_levels.on_hand + :qty"
)
# A plain UPDATE: stock is only ever allocated where it was received, and an upsert would
# check its (negative) insert values against the reserved >= 0 constraint.
_CHANGE_RESERVED = Sql(
    "UPDATE stock_levels SET reserved = reserved + :delta WHERE sku = :sku AND warehouse = :wh"
)
_UPSERT_RESERVATION = Sql(
    "INSERT INTO reservations (order_id, status, allocations, missing, updated_at)"
    " VALUES (:order_id, :status, CAST(:allocations AS jsonb), CAST(:missing AS jsonb), :at)"
    " ON CONFLICT (order_id) DO UPDATE SET status = :status,"
    " allocations = CAST(:allocations AS jsonb), missing = CAST(:missing AS jsonb), updated_at = :at"
)

_ADD_WAREHOUSE = Sql("INSERT INTO warehouses VALUES (:c, :n, :r) ON CONFLICT DO NOTHING")
_QUEUE = Sql("INSERT INTO backorders VALUES (:s, :o, :q, :at) ON CONFLICT DO NOTHING")
_DEQUEUE = Sql("DELETE FROM backorders WHERE sku = :s AND order_id = :o")


async def project(db: asyncpg.Connection, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, WarehouseRegistered):
        await _ADD_WAREHOUSE.execute(db, {"c": event.code, "n": event.name, "r": event.region})
    elif isinstance(event, StockReceived):
        await _RECEIVE.execute(db, {"sku": event.sku, "wh": event.warehouse, "qty": event.quantity})
    elif isinstance(event, StockAllocated | StockDeallocated):
        sign = 1 if isinstance(event, StockAllocated) else -1
        await _CHANGE_RESERVED.execute_many(
            db,
            [{"sku": event.sku, "wh": wh, "delta": sign * qty} for wh, qty in event.warehouses.items()],
        )
    elif isinstance(event, BackorderQueued):
        await _QUEUE.execute(
            db, {"s": event.sku, "o": event.order_id, "q": event.quantity, "at": envelope.occurred_at}
        )
    elif isinstance(event, BackorderDequeued):
        await _DEQUEUE.execute(db, {"s": event.sku, "o": event.order_id})
    elif isinstance(event, StockReserved | StockShortage | StockReleased):
        status = {
            StockReserved: "reserved",
            StockReleased: "released",
        }.get(type(event), "backordered" if getattr(event, "backordered", False) else "refused")
        await _UPSERT_RESERVATION.execute(
            db,
            {
                "order_id": event.order_id,
                "status": status,
                "allocations": json.dumps(
                    [a.model_dump() for a in getattr(event, "allocations", ())]
                    if isinstance(event, StockReserved)
                    else []
                ),
                "missing": json.dumps([m.model_dump() for m in getattr(event, "missing", ())]),
                "at": envelope.occurred_at,
            },
        )
