"""Reporting HTTP API: the reports (JSON by default; CSV, XLSX or Parquet by ?format= or the
Accept header) and how fresh their sources are. Every endpoint needs reports:read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.runtime.auth import requires
from libs.runtime.http import runtime_of
from libs.security.principal import Principal
from services.reporting.adapters import queries
from services.reporting.adapters.exports import FORMATS, Format, file_bytes, file_name
from services.reporting.adapters.freshness import FreshnessMonitor
from services.reporting.adapters.queries import Row, Table
from services.reporting.domain import reports
from services.reporting.domain.reports import InvalidParameter, Period, in_utc
from services.reporting.entrypoints.views import (
    FreshnessReport,
    FulfilmentReport,
    InventoryReport,
    OrdersReport,
    PaymentsReport,
    ProductionReport,
    RankingReport,
    ReceivablesReport,
)

router = APIRouter(tags=["reporting"])

Reader = Annotated[Principal, requires("reports:read")]
From = Annotated[datetime | None, Query(alias="from", description="Inclusive; no zone: UTC")]
To = Annotated[datetime | None, Query(alias="to", description="Exclusive; no zone: UTC")]
FormatParameter = Annotated[
    str | None,
    Query(
        alias="format",
        description="json (the default), csv, xlsx or parquet; without it, the Accept header decides",
    ),
]
FILES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report; as a file with ?format=csv|xlsx|parquet or the matching Accept header",
        "content": {media.split(";")[0]: {} for media in FORMATS.values()},
    }
}
# The Accept header's names for the formats, besides their own media types.
ACCEPTED_ALIASES = {"application/x-parquet": "parquet", "application/csv": "csv"}

TableBuilder = Callable[[AsyncConnection], Awaitable[Table] | Table]


def export_format(request: Request, requested: str | None) -> Format | None:
    """The file format asked for, or None for JSON."""
    if requested is not None:
        if requested == "json":
            return None
        if requested not in FORMATS:
            raise InvalidParameter("format", f"one of json, {', '.join(FORMATS)}; not {requested!r}")
        return requested
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    for media in accepted:
        if media in ("application/json", "*/*"):
            return None
        for fmt, media_type in FORMATS.items():
            if media == media_type.split(";")[0]:
                return fmt
        if media in ACCEPTED_ALIASES:
            return ACCEPTED_ALIASES[media]  # type: ignore[return-value]
    return None


async def _table(build: TableBuilder, conn: AsyncConnection) -> Table:
    built = build(conn)
    return built if isinstance(built, Table) else await built


def _file(request: Request, report: str, build: TableBuilder, fmt: Format) -> StreamingResponse:
    """The report as a file, written while its rows are read (the connection stays open
    until the last byte is sent)."""
    engine = runtime_of(request).engine

    async def body() -> AsyncIterator[bytes]:
        async with engine.connect() as conn:
            async for chunk in file_bytes(await _table(build, conn), fmt):
                yield chunk

    name = file_name(report, fmt, datetime.now(UTC))
    return StreamingResponse(
        body(), media_type=FORMATS[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


async def _rows(request: Request, build: TableBuilder) -> list[Row]:
    async with runtime_of(request).engine.connect() as conn:
        return [row async for row in (await _table(build, conn)).rows]


@router.get("/reports/orders", response_model=OrdersReport, responses=FILES)
async def orders_report(
    request: Request,
    _: Reader,
    group_by: Annotated[
        str | None,
        Query(description=f"Comma-separated, combinable: {', '.join(reports.ORDER_DIMENSIONS)}"),
    ] = None,
    start: From = None,
    end: To = None,
    channel: str | None = None,
    region: str | None = None,
    fmt: FormatParameter = None,
) -> Any:
    """Orders placed in the period, with their units and net, tax and gross amounts, grouped
    by the dimensions given and by currency."""
    dimensions = reports.group_by(group_by)
    period = Period.of(start, end)
    file_format = export_format(request, fmt)

    def build(conn: AsyncConnection) -> Table:
        return queries.orders(conn, dimensions, period, channel, region)

    if file_format is not None:
        return _file(request, "orders", build, file_format)
    rows = await _rows(request, build)
    return {
        "group_by": list(dimensions),
        "rows": [
            {"key": {name: row[name] for name in dimensions}}
            | {column: row[column] for column in ("currency", *queries.ORDER_FIGURES)}
            for row in rows
        ],
    }


@router.get("/reports/sales/ranking", response_model=RankingReport, responses=FILES)
async def sales_ranking(
    request: Request,
    _: Reader,
    by: Annotated[str, Query(description="product, customer or region")],
    start: From = None,
    end: To = None,
    top: int = 10,
    fmt: FormatParameter = None,
) -> Any:
    """The best-selling products, customers or regions by revenue (net of tax), per currency;
    cancelled and rejected orders sold nothing."""
    dimension = reports.ranking_dimension(by)
    limit = reports.top(top)
    period = Period.of(start, end)
    file_format = export_format(request, fmt)

    def build(conn: AsyncConnection) -> Table:
        return queries.sales_ranking(conn, dimension, period, limit)

    if file_format is not None:
        return _file(request, f"sales-ranking-by-{dimension}", build, file_format)
    return {"by": dimension, "rows": await _rows(request, build)}


@router.get("/reports/payments", response_model=PaymentsReport, responses=FILES)
async def payments_report(
    request: Request,
    _: Reader,
    start: From = None,
    end: To = None,
    as_of: Annotated[
        datetime | None, Query(description="Age overdue invoices as of this moment (default: now)")
    ] = None,
    fmt: FormatParameter = None,
) -> Any:
    """Per currency: invoiced, collected, refunded, credited by returns' credit notes, and
    outstanding after them, split into not yet due and overdue ageing buckets (0-30, 31-60,
    61-90, over 90 days)."""
    period = Period.of(start, end)
    moment = in_utc(as_of) or datetime.now(UTC)
    file_format = export_format(request, fmt)

    async def build(conn: AsyncConnection) -> Table:
        return await queries.payments(conn, period, moment)

    if file_format is not None:
        return _file(request, "payments", build, file_format)
    return {"as_of": moment, "rows": await _rows(request, build)}


@router.get("/reports/receivables", response_model=ReceivablesReport, responses=FILES)
async def receivables_report(
    request: Request,
    _: Reader,
    customer: str | None = None,
    as_of: Annotated[
        datetime | None, Query(description="Age the invoices as of this moment (default: now)")
    ] = None,
    fmt: FormatParameter = None,
) -> Any:
    """The open invoices that still owe something after their credit notes, per customer,
    oldest due first."""
    moment = in_utc(as_of) or datetime.now(UTC)
    file_format = export_format(request, fmt)

    def build(conn: AsyncConnection) -> Table:
        return queries.receivables(conn, customer, moment)

    if file_format is not None:
        return _file(request, "receivables", build, file_format)
    return {"as_of": moment, "rows": await _rows(request, build)}


@router.get("/reports/inventory", response_model=InventoryReport, responses=FILES)
async def inventory_report(
    request: Request,
    _: Reader,
    warehouse: str | None = None,
    sku: str | None = None,
    start: From = None,
    end: To = None,
    as_of: Annotated[datetime | None, Query(description="The levels at this moment (default: now)")] = None,
    fmt: FormatParameter = None,
) -> Any:
    """On hand, reserved, available, in transit and backordered per SKU and warehouse; stock-
    outs, units dispatched and turnover in the period."""
    period = Period.of(start, end)
    moment = in_utc(as_of)
    file_format = export_format(request, fmt)

    def build(conn: AsyncConnection) -> Table:
        return queries.inventory(conn, warehouse, sku, period, moment)

    if file_format is not None:
        return _file(request, "inventory", build, file_format)
    return {"as_of": moment, "rows": await _rows(request, build)}


@router.get("/reports/fulfilment", response_model=FulfilmentReport, responses=FILES)
async def fulfilment_report(
    request: Request, _: Reader, start: From = None, end: To = None, fmt: FormatParameter = None
) -> Any:
    """Orders placed in the period through the funnel placed -> confirmed -> shipped ->
    delivered -> completed, why orders were cancelled or rejected, the time from placement to
    confirmation and to delivery (p50, p95), and the orders that need attention now."""
    period = Period.of(start, end)
    file_format = export_format(request, fmt)

    async def build(conn: AsyncConnection) -> Table:
        return queries.fulfilment_table(await queries.fulfilment(conn, period))

    if file_format is not None:
        return _file(request, "fulfilment", build, file_format)
    async with runtime_of(request).engine.connect() as conn:
        found = await queries.fulfilment(conn, period)
    return {
        "rows": found.funnel,
        "cancellations": found.cancellations,
        "rejections": found.rejections,
        "time_to_confirmation": found.time_to_confirmation,
        "time_to_delivery": found.time_to_delivery,
        "needs_attention": found.needs_attention,
    }


@router.get("/reports/production", response_model=ProductionReport, responses=FILES)
async def production_report(
    request: Request, _: Reader, start: From = None, end: To = None, fmt: FormatParameter = None
) -> Any:
    """Per SKU, production orders created in the period: planned vs completed, lead time,
    quality pass rate, late orders. Empty until the production service publishes events."""
    period = Period.of(start, end)
    file_format = export_format(request, fmt)

    def build(conn: AsyncConnection) -> Table:
        return queries.production(conn, period)

    if file_format is not None:
        return _file(request, "production", build, file_format)
    return {"rows": await _rows(request, build)}


@router.get("/reports/freshness", response_model=FreshnessReport)
async def freshness(request: Request, _: Reader) -> Any:
    """How far behind each source topic the reports are: messages not yet applied, and
    seconds (0 when caught up)."""
    monitor: FreshnessMonitor = request.app.state.reporting_freshness
    sources = await monitor.sources()
    lags = [s.lag_seconds for s in sources if s.lag_seconds is not None]
    return {
        "sources": [vars(source) for source in sources],
        "lag_seconds": None if len(lags) < len(sources) else max(lags, default=0.0),
    }
