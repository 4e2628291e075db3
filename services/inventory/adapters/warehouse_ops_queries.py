"""Read-side queries for warehouse operations: transfers, stock counts, low-stock alerts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def skus_in(conn: AsyncConnection, warehouse: str) -> list[str]:
    """Every SKU the warehouse has held (or has on its way to it)."""
    rows = await conn.execute(
        text("SELECT sku FROM stock_levels WHERE warehouse = :w ORDER BY sku"), {"w": warehouse}
    )
    return [row.sku for row in rows]


async def transfer(conn: AsyncConnection, transfer_id: str) -> dict[str, Any] | None:
    header = (
        await conn.execute(
            text(
                "SELECT transfer_id, reference, from_warehouse, to_warehouse, status, requested_at,"
                " updated_at FROM transfers WHERE transfer_id = :t"
            ),
            {"t": transfer_id},
        )
    ).first()
    if header is None:
        return None
    lines = await conn.execute(
        text(
            "SELECT sku, quantity, received, written_off FROM transfer_lines WHERE transfer_id = :t"
            " ORDER BY sku"
        ),
        {"t": transfer_id},
    )
    write_offs = await conn.execute(
        text(
            "SELECT sku, quantity, reason, written_off_at FROM transfer_write_offs WHERE transfer_id = :t"
            " ORDER BY written_off_at, sku"
        ),
        {"t": transfer_id},
    )
    on_the_way = header.status in ("dispatched", "partially_received")
    return {
        **header._mapping,
        "lines": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "received": line.received,
                "written_off": line.written_off,
                "in_transit": line.quantity - line.received - line.written_off if on_the_way else 0,
            }
            for line in lines
        ],
        "write_offs": [dict(row._mapping) for row in write_offs],
    }


async def stock_count(conn: AsyncConnection, count_id: str) -> dict[str, Any] | None:
    header = (
        await conn.execute(
            text(
                "SELECT count_id, warehouse, whole_warehouse, status, started_at, posted_at, posted_by"
                " FROM stock_counts WHERE count_id = :c"
            ),
            {"c": count_id},
        )
    ).first()
    if header is None:
        return None
    rows = await conn.execute(
        text("SELECT sku, expected, counted, book FROM stock_count_lines WHERE count_id = :c ORDER BY sku"),
        {"c": count_id},
    )
    lines = []
    for row in rows:
        counted = row.counted is not None
        lines.append(
            {
                "sku": row.sku,
                "expected": row.expected,
                "counted": row.counted,
                # what moved between the snapshot and the count: not a variance
                "movements": row.book - row.expected if counted else None,
                "variance": row.counted - row.book if counted else None,
            }
        )
    return {**header._mapping, "lines": lines}


async def open_low_stock_alerts(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT a.sku, a.warehouse, a.available AS available_when_detected,"
            " coalesce(s.on_hand - s.reserved, 0) AS available, r.min, r.max,"
            " greatest(r.max - coalesce(s.on_hand - s.reserved, 0), 0) AS suggested_quantity,"
            " a.detected_at"
            " FROM low_stock_alerts a"
            " JOIN reorder_points r ON r.sku = a.sku AND r.warehouse = a.warehouse"
            " LEFT JOIN stock_levels s ON s.sku = a.sku AND s.warehouse = a.warehouse"
            " ORDER BY a.detected_at, a.sku, a.warehouse"
        )
    )
    return [dict(row._mapping) for row in rows]
