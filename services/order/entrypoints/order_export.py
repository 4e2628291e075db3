"""GET /orders?...&format=csv|xlsx: the filtered order list as a file.

Read a page at a time (the list's own query, 500 orders a page) while the answer is sent:
CSV goes out as each page is written; XLSX (openpyxl's write-only workbook) is written to a
temporary file page by page and then streamed from it, so neither holds the list in memory.
Amounts stay exact: decimal strings in CSV, numbers with the currency's places in XLSX.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.events.values import minor_units
from services.order.adapters import queries

ExportFormat = Literal["csv", "xlsx"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
COLUMNS = (
    "order_id",
    "status",
    "hold_reasons",
    "channel",
    "external_id",
    "customer_id",
    "customer_name",
    "currency",
    "payment_terms",
    "shipping_method",
    "subtotal",
    "total",
    "amount_paid",
    "amount_refunded",
    "payment_status",
    "invoice_id",
    "placed_at",
    "updated_at",
)
# The list's OpenAPI answer: JSON pages, or one of these files.
FILES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of orders; with ?format=csv|xlsx every order the filters select, as a file",
        "content": {media.split(";")[0]: {} for media in MEDIA_TYPES.values()},
    }
}
MONEY_COLUMNS = frozenset({"subtotal", "total", "amount_paid", "amount_refunded"})
PAGE = 500
_FILE_CHUNK = 256 * 1024
# A cell starting with one of these is a formula to a spreadsheet: a customer name such as
# "=HYPERLINK(...)" from a channel must stay text (OWASP: CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell_text(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    if column not in MONEY_COLUMNS and text.startswith(_FORMULA_START):
        return "'" + text
    return text


async def _pages(
    conn: AsyncConnection, filters: dict[str, Any], redact: Callable[[dict[str, Any]], None]
) -> AsyncIterator[list[dict[str, Any]]]:
    cursor = None
    while True:
        page = await queries.list_orders(conn, **filters, cursor=cursor, limit=PAGE)
        for item in page["items"]:
            redact(item)
        yield page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return


async def _csv(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    async for items in pages:
        writer.writerows([[cell_text(c, item.get(c)) for c in COLUMNS] for item in items])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def _xlsx_row(sheet: Any, item: dict[str, Any]) -> list[Any]:
    row: list[Any] = []
    for column in COLUMNS:
        value = item.get(column)
        if column in MONEY_COLUMNS and value is not None:
            cell = WriteOnlyCell(sheet, value=Decimal(value))
            places = minor_units(str(item.get("currency"))) or 0
            cell.number_format = "0." + "0" * places if places else "0"
            row.append(cell)
        else:
            row.append(cell_text(column, value))
    return row


async def _xlsx(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("orders")
    sheet.append(list(COLUMNS))
    async for items in pages:
        for item in items:
            sheet.append(_xlsx_row(sheet, item))
    with tempfile.TemporaryFile() as spool:
        workbook.save(spool)
        spool.seek(0)
        while block := spool.read(_FILE_CHUNK):
            yield block


def export_response(
    engine: AsyncEngine,
    fmt: ExportFormat,
    filters: dict[str, Any],
    redact: Callable[[dict[str, Any]], None],
) -> StreamingResponse:
    """The orders `filters` select (queries.list_orders' filters), newest first, as a file
    written while they are read (the connection stays open until the last byte is sent)."""

    async def body() -> AsyncIterator[bytes]:
        async with engine.connect() as conn:
            pages = _pages(conn, filters, redact)
            async for chunk in _csv(pages) if fmt == "csv" else _xlsx(pages):
                yield chunk

    name = f"ordermesh-orders-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{fmt}"
    return StreamingResponse(
        body(), media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
