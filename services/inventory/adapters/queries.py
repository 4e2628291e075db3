"""Read-side queries over the inventory tables (never the event store's internals)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.inventory.domain.stock import Receipt


async def warehouses_in_region(conn: AsyncConnection, region: str | None) -> list[str]:
    if not region:
        return []
    rows = await conn.execute(
        text("SELECT code FROM warehouses WHERE region = :r ORDER BY code"), {"r": region}
    )
    return [row.code for row in rows]


async def warehouse_exists(conn: AsyncConnection, code: str) -> bool:
    row = await conn.execute(text("SELECT 1 FROM warehouses WHERE code = :c"), {"c": code})
    return row.first() is not None


async def receipt(conn: AsyncConnection, receipt_id: str) -> Receipt | None:
    row = (
        await conn.execute(
            text("SELECT sku, warehouse, quantity FROM stock_receipts WHERE receipt_id = :r"),
            {"r": receipt_id},
        )
    ).first()
    return Receipt(receipt_id, row.sku, row.warehouse, row.quantity) if row else None


async def list_warehouses(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT code, name, region FROM warehouses ORDER BY code"))
    return [dict(row._mapping) for row in rows]


async def stock_of(
    conn: AsyncConnection, sku: str, only_warehouses: Collection[str] | None = None
) -> dict[str, Any]:
    """The SKU's stock per warehouse and in total; only over `only_warehouses` if given."""
    rows = (
        await conn.execute(
            text(
                "SELECT warehouse, on_hand, reserved, in_transit_in, in_transit_out FROM stock_levels"
                " WHERE sku = :s ORDER BY warehouse"
            ),
            {"s": sku},
        )
    ).all()
    if only_warehouses is not None:
        rows = [r for r in rows if r.warehouse in only_warehouses]
    waiting = (
        await conn.execute(
            text("SELECT order_id, quantity FROM backorders WHERE sku = :s ORDER BY queued_at, order_id"),
            {"s": sku},
        )
    ).all()
    warehouses = [
        {
            "warehouse": r.warehouse,
            "on_hand": r.on_hand,
            "reserved": r.reserved,
            "available": r.on_hand - r.reserved,
            # on its way between warehouses: in neither one's on hand nor available stock
            "in_transit_in": r.in_transit_in,
            "in_transit_out": r.in_transit_out,
        }
        for r in rows
    ]
    return {
        "sku": sku,
        "warehouses": warehouses,
        "on_hand": sum(w["on_hand"] for w in warehouses),
        "reserved": sum(w["reserved"] for w in warehouses),
        "available": sum(w["available"] for w in warehouses),
        "in_transit_in": sum(w["in_transit_in"] for w in warehouses),
        "in_transit_out": sum(w["in_transit_out"] for w in warehouses),
        # on hand + in transit is what the company owns: a transfer never changes it
        "in_transit": sum(w["in_transit_out"] for w in warehouses),
        "backorders": [{"order_id": w.order_id, "quantity": w.quantity} for w in waiting],
    }


async def reservation_of(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text("SELECT order_id, status, allocations, missing FROM reservations WHERE order_id = :o"),
            {"o": order_id},
        )
    ).first()
    return dict(row._mapping) if row else None
