"""The reports' queries over the views of migrations/0002_reporting_views.sql (and the later
migrations that replace or add views).

Each report is a `Table`: its columns and an async stream of rows (dicts, column -> value),
so JSON answers and file exports read the same rows, and a large export is written while the
rows are still arriving from the database (a server-side cursor) instead of all at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting.domain.reports import (
    AGEING_BUCKETS,
    FUNNEL_STAGES,
    Period,
    ageing_bucket,
    funnel,
    rate,
)

Row = dict[str, Any]
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Table:
    """A report as rows: `columns` in order, `rows` streamed."""

    name: str
    columns: tuple[str, ...]
    rows: AsyncIterator[Row]


async def _stream(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> AsyncIterator[Row]:
    result = await conn.stream(text(sql), params)
    async for row in result.mappings():
        yield dict(row)


async def _listed(rows: Sequence[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


def _period(column: str) -> str:
    return (
        f"(CAST(:start AS timestamptz) IS NULL OR {column} >= CAST(:start AS timestamptz))"
        f" AND (CAST(:end AS timestamptz) IS NULL OR {column} < CAST(:end AS timestamptz))"
    )


def _period_params(period: Period) -> dict[str, Any]:
    return {"start": period.start, "end": period.end}


# -- orders -------------------------------------------------------------------------------------

ORDER_DIMENSION_SQL = {
    "status": "status",
    "customer": "customer_id",
    "product": "sku",
    "region": "region",
    "channel": "channel",
    "warehouse": "warehouse",
    "day": "to_char(placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "week": "to_char(placed_at AT TIME ZONE 'UTC', 'IYYY-\"W\"IW')",
    "month": "to_char(placed_at AT TIME ZONE 'UTC', 'YYYY-MM')",
}
ORDER_FIGURES = ("orders", "units", "net_amount", "tax_amount", "gross_amount")
# An order merged into another: its units and money are counted in that one (its lines in
# report_order_lines have none), and the order itself only in a breakdown by status.
MERGED = "merged"


def orders(
    conn: AsyncConnection,
    group_by: Sequence[str],
    period: Period,
    channel: str | None,
    region: str | None,
) -> Table:
    """Orders placed in the period (by placed_at, UTC days, ISO weeks), grouped by `group_by`
    and currency: money of different currencies is never added up. Merged orders are left
    out, but for a row of their own (no units, no money) when grouped by status."""
    keys = [f"{ORDER_DIMENSION_SQL[name]} AS {name}" for name in group_by]
    merged = "" if "status" in group_by else f" AND status <> '{MERGED}'"
    grouping = ", ".join([*group_by, "currency"])
    ordering = ", ".join(f"{name} NULLS FIRST" for name in [*group_by, "currency"])
    sql = (
        f"SELECT {', '.join([*keys, 'currency'])}, count(DISTINCT order_id) AS orders,"
        " sum(units) AS units, sum(net_amount) AS net_amount, sum(tax_amount) AS tax_amount,"
        " sum(gross_amount) AS gross_amount"
        " FROM report_order_lines"
        f" WHERE {_period('placed_at')}"
        " AND (CAST(:channel AS text) IS NULL OR channel = CAST(:channel AS text))"
        " AND (CAST(:region AS text) IS NULL OR region = CAST(:region AS text))"
        f"{merged} GROUP BY {grouping} ORDER BY {ordering}"
    )
    params = {**_period_params(period), "channel": channel, "region": region}
    return Table("orders", (*group_by, "currency", *ORDER_FIGURES), _stream(conn, sql, params))


# -- sales ranking --------------------------------------------------------------------------------

RANKING_SQL = {"product": "sku", "customer": "customer_id", "region": "region"}
# What an order that never came to be (cancelled, rejected) sold: nothing; a merged order's
# sales are the order's it was merged into.
NOT_SOLD = "('cancelled', 'rejected', 'merged')"


def sales_ranking(conn: AsyncConnection, by: str, period: Period, top: int) -> Table:
    """The `top` products, customers or regions by revenue (net of tax) per currency, with
    the units and orders behind it; ties broken by key."""
    sql = (
        "SELECT rank, key, currency, orders, units, revenue FROM ("
        f" SELECT {RANKING_SQL[by]} AS key, currency, count(DISTINCT order_id) AS orders,"
        " sum(units) AS units, sum(net_amount) AS revenue,"
        f" row_number() OVER (PARTITION BY currency ORDER BY sum(net_amount) DESC, {RANKING_SQL[by]}) AS rank"
        " FROM report_order_lines"
        f" WHERE status NOT IN {NOT_SOLD} AND {_period('placed_at')}"
        f" GROUP BY {RANKING_SQL[by]}, currency"
        ") ranked WHERE rank <= :top ORDER BY currency, rank"
    )
    return Table(
        f"sales-ranking-by-{by}",
        ("rank", "key", "currency", "orders", "units", "revenue"),
        _stream(conn, sql, {**_period_params(period), "top": top}),
    )


# -- payments and receivables ---------------------------------------------------------------------

PAYMENT_COLUMNS = (
    "currency",
    "invoiced",
    "collected",
    "refunded",
    "outstanding",
    "not_due",
    *(f"overdue_{name.replace('-', '_')}" for name, _, _ in AGEING_BUCKETS),
    # Added after the others, so files read by column position keep their columns.
    "credited",
)


# Money a split or merge moved from one order's invoice to another's (billing's PaymentReceived
# with this method): collected once already, on the invoice it was paid to.
TRANSFER = "transfer"


def _days_past_due(due_at: datetime, as_of: datetime) -> int:
    return int((as_of - due_at).total_seconds() // 86400)


def _bucket_column(bucket: str) -> str:
    return "not_due" if bucket == "not_due" else f"overdue_{bucket.replace('-', '_')}"


async def payments(conn: AsyncConnection, period: Period, as_of: datetime | None) -> Table:
    """Per currency: invoiced (invoices issued in the period, void ones not counted; as they
    stand after the order desk's changes), collected (not counting transfers between
    invoices), refunded and credited (returns' credit notes, the part paid back included) in
    the period, and what the period's invoices still owe after their credit notes, aged as of
    `as_of` (default now) in buckets of days past due."""
    params = _period_params(period)
    as_of = as_of or datetime.now(UTC)
    figures: dict[str, Row] = {}

    def row(currency: str) -> Row:
        return figures.setdefault(
            currency, {column: ZERO for column in PAYMENT_COLUMNS} | {"currency": currency}
        )

    for sql, column in (
        (
            "SELECT currency, sum(total) AS amount FROM invoices"
            f" WHERE status <> 'void' AND {_period('issued_at')} GROUP BY currency",
            "invoiced",
        ),
        (
            "SELECT currency, sum(amount) AS amount FROM report_payments WHERE outcome = 'succeeded'"
            f" AND method <> '{TRANSFER}' AND currency IS NOT NULL AND {_period('recorded_at')}"
            " GROUP BY currency",
            "collected",
        ),
        (
            f"SELECT currency, sum(amount) AS amount FROM report_refunds WHERE currency IS NOT NULL"
            f" AND {_period('issued_at')} GROUP BY currency",
            "refunded",
        ),
        (
            "SELECT currency, sum(amount) AS amount FROM report_credit_notes WHERE currency IS NOT NULL"
            f" AND {_period('issued_at')} GROUP BY currency",
            "credited",
        ),
    ):
        for found in (await conn.execute(text(sql), params)).mappings():
            row(found["currency"])[column] = found["amount"]
    owed = await conn.execute(
        text(
            "SELECT currency, outstanding, due_at FROM report_invoices"
            f" WHERE outstanding > 0 AND {_period('issued_at')}"
        ),
        params,
    )
    for invoice in owed.mappings():
        figures_of = row(invoice["currency"])
        figures_of["outstanding"] += invoice["outstanding"]
        bucket = _bucket_column(ageing_bucket(_days_past_due(invoice["due_at"], as_of)))
        figures_of[bucket] += invoice["outstanding"]
    return Table("payments", PAYMENT_COLUMNS, _listed([figures[c] for c in sorted(figures)]))


RECEIVABLE_COLUMNS = (
    "customer_id",
    "invoice_id",
    "order_id",
    "currency",
    "total",
    "amount_paid",
    "outstanding",
    "issued_at",
    "due_at",
    "days_past_due",
    "bucket",
    "credited",
)


def receivables(conn: AsyncConnection, customer: str | None, as_of: datetime | None) -> Table:
    """Every open invoice that still owes something after its credit notes, by customer,
    oldest due first."""
    as_of = as_of or datetime.now(UTC)
    sql = (
        "SELECT customer_id, invoice_id, order_id, currency, total, amount_paid, outstanding,"
        " issued_at, due_at, credited FROM report_invoices WHERE outstanding > 0"
        " AND (CAST(:customer AS text) IS NULL OR customer_id = CAST(:customer AS text))"
        " ORDER BY customer_id, due_at, invoice_id"
    )

    async def aged() -> AsyncIterator[Row]:
        async for invoice in _stream(conn, sql, {"customer": customer}):
            days = _days_past_due(invoice["due_at"], as_of)
            yield {**invoice, "days_past_due": days, "bucket": ageing_bucket(days)}

    return Table("receivables", RECEIVABLE_COLUMNS, aged())


# -- inventory ------------------------------------------------------------------------------------

INVENTORY_COLUMNS = (
    "sku",
    "warehouse",
    "on_hand",
    "reserved",
    "available",
    "in_transit",
    "backordered",
    "stock_outs",
    "dispatched",
    "turnover",
)


def inventory(
    conn: AsyncConnection,
    warehouse: str | None,
    sku: str | None,
    period: Period,
    as_of: datetime | None,
) -> Table:
    """Levels per SKU and warehouse at `as_of` (default now); in the period: how often the
    shelf emptied (stock_outs), units dispatched, and turnover (dispatched / on hand at
    `as_of`). Backorders belong to no warehouse: their row has warehouse NULL."""
    filters = (
        "(CAST(:warehouse AS text) IS NULL OR warehouse = CAST(:warehouse AS text))"
        " AND (CAST(:sku AS text) IS NULL OR sku = CAST(:sku AS text))"
    )
    sql = (
        "WITH levels AS ("
        " SELECT sku, warehouse, sum(on_hand) AS on_hand, sum(reserved) AS reserved,"
        " sum(in_transit) AS in_transit, sum(backordered) AS backordered FROM stock_movements"
        f" WHERE {filters}"
        " AND (CAST(:as_of AS timestamptz) IS NULL OR moved_at <= CAST(:as_of AS timestamptz))"
        " GROUP BY sku, warehouse"
        "), flows AS ("
        " SELECT sku, warehouse, count(*) FILTER (WHERE stock_out) AS stock_outs,"
        " COALESCE(sum(-on_hand) FILTER (WHERE kind = 'dispatched'), 0) AS dispatched"
        f" FROM report_stock_history WHERE {filters} AND {_period('moved_at')} GROUP BY sku, warehouse"
        ")"
        " SELECT l.sku, NULLIF(l.warehouse, '') AS warehouse, l.on_hand, l.reserved,"
        " l.on_hand - l.reserved AS available, l.in_transit, l.backordered,"
        " COALESCE(f.stock_outs, 0) AS stock_outs, COALESCE(f.dispatched, 0) AS dispatched,"
        " CASE WHEN l.on_hand > 0 THEN round(COALESCE(f.dispatched, 0)::numeric / l.on_hand, 4)"
        " END AS turnover"
        " FROM levels l LEFT JOIN flows f ON f.sku = l.sku AND f.warehouse = l.warehouse"
        " WHERE l.warehouse <> '' OR l.backordered <> 0"
        " ORDER BY l.sku, l.warehouse"
    )
    params = {**_period_params(period), "warehouse": warehouse, "sku": sku, "as_of": as_of}
    return Table("inventory", INVENTORY_COLUMNS, _stream(conn, sql, params))


# -- fulfilment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fulfilment:
    funnel: list[Row]
    cancellations: list[Row]
    rejections: list[Row]
    time_to_confirmation: Row
    time_to_delivery: Row
    needs_attention: int


# A milestone whose own status was skipped (two in one transaction) is timed by the next one
# the order entered.
_TO_CONFIRMATION = (
    "extract(epoch FROM COALESCE(confirmed_at, shipped_at, delivered_at, completed_at) - placed_at)"
)
_TO_DELIVERY = "extract(epoch FROM COALESCE(delivered_at, completed_at) - placed_at)"
FULFILMENT_COLUMNS = ("section", "item", "orders", "rate", "p50_seconds", "p95_seconds")


async def fulfilment(conn: AsyncConnection, period: Period) -> Fulfilment:
    """Orders placed in the period: how far they got, why they ended early, how long the way
    to confirmation and to delivery took (p50, p95), and how many need attention now. A
    merged order goes on as the order it was merged into: it is not counted."""
    params = _period_params(period)
    where = _period("placed_at")
    counts = (
        (
            await conn.execute(
                text(
                    "SELECT count(*) AS placed,"
                    " count(*) FILTER (WHERE confirmed_reached) AS confirmed,"
                    " count(*) FILTER (WHERE shipped_reached) AS shipped,"
                    " count(*) FILTER (WHERE delivered_reached) AS delivered,"
                    " count(*) FILTER (WHERE completed_reached) AS completed,"
                    " count(*) FILTER (WHERE status = 'needs_attention') AS needs_attention,"
                    f" percentile_disc(0.5) WITHIN GROUP (ORDER BY {_TO_CONFIRMATION}) AS confirm_p50,"
                    f" percentile_disc(0.95) WITHIN GROUP (ORDER BY {_TO_CONFIRMATION}) AS confirm_p95,"
                    f" percentile_disc(0.5) WITHIN GROUP (ORDER BY {_TO_DELIVERY}) AS deliver_p50,"
                    f" percentile_disc(0.95) WITHIN GROUP (ORDER BY {_TO_DELIVERY}) AS deliver_p95"
                    f" FROM report_order_milestones WHERE {where} AND status <> '{MERGED}'"
                ),
                params,
            )
        )
        .mappings()
        .one()
    )
    stages = funnel({stage: int(counts[stage]) for stage in FUNNEL_STAGES})

    async def ended(status: str) -> list[Row]:
        found = await conn.execute(
            text(
                "SELECT COALESCE(status_reason, '') AS reason, count(*) AS orders"
                f" FROM report_order_milestones WHERE status = :status AND {where}"
                " GROUP BY 1 ORDER BY 2 DESC, 1"
            ),
            {**params, "status": status},
        )
        return [
            {
                "reason": r["reason"],
                "orders": int(r["orders"]),
                "rate": rate(int(r["orders"]), int(counts["placed"])),
            }
            for r in found.mappings()
        ]

    def seconds(value: Any) -> Decimal | None:
        return None if value is None else Decimal(value).quantize(Decimal("0.001"))

    return Fulfilment(
        funnel=[
            {
                "stage": s.stage,
                "orders": s.orders,
                "conversion_from_previous": s.conversion_from_previous,
                "conversion_from_placed": s.conversion_from_placed,
            }
            for s in stages
        ],
        cancellations=await ended("cancelled"),
        rejections=await ended("rejected"),
        time_to_confirmation={
            "p50_seconds": seconds(counts["confirm_p50"]),
            "p95_seconds": seconds(counts["confirm_p95"]),
        },
        time_to_delivery={
            "p50_seconds": seconds(counts["deliver_p50"]),
            "p95_seconds": seconds(counts["deliver_p95"]),
        },
        needs_attention=int(counts["needs_attention"]),
    )


def fulfilment_table(report: Fulfilment) -> Table:
    """The fulfilment report as one table for a file: a row per funnel stage, per reason an
    order was cancelled or rejected, per timing, and the orders needing attention."""
    blank: Row = dict.fromkeys(FULFILMENT_COLUMNS)
    rows: list[Row] = [
        blank
        | {
            "section": "funnel",
            "item": s["stage"],
            "orders": s["orders"],
            "rate": s["conversion_from_placed"],
        }
        for s in report.funnel
    ]
    rows += [
        blank | {"section": "cancelled", "item": r["reason"], "orders": r["orders"], "rate": r["rate"]}
        for r in report.cancellations
    ]
    rows += [
        blank | {"section": "rejected", "item": r["reason"], "orders": r["orders"], "rate": r["rate"]}
        for r in report.rejections
    ]
    rows.append(
        blank | {"section": "timing", "item": "placement_to_confirmation", **report.time_to_confirmation}
    )
    rows.append(blank | {"section": "timing", "item": "placement_to_delivery", **report.time_to_delivery})
    rows.append(
        blank | {"section": "needs_attention", "item": "needs_attention", "orders": report.needs_attention}
    )
    return Table("fulfilment", FULFILMENT_COLUMNS, _listed(rows))


# -- production -----------------------------------------------------------------------------------

PRODUCTION_COLUMNS = (
    "sku",
    "production_orders",
    "planned_quantity",
    "completed_quantity",
    "lead_time_p50_seconds",
    "quality_pass_rate",
    "late_orders",
)


def production(conn: AsyncConnection, period: Period) -> Table:
    """Per SKU, production orders created in the period: planned vs completed quantities, lead
    time, the share of quality checks passed and how many finished (or are still open) late."""
    sql = (
        "SELECT sku, count(*) AS production_orders, sum(planned_quantity) AS planned_quantity,"
        " sum(completed_quantity) AS completed_quantity,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY lead_time_seconds) AS lead_time_p50_seconds,"
        " CASE WHEN sum(quality_passed + quality_failed) > 0 THEN"
        "  round(sum(quality_passed)::numeric / sum(quality_passed + quality_failed), 4)"
        " END AS quality_pass_rate,"
        " count(*) FILTER (WHERE late) AS late_orders"
        f" FROM report_production WHERE {_period('created_at')} GROUP BY sku ORDER BY sku"
    )
    return Table("production", PRODUCTION_COLUMNS, _stream(conn, sql, _period_params(period)))
