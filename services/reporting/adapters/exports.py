"""A report's rows as a file: CSV, XLSX or Parquet.

CSV is written as the rows arrive. XLSX (openpyxl's write-only workbook) and Parquet
(pyarrow, one row group per ROWS_PER_CHUNK rows) are written to a temporary file as the rows
arrive and then streamed from it: neither holds the report in memory, whatever its size.
Money stays exact: CSV writes the decimal as it is, Parquet as decimal128, XLSX as a number
with two decimals (what a spreadsheet holds).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from services.reporting.adapters.queries import Row, Table

Format = Literal["csv", "xlsx", "parquet"]
FORMATS: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
ROWS_PER_CHUNK = 5000
FILE_CHUNK_BYTES = 256 * 1024

# The type of each column a report may have, for Parquet (and XLSX number formats). A column
# not listed is text.
MONEY = pa.decimal128(18, 2)
RATE = pa.decimal128(12, 4)
SECONDS = pa.decimal128(18, 3)
COUNT = pa.int64()
TIME = pa.timestamp("us", tz="UTC")
COLUMN_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(
        (
            "net_amount",
            "tax_amount",
            "gross_amount",
            "revenue",
            "invoiced",
            "collected",
            "refunded",
            "credited",
            "outstanding",
            "not_due",
            "overdue_0_30",
            "overdue_31_60",
            "overdue_61_90",
            "overdue_over_90",
            "total",
            "amount_paid",
        ),
        MONEY,
    ),
    **dict.fromkeys(("rate", "turnover", "quality_pass_rate"), RATE),
    **dict.fromkeys(("p50_seconds", "p95_seconds", "lead_time_p50_seconds"), SECONDS),
    **dict.fromkeys(
        (
            "orders",
            "units",
            "rank",
            "on_hand",
            "reserved",
            "available",
            "in_transit",
            "backordered",
            "stock_outs",
            "dispatched",
            "days_past_due",
            "production_orders",
            "planned_quantity",
            "completed_quantity",
            "late_orders",
        ),
        COUNT,
    ),
    **dict.fromkeys(("issued_at", "due_at"), TIME),
}
NUMBER_FORMATS = {MONEY: "0.00", RATE: "0.0000", SECONDS: "0.000", COUNT: "0"}


def file_name(report: str, fmt: Format, now: datetime) -> str:
    return f"ordermesh-{report}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.{fmt}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


async def _chunks(rows: AsyncIterator[Row], size: int = ROWS_PER_CHUNK) -> AsyncIterator[list[Row]]:
    chunk: list[Row] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def csv_bytes(table: Table) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.columns)
    async for chunk in _chunks(table.rows, 1000):
        writer.writerows([[_text(row.get(c)) for c in table.columns] for row in chunk])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def _file_bytes(spool: IO[bytes]) -> Iterable[bytes]:
    spool.seek(0)
    while block := spool.read(FILE_CHUNK_BYTES):
        yield block


def to_millisecond(moment: datetime) -> datetime:
    """The nearest millisecond: what a spreadsheet's time (a float of days) holds exactly."""
    rounded = moment + timedelta(microseconds=500)
    return rounded.replace(microsecond=rounded.microsecond // 1000 * 1000)


def _cell_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # A spreadsheet's times have no zone: UTC, to the millisecond.
        return to_millisecond(value.astimezone(UTC)).replace(tzinfo=None)
    return value


async def xlsx_bytes(table: Table) -> AsyncIterator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(table.name[:31])
    sheet.append(list(table.columns))
    formats = [NUMBER_FORMATS.get(COLUMN_TYPES.get(c, pa.string())) for c in table.columns]
    async for chunk in _chunks(table.rows):
        for row in chunk:
            cells = []
            for column, number_format in zip(table.columns, formats, strict=True):
                cell = WriteOnlyCell(sheet, value=_cell_value(row.get(column)))
                if number_format is not None:
                    cell.number_format = number_format
                elif isinstance(row.get(column), datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                cells.append(cell)
            sheet.append(cells)
    with tempfile.TemporaryFile() as spool:
        workbook.save(spool)
        for block in _file_bytes(spool):
            yield block


def parquet_schema(columns: Iterable[str]) -> pa.Schema:
    return pa.schema([(c, COLUMN_TYPES.get(c, pa.string())) for c in columns])


def _parquet_value(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == pa.string():
        return _text(value)
    if isinstance(kind, pa.Decimal128Type):
        return Decimal(value)
    return value


async def parquet_bytes(table: Table) -> AsyncIterator[bytes]:
    schema = parquet_schema(table.columns)
    with tempfile.TemporaryFile() as spool:
        with pq.ParquetWriter(spool, schema) as writer:
            wrote = False
            async for chunk in _chunks(table.rows):
                columns = {
                    field.name: pa.array(
                        [_parquet_value(row.get(field.name), field.type) for row in chunk], field.type
                    )
                    for field in schema
                }
                writer.write_table(pa.table(columns, schema=schema))
                wrote = True
            if not wrote:
                writer.write_table(schema.empty_table())
        for block in _file_bytes(spool):
            yield block


def file_bytes(table: Table, fmt: Format) -> AsyncIterator[bytes]:
    return {"csv": csv_bytes, "xlsx": xlsx_bytes, "parquet": parquet_bytes}[fmt](table)
