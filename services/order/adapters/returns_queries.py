"""Read-side queries about returns, and when an order was delivered (its return window)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from libs.runtime.db import Sql
from services.order.domain.order import ORDER

_DELIVERED_AT = Sql(
    "SELECT max(occurred_at) FROM events WHERE stream_id = :stream AND event_type = 'OrderDelivered'"
)
_ONE = Sql("SELECT * FROM returns WHERE return_id = :r")
_LIST = Sql(
    "SELECT * FROM returns WHERE (CAST(:o AS text) IS NULL OR order_id = :o)"
    " AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY requested_at DESC, return_id LIMIT :limit"
)


async def delivered_at(db: asyncpg.Connection, order_id: str) -> datetime | None:
    """When the order's last shipment arrived (OrderDelivered's time in its stream)."""
    found: datetime | None = await db.fetchval(
        _DELIVERED_AT.text, *_DELIVERED_AT.args({"stream": ORDER.stream_id(order_id)})
    )
    return found


async def return_detail(db: asyncpg.Connection, return_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(_ONE.text, *_ONE.args({"r": return_id}))
    return _view(row) if row is not None else None


async def list_returns(
    db: asyncpg.Connection, order_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await db.fetch(_LIST.text, *_LIST.args({"o": order_id, "s": status, "limit": limit}))
    return [_view(row) for row in rows]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _view(row: Any) -> dict[str, Any]:
    return {
        "return_id": row["return_id"],
        "order_id": row["order_id"],
        "status": row["status"],
        "resolution": row["resolution"],
        "lines": _json(row["lines"]),
        "received": _json(row["received"]),
        "reason": row["reason"],
        "credit_note_id": row["credit_note_id"],
        "refund_id": row["refund_id"],
        "credit_amount": _money(row["credit_amount"]),
        "refund_amount": _money(row["refund_amount"]),
        "replacement_status": row["replacement_status"],
        "attention": row["attention"],
        "requested_by": row["requested_by"],
        "requested_at": row["requested_at"],
        "updated_at": row["updated_at"],
    }
