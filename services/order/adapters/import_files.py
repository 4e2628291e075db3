"""Order files as bytes: reading a CSV or XLSX upload into header and rows, and writing the
template and an import's report. The csv module for CSV; openpyxl for XLSX, in read-only mode
so a large workbook is streamed rather than built in memory."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from libs.events.order_imports import ImportFormat, RejectedRow
from services.order.domain.imports import (
    COLUMNS,
    EXAMPLE_SECOND_LINE,
    MAX_ROWS,
    Cell,
    column_key,
)

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
_ZIP_MAGIC = b"PK\x03\x04"
REPORT_COLUMNS = ("row", "column", "message", "external_reference")


class UnreadableFile(Exception):
    """The bytes are not an order file this service reads; the message says why, for a person."""


def file_format(file_name: str, content: bytes) -> ImportFormat:
    """XLSX by its bytes (a zip archive) or its name, else CSV. The old binary .xls is refused."""
    name = file_name.lower()
    if name.endswith(".xls") or content.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableFile("an Excel 97-2003 (.xls) workbook: save it as .xlsx or CSV")
    if content.startswith(_ZIP_MAGIC) or name.endswith(".xlsx"):
        return "xlsx"
    return "csv"


def read_file(content: bytes, fmt: ImportFormat) -> tuple[list[str], Iterator[tuple[int, list[Cell]]]]:
    """The header (as column keys) and the rows after it, numbered as a spreadsheet numbers
    them (the header is row 1). Raises UnreadableFile."""
    rows = _csv_rows(content) if fmt == "csv" else _xlsx_rows(content)
    first = next(rows, None)
    if first is None:
        raise UnreadableFile("the file is empty: the first row must name the columns")
    return [column_key(title) for title in first[1]], _limited(rows)


def _limited(rows: Iterator[tuple[int, list[Cell]]]) -> Iterator[tuple[int, list[Cell]]]:
    for count, row in enumerate(rows, start=1):
        if count > MAX_ROWS:
            raise UnreadableFile(f"more than {MAX_ROWS:,} rows: split the file")
        yield row


def _csv_rows(content: bytes) -> Iterator[tuple[int, list[Cell]]]:
    try:
        text = content.decode("utf-8-sig")  # Excel writes a byte order mark
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"the CSV file is not UTF-8 text (byte {error.start})") from None
    first_line = text.split("\n", 1)[0]
    # Spreadsheets in many locales export with semicolons (their decimal mark is the comma).
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for number, record in enumerate(reader, start=1):
            yield number, [_clean(cell) for cell in record]
    except csv.Error as error:
        raise UnreadableFile(f"the CSV file cannot be read at row {reader.line_num}: {error}") from None


def _xlsx_rows(content: bytes) -> Iterator[tuple[int, list[Cell]]]:
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise UnreadableFile(f"not an XLSX workbook that can be read: {error}") from None
    except Exception as error:  # openpyxl meets a broken part of the archive in many ways
        raise UnreadableFile(f"not an XLSX workbook that can be read ({type(error).__name__})") from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_clean(value) for value in values]
    except UnreadableFile:
        raise
    except Exception as error:  # a sheet whose XML is broken part way
        raise UnreadableFile(f"the workbook's first sheet cannot be read ({type(error).__name__})") from None
    finally:
        workbook.close()


def _clean(value: Any) -> Cell:
    """A cell as text, None when empty. A whole number a spreadsheet stored as 2.0 reads 2."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else str(Decimal(repr(value)))
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = str(value)
    text = text.strip()
    return text or None


def _template_rows() -> list[list[str]]:
    header = [c.name for c in COLUMNS]
    first = [c.example for c in COLUMNS]
    second = [EXAMPLE_SECOND_LINE.get(c.name, c.example) for c in COLUMNS]
    return [header, first, second]


def template(fmt: ImportFormat) -> bytes:
    """The header row and one example order of two lines."""
    return _csv(_template_rows()) if fmt == "csv" else _xlsx(_template_rows(), "orders")


def report(rejected: Sequence[RejectedRow], fmt: ImportFormat = "csv") -> bytes:
    rows: list[list[str]] = [list(REPORT_COLUMNS)]
    rows += [[str(r.row), r.column or "", r.message, r.external_reference or ""] for r in rejected]
    return _csv(rows) if fmt == "csv" else _xlsx(rows, "rejected rows")


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode()


def _xlsx(rows: list[list[str]], title: str) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
