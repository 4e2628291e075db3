"""Stock levels at a past time, folded from the SKU's event stream (GET /stock/{sku}?as_of=)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from itertools import takewhile
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import DomainEvent, registry
from libs.runtime import eventstore
from libs.runtime.db import driver_connection
from services.inventory.domain.stock import SKU, SkuStock


async def stock_as_of(
    conn: AsyncConnection, sku: str, as_of: datetime, only_warehouses: Collection[str] | None = None
) -> dict[str, Any] | None:
    """The SKU's stock as GET /stock/{sku} showed it at `as_of`, or None if nothing had happened
    to it by then. The cut is the longest prefix of the stream (by version) recorded at or before
    `as_of`: every answer is a state the stock really passed through."""
    stream = await eventstore.read_stream(await driver_connection(conn), SKU.stream_id(sku))
    history = list(takewhile(lambda e: e.occurred_at <= as_of, stream))
    if not history:
        return None
    stock = SKU.initial()
    for e in history:
        event = registry.load(e.event_type, e.event_version, e.payload)
        if isinstance(event, DomainEvent):  # a SKU's stream holds nothing else
            stock = SKU.evolve(stock, event)
    return stock_view(sku, stock, only_warehouses)


def stock_view(sku: str, stock: SkuStock, only_warehouses: Collection[str] | None) -> dict[str, Any]:
    """The same document as adapters.queries.stock_of, from the aggregate's state."""
    known = set(stock.on_hand) | {w for moving in stock.in_transit.values() for w in moving[:2]}
    if only_warehouses is not None:
        known &= set(only_warehouses)
    warehouses = [
        {
            "warehouse": warehouse,
            "on_hand": stock.on_hand.get(warehouse, 0),
            "reserved": stock.reserved(warehouse),
            "available": stock.available(warehouse),
            "in_transit_in": stock.in_transit_to(warehouse),
            "in_transit_out": stock.in_transit_from(warehouse),
        }
        for warehouse in sorted(known)
    ]
    return {
        "sku": sku,
        "warehouses": warehouses,
        "on_hand": sum(w["on_hand"] for w in warehouses),
        "reserved": sum(w["reserved"] for w in warehouses),
        "available": sum(w["available"] for w in warehouses),
        "in_transit_in": sum(w["in_transit_in"] for w in warehouses),
        "in_transit_out": sum(w["in_transit_out"] for w in warehouses),
        "in_transit": sum(w["in_transit_out"] for w in warehouses),
        "backorders": [{"order_id": order, "quantity": quantity} for order, quantity in stock.backorders],
    }
