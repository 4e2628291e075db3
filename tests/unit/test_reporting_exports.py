"""Report files: what is written reads back with the same values (money exact)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow.parquet as pq
from openpyxl import load_workbook

from services.reporting.adapters.exports import file_bytes, file_name
from services.reporting.adapters.queries import Row, Table

COLUMNS = ("region", "currency", "orders", "net_amount", "turnover", "due_at")
ROWS = [
    {
        "region": "DE",
        "currency": "EUR",
        "orders": 3,
        "net_amount": Decimal("1234.56"),
        "turnover": None,
        "due_at": datetime(2026, 11, 2, 12, 30, tzinfo=UTC),
    },
    {
        "region": None,
        "currency": "JPY",
        "orders": 1,
        "net_amount": Decimal("1500.00"),
        "turnover": Decimal("0.3333"),
        "due_at": None,
    },
]


async def _rows(rows: list[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


async def _file(fmt: str, rows: list[Row]) -> bytes:
    table = Table("orders", COLUMNS, _rows(rows))
    return b"".join([chunk async for chunk in file_bytes(table, fmt)])  # type: ignore[arg-type]


async def test_csv_reads_back_exactly() -> None:
    read = list(csv.DictReader(io.StringIO((await _file("csv", ROWS)).decode())))
    assert read[0] == {
        "region": "DE",
        "currency": "EUR",
        "orders": "3",
        "net_amount": "1234.56",
        "turnover": "",
        "due_at": "2026-11-02T12:30:00+00:00",
    }
    assert read[1]["region"] == "" and read[1]["turnover"] == "0.3333"


async def test_xlsx_reads_back_with_the_same_values() -> None:
    sheet = load_workbook(io.BytesIO(await _file("xlsx", ROWS))).active
    assert sheet is not None
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert header == COLUMNS
    assert rows[0][:3] == ("DE", "EUR", 3)
    assert Decimal(str(rows[0][3])) == Decimal("1234.56")
    assert rows[0][5] == datetime(2026, 11, 2, 12, 30)  # a spreadsheet's times are UTC, zoneless


async def test_parquet_keeps_decimals_and_types() -> None:
    table = pq.read_table(io.BytesIO(await _file("parquet", ROWS)))
    assert table.column_names == list(COLUMNS)
    read = table.to_pylist()
    assert read[0]["net_amount"] == Decimal("1234.56") and read[1]["net_amount"] == Decimal("1500.00")
    assert read[1]["turnover"] == Decimal("0.3333") and read[0]["turnover"] is None
    assert read[0]["orders"] == 3 and read[0]["due_at"] == datetime(2026, 11, 2, 12, 30, tzinfo=UTC)


async def test_an_empty_report_is_a_file_with_its_columns_only() -> None:
    assert (await _file("csv", [])).decode().strip() == ",".join(COLUMNS)
    assert pq.read_table(io.BytesIO(await _file("parquet", []))).num_rows == 0
    sheet = load_workbook(io.BytesIO(await _file("xlsx", []))).active
    assert sheet is not None and [r for r in sheet.iter_rows(values_only=True)] == [COLUMNS]


def test_file_names_say_the_report_and_when() -> None:
    assert file_name("orders", "csv", datetime(2026, 11, 2, 9, 5, 1, tzinfo=UTC)) == (
        "ordermesh-orders-20261102T090501Z.csv"
    )
