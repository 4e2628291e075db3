"""Read-side queries over shipments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_COLUMNS = (
    "shipment_id, order_id, warehouse, method, lines, status, carrier, tracking_number, weight_kg,"
    " parcels, history"
)


def _shipment(row: Any) -> dict[str, Any]:
    return {
        "shipment_id": row.shipment_id,
        "order_id": row.order_id,
        "warehouse": row.warehouse,
        "method": row.method,
        "lines": list(row.lines),
        "status": row.status,
        "carrier": row.carrier,
        "tracking_number": row.tracking_number,
        "weight_kg": None if row.weight_kg is None else str(row.weight_kg),
        "parcels": row.parcels,
        "history": list(row.history),
    }


async def shipment(conn: AsyncConnection, shipment_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM shipments WHERE shipment_id = :i"), {"i": shipment_id}
        )
    ).first()
    return _shipment(row) if row else None


async def shipments_of_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM shipments WHERE order_id = :o ORDER BY warehouse, shipment_id"),
        {"o": order_id},
    )
    return [_shipment(row) for row in rows]


async def shipment_ids_of_order(conn: AsyncConnection, order_id: str) -> list[str]:
    rows = await conn.execute(
        text("SELECT shipment_id FROM shipments WHERE order_id = :o ORDER BY shipment_id"), {"o": order_id}
    )
    return [row.shipment_id for row in rows]


async def shipment_tracked_as(conn: AsyncConnection, tracking_number: str) -> str | None:
    """The shipment dispatched under this tracking number, if any."""
    row = (
        await conn.execute(
            text("SELECT shipment_id FROM shipments WHERE tracking_number = :t LIMIT 1"),
            {"t": tracking_number},
        )
    ).first()
    return str(row.shipment_id) if row else None


async def pick_list(conn: AsyncConnection, warehouse: str) -> list[dict[str, Any]]:
    """What to pick at a warehouse now (shipments pending or picking), per SKU, with the
    shipments each quantity serves, oldest shipment first."""
    rows = await conn.execute(
        text(
            "SELECT line.sku, line.quantity, s.shipment_id, s.order_id, s.status"
            " FROM shipments s, jsonb_to_recordset(s.lines) AS line(sku text, quantity bigint)"
            " WHERE s.warehouse = :w AND s.status IN ('pending', 'picking')"
            " ORDER BY line.sku, s.created_at, s.shipment_id"
        ),
        {"w": warehouse},
    )
    items: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = items.setdefault(row.sku, {"sku": row.sku, "quantity": 0, "shipments": []})
        item["quantity"] += row.quantity
        item["shipments"].append(
            {
                "shipment_id": row.shipment_id,
                "order_id": row.order_id,
                "quantity": row.quantity,
                "status": row.status,
            }
        )
    return list(items.values())
