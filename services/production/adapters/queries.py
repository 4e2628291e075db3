"""Reads of the production query tables (and of a production order's own events)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import DomainEvent, registry
from libs.events.production import BomComponent, BomOperation, WorkCalendar
from libs.runtime import eventstore
from libs.runtime.db import driver_connection
from services.production.domain.bom import Bom
from services.production.domain.production_order import PRODUCTION_ORDER, ProductionOrder
from services.production.domain.work_center import WorkCenter

ACTIVE = ("released", "in_progress")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def work_centers(conn: AsyncConnection) -> dict[str, WorkCenter]:
    rows = await conn.execute(text("SELECT * FROM work_centers ORDER BY code"))
    return {
        r.code: WorkCenter(
            r.code, r.name, r.capacity_minutes_per_day, WorkCalendar.model_validate(r.calendar)
        )
        for r in rows
    }


def work_center_view(centre: WorkCenter) -> dict[str, Any]:
    return {
        "code": centre.code,
        "name": centre.name,
        "capacity_minutes_per_day": centre.capacity_minutes_per_day,
        "calendar": centre.calendar.model_dump(mode="json"),
    }


async def boms(conn: AsyncConnection) -> dict[str, Bom]:
    rows = await conn.execute(text("SELECT * FROM boms"))
    return {
        r.sku: Bom(
            r.sku,
            tuple(BomComponent.model_validate(c) for c in r.components),
            r.output_quantity,
            Decimal(r.scrap_rate),
            tuple(BomOperation.model_validate(o) for o in r.operations),
        )
        for r in rows
    }


async def bom_components(conn: AsyncConnection) -> dict[str, list[str]]:
    """Each manufactured SKU's component SKUs: the graph a new BOM is checked for cycles in."""
    rows = await conn.execute(text("SELECT sku, components FROM boms"))
    return {r.sku: [c["sku"] for c in r.components] for r in rows}


async def manufactured(conn: AsyncConnection, skus: Sequence[str]) -> set[str]:
    """Those of `skus` that have a BOM, unless the catalogue says they are not manufactured."""
    rows = await conn.execute(
        text(
            "SELECT b.sku FROM boms b LEFT JOIN known_products p USING (sku)"
            " WHERE b.sku = ANY(:s) AND coalesce(p.manufactured, true)"
        ),
        {"s": list(skus)},
    )
    return {r.sku for r in rows}


async def catalogue_says_manufactured(conn: AsyncConnection, sku: str) -> bool | None:
    """The catalogue's `manufactured` flag of the SKU; None where the catalogue does not know it."""
    row = (
        await conn.execute(text("SELECT manufactured FROM known_products WHERE sku = :s"), {"s": sku})
    ).first()
    return bool(row.manufactured) if row is not None else None


async def remember_product(conn: AsyncConnection, sku: str, manufactured: bool, version: int) -> None:
    await conn.execute(
        text(
            "INSERT INTO known_products VALUES (:s, :m, :v) ON CONFLICT (sku) DO UPDATE"
            " SET manufactured = EXCLUDED.manufactured, version = EXCLUDED.version"
            " WHERE known_products.version < EXCLUDED.version"
        ),
        {"s": sku, "m": manufactured, "v": version},
    )


async def active_order_ids(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        text("SELECT production_order_id FROM production_orders WHERE status = ANY(:s)"), {"s": list(ACTIVE)}
    )
    return [r.production_order_id for r in rows]


async def open_quantity_for(conn: AsyncConnection, demand_id: str, sku: str) -> int:
    """Units of `sku` open production orders already make for a demand (a sales order, or a
    production order's component)."""
    row = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(quantity), 0) AS q FROM production_orders WHERE sku = :sku"
                " AND status NOT IN ('completed', 'cancelled') AND origin = 'make_to_order'"
                " AND coalesce(parent_production_order_id, sales_order_id) = :demand"
            ),
            {"sku": sku, "demand": demand_id},
        )
    ).one()
    return int(row.q)


async def open_to_stock(conn: AsyncConnection, sku: str, warehouse: str) -> bool:
    row = (
        await conn.execute(
            text(
                "SELECT 1 FROM production_orders WHERE sku = :sku AND warehouse = :wh"
                " AND origin = 'make_to_stock' AND status NOT IN ('completed', 'cancelled') LIMIT 1"
            ),
            {"sku": sku, "wh": warehouse},
        )
    ).first()
    return row is not None


async def serving(conn: AsyncConnection, sales_order_id: str) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT production_order_id FROM production_orders WHERE sales_order_id = :o"
            " AND status NOT IN ('completed', 'cancelled') ORDER BY created_at"
        ),
        {"o": sales_order_id},
    )
    return [r.production_order_id for r in rows]


async def remember_warehouse(conn: AsyncConnection, code: str, region: str) -> None:
    await conn.execute(
        text("INSERT INTO known_warehouses VALUES (:c, :r) ON CONFLICT DO NOTHING"), {"c": code, "r": region}
    )


async def warehouse_known(conn: AsyncConnection, code: str) -> bool:
    row = (await conn.execute(text("SELECT 1 FROM known_warehouses WHERE code = :c"), {"c": code})).first()
    return row is not None


async def warehouse_for(conn: AsyncConnection, region: str | None, default: str | None) -> str | None:
    """Where make-to-order goods go: a warehouse of the order's region, else the default,
    else the first warehouse known."""
    row = (
        await conn.execute(
            text(
                "SELECT code FROM known_warehouses ORDER BY (region = :r) DESC NULLS LAST,"
                " (code = :d) DESC NULLS LAST, code LIMIT 1"
            ),
            {"r": region, "d": default},
        )
    ).first()
    return row.code if row is not None else default


def _order_row(r: Any) -> dict[str, Any]:
    return {
        "production_order_id": r.production_order_id,
        "sku": r.sku,
        "quantity": r.quantity,
        "warehouse": r.warehouse,
        "due": r.due.isoformat(),
        "origin": r.origin,
        "status": r.status,
        "sales_order_id": r.sales_order_id,
        "parent_production_order_id": r.parent_production_order_id,
        "replaces": r.replaces,
        "passed": r.passed,
        "scrapped": r.scrapped,
        "late": r.late,
        "expected_finish": _iso(r.expected_finish),
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
    }


async def list_orders(
    conn: AsyncConnection, status: str | None, sku: str | None, order_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT * FROM production_orders WHERE (CAST(:status AS text) IS NULL OR status = :status)"
            " AND (CAST(:sku AS text) IS NULL OR sku = :sku)"
            " AND (CAST(:o AS text) IS NULL OR sales_order_id = :o)"
            " ORDER BY created_at, production_order_id LIMIT :limit"
        ),
        {"status": status, "sku": sku, "o": order_id, "limit": limit},
    )
    return [_order_row(r) for r in rows]


async def load_order(conn: AsyncConnection, production_order_id: str) -> tuple[ProductionOrder, list[Any]]:
    """The production order rebuilt from its events, and those events (its history)."""
    envelopes = await eventstore.read_stream(
        await driver_connection(conn), PRODUCTION_ORDER.stream_id(production_order_id)
    )
    events = [registry.load(e.event_type, e.event_version, e.payload) for e in envelopes]
    state = PRODUCTION_ORDER.replay([e for e in events if isinstance(e, DomainEvent)])
    return state, envelopes


async def children(conn: AsyncConnection, production_order_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT * FROM production_orders WHERE parent_production_order_id = :p OR replaces = :p"
            " ORDER BY created_at"
        ),
        {"p": production_order_id},
    )
    return [_order_row(r) for r in rows]


def _task_row(r: Any) -> dict[str, Any]:
    return {
        "task_id": r.task_id,
        "production_order_id": r.production_order_id,
        "sku": r.sku,
        "operation": r.operation,
        "work_center": r.work_center,
        "inspection": r.inspected,
        "assignee": r.assignee,
        "status": r.status,
        "quantity_done": r.quantity_done,
        "quantity": r.quantity,
        "planned_start": _iso(r.planned_start),
        "planned_finish": _iso(r.planned_finish),
        "due": r.due.isoformat(),
        "late": r.late,
    }


_TASKS = (
    "SELECT t.*, p.sku, p.quantity, p.due, p.late FROM production_tasks t"
    " JOIN production_orders p USING (production_order_id)"
)


async def list_tasks(
    conn: AsyncConnection, assignee: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"{_TASKS} WHERE (CAST(:a AS text) IS NULL OR t.assignee = :a)"
            " AND (CAST(:s AS text) IS NULL OR t.status = :s)"
            " AND p.status NOT IN ('completed', 'cancelled')"
            " ORDER BY t.planned_start NULLS LAST, p.due, t.task_id LIMIT :limit"
        ),
        {"a": assignee, "s": status, "limit": limit},
    )
    return [_task_row(r) for r in rows]


async def schedule(
    conn: AsyncConnection, work_center: str | None, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    """The planned operations (a Gantt chart's bars) that overlap [start, end)."""
    rows = await conn.execute(
        text(
            f"{_TASKS} WHERE t.planned_start IS NOT NULL AND t.status <> 'done'"
            " AND p.status IN ('released', 'in_progress')"
            " AND (CAST(:wc AS text) IS NULL OR t.work_center = :wc)"
            " AND (CAST(:start AS timestamptz) IS NULL OR t.planned_finish >= :start)"
            " AND (CAST(:end AS timestamptz) IS NULL OR t.planned_start < :end)"
            " ORDER BY t.work_center, t.planned_start, t.task_id"
        ),
        {"wc": work_center, "start": start, "end": end},
    )
    return [_task_row(r) for r in rows]
