"""Inline projector: keeps the inventory query tables in step with the events."""

from __future__ import annotations

import json

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderMoved,
    BackorderQueued,
    BackorderResized,
    ReservationAdjusted,
    ReservationConsumed,
    StockAllocated,
    StockConsumed,
    StockDeallocated,
    StockDispatched,
    StockReceived,
    StockReleased,
    StockReserved,
    StockShortage,
    WarehouseRegistered,
)
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

_RECEIVE = Sql(
    "INSERT INTO stock_levels (sku, warehouse, on_hand, reserved) VALUES (:sku, :wh, :qty, 0)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = stock_levels.on_hand + :qty"
)
# A plain UPDATE: stock is only ever allocated where it was received, and an upsert would
# check its (negative) insert values against the reserved >= 0 constraint.
_CHANGE_RESERVED = Sql(
    "UPDATE stock_levels SET reserved = reserved + :delta WHERE sku = :sku AND warehouse = :wh"
)
# Goods that left for an order were on hand and reserved for it: both fall.
_DISPATCH = Sql(
    "UPDATE stock_levels SET on_hand = on_hand - :qty, reserved = reserved - :qty"
    " WHERE sku = :sku AND warehouse = :wh"
)
_UPSERT_RESERVATION = Sql(
    "INSERT INTO reservations (order_id, status, allocations, missing, updated_at)"
    " VALUES (:order_id, :status, CAST(:allocations AS jsonb), CAST(:missing AS jsonb), :at)"
    " ON CONFLICT (order_id) DO UPDATE SET status = :status,"
    " allocations = CAST(:allocations AS jsonb), missing = CAST(:missing AS jsonb), updated_at = :at"
)

_BOOK_RECEIPT = Sql(
    "INSERT INTO stock_receipts (receipt_id, sku, warehouse, quantity, received_at)"
    " VALUES (:r, :sku, :wh, :qty, :at) ON CONFLICT DO NOTHING"
)
_ADD_WAREHOUSE = Sql("INSERT INTO warehouses VALUES (:c, :n, :r) ON CONFLICT DO NOTHING")
_QUEUE = Sql("INSERT INTO backorders VALUES (:s, :o, :q, :at) ON CONFLICT DO NOTHING")
_DEQUEUE = Sql("DELETE FROM backorders WHERE sku = :s AND order_id = :o")
_RESIZE = Sql("UPDATE backorders SET quantity = :q WHERE sku = :s AND order_id = :o")
# The receiving order waits where the giver did: just before it (the queue is read in
# queued_at order). Written under the receiver's row key only, so it must not depend on the
# giver's row being there yet: without it the receiver queues at the event's time (its place
# in the read model only; the SKU's events decide who is served).
_MOVE_IN = Sql(
    "INSERT INTO backorders (sku, order_id, quantity, queued_at) VALUES (:s, :o, :q, COALESCE("
    " (SELECT queued_at - interval '1 microsecond' FROM backorders WHERE sku = :s AND order_id = :giver),"
    " :at)) ON CONFLICT (sku, order_id) DO UPDATE SET quantity = backorders.quantity + :q,"
    " queued_at = LEAST(backorders.queued_at, EXCLUDED.queued_at)"
)
_MOVE_OUT = Sql(
    "UPDATE backorders SET quantity = quantity - :q WHERE sku = :s AND order_id = :o AND quantity > :q"
)
_MOVED_AWAY = Sql("DELETE FROM backorders WHERE sku = :s AND order_id = :o AND quantity <= :q")


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, WarehouseRegistered):
        writes.add(
            _ADD_WAREHOUSE, {"c": event.code, "n": event.name, "r": event.region}, ("warehouse", event.code)
        )
    elif isinstance(event, StockReceived):
        writes.add(
            _RECEIVE,
            {"sku": event.sku, "wh": event.warehouse, "qty": event.quantity},
            ("stock", event.sku, event.warehouse),
        )
        writes.add(
            _BOOK_RECEIPT,
            {
                "r": event.receipt_id,
                "sku": event.sku,
                "wh": event.warehouse,
                "qty": event.quantity,
                "at": envelope.occurred_at,
            },
            ("receipt", event.receipt_id),
        )
    elif isinstance(event, StockAllocated | StockDeallocated):
        sign = 1 if isinstance(event, StockAllocated) else -1
        for wh, qty in event.warehouses.items():
            writes.add(
                _CHANGE_RESERVED, {"sku": event.sku, "wh": wh, "delta": sign * qty}, ("stock", event.sku, wh)
            )
    elif isinstance(event, StockDispatched | StockConsumed):
        writes.add(
            _DISPATCH,
            {"sku": event.sku, "wh": event.warehouse, "qty": event.quantity},
            ("stock", event.sku, event.warehouse),
        )
    elif isinstance(event, BackorderQueued):
        writes.add(
            _QUEUE,
            {"s": event.sku, "o": event.order_id, "q": event.quantity, "at": envelope.occurred_at},
            ("backorder", event.sku, event.order_id),
        )
    elif isinstance(event, BackorderDequeued):
        writes.add(_DEQUEUE, {"s": event.sku, "o": event.order_id}, ("backorder", event.sku, event.order_id))
    elif isinstance(event, BackorderResized):
        row = ("backorder", event.sku, event.order_id)
        writes.add(_RESIZE, {"s": event.sku, "o": event.order_id, "q": event.quantity}, row)
    elif isinstance(event, BackorderMoved):
        _backorder_moved(writes, envelope, event)
    elif isinstance(event, ReservationAdjusted):
        _reservation_adjusted(writes, envelope, event)
    elif isinstance(event, StockReserved | StockShortage | StockReleased | ReservationConsumed):
        status = {
            StockReserved: "reserved",
            StockReleased: "released",
            ReservationConsumed: "consumed",
        }.get(type(event), "backordered" if getattr(event, "backordered", False) else "refused")
        writes.add(
            _UPSERT_RESERVATION,
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
            ("reservation", event.order_id),
        )


def _backorder_moved(writes: WriteBatch, envelope: Envelope, event: BackorderMoved) -> None:
    giver, taker = event.from_order_id, event.to_order_id
    writes.add(
        _MOVE_IN,
        {"s": event.sku, "o": taker, "q": event.quantity, "giver": giver, "at": envelope.occurred_at},
        ("backorder", event.sku, taker),
    )
    for statement in (_MOVED_AWAY, _MOVE_OUT):
        writes.add(
            statement, {"s": event.sku, "o": giver, "q": event.quantity}, ("backorder", event.sku, giver)
        )


def _reservation_adjusted(writes: WriteBatch, envelope: Envelope, event: ReservationAdjusted) -> None:
    """An amendment's answer, or a move's to one of its sources: the order's reservation as
    it now is (as the reservation aggregate folds it)."""
    status = "released" if not event.lines else "backordered" if event.waiting else "reserved"
    writes.add(
        _UPSERT_RESERVATION,
        {
            "order_id": event.order_id,
            "status": status,
            "allocations": json.dumps([a.model_dump() for a in event.allocations]),
            "missing": json.dumps([m.model_dump() for m in event.missing]),
            "at": envelope.occurred_at,
        },
        ("reservation", event.order_id),
    )
