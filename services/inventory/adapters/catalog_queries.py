"""Read-side queries over the product catalogue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_COLUMNS = "sku, name, category, unit, weight_kg, manufactured, list_prices"


def _product(row: Any) -> dict[str, Any]:
    return {
        "sku": row.sku,
        "name": row.name,
        "category": row.category,
        "unit": row.unit,
        "weight_kg": str(row.weight_kg),
        "manufactured": row.manufactured,
        "list_prices": dict(row.list_prices),
    }


async def product(conn: AsyncConnection, sku: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM products WHERE sku = :s"), {"s": sku})).first()
    return _product(row) if row else None


async def products_page(
    conn: AsyncConnection, category: str | None, after_sku: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Products in SKU order after `after_sku`, and the SKU to continue after (None at the end)."""
    rows = (
        await conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM products"
                " WHERE (CAST(:category AS text) IS NULL OR category = :category)"
                " AND (CAST(:after AS text) IS NULL OR sku > :after)"
                " ORDER BY sku LIMIT :limit"
            ),
            {"category": category, "after": after_sku, "limit": limit + 1},
        )
    ).all()
    items = [_product(row) for row in rows[:limit]]
    return items, (items[-1]["sku"] if len(rows) > limit else None)
