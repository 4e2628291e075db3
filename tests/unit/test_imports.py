"""Order files: reading CSV and XLSX, grouping rows into orders, the report of rejected rows."""

from __future__ import annotations

import csv
import io
import zipfile
from decimal import Decimal

import pytest
from openpyxl import Workbook

from libs.events.order_imports import (
    OrderImportCompleted,
    OrderImportProgressed,
    OrderImportRead,
    OrderImportStarted,
    RejectedRow,
)
from services.order.adapters.import_files import UnreadableFile, file_format, read_file, report, template
from services.order.domain.imports import (
    COLUMN_NAMES,
    ORDER_IMPORT,
    ReadFile,
    header_problems,
    import_key,
    read_orders,
)

DIGEST = "0" * 64


def order_row(reference: str, sku: str = "CHAIR", quantity: str = "1", **overrides: str) -> dict[str, str]:
    row = {
        "external_reference": reference,
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "currency": "EUR",
        "payment_terms": "prepaid",
        "shipping_method": "pickup",
        "sku": sku,
        "quantity": quantity,
        "unit_price": "10.00",
    }
    row.update(overrides)
    return row


def csv_file(
    rows: list[dict[str, str]], delimiter: str = ",", columns: tuple[str, ...] = COLUMN_NAMES
) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(columns), delimiter=delimiter, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def xlsx_file(rows: list[dict[str, str | int | float]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(COLUMN_NAMES))
    for row in rows:
        sheet.append([row.get(name) for name in COLUMN_NAMES])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def read(content: bytes, name: str = "orders.csv", **options: object) -> ReadFile:
    header, rows = read_file(content, file_format(name, content))
    assert header_problems(header) == []
    return read_orders(header, rows, file_digest=DIGEST, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_template_reads_as_one_valid_order_of_two_lines(fmt: str) -> None:
    content = template(fmt)  # type: ignore[arg-type]

    found = read(content, f"template.{fmt}")

    assert found.rows_read == 2
    (order,) = found.orders
    assert order.rejected == ()
    assert order.submission is not None
    assert order.submission.external_id == "WEB-1001"
    assert [(line.sku, line.quantity, line.unit_price) for line in order.submission.lines] == [
        ("CHAIR-OAK", 2, Decimal("149.90")),
        ("TABLE-OAK", 1, Decimal("499.00")),
    ]
    assert order.submission.shipping.address is not None
    assert order.submission.shipping.address.country == "GB"


def test_rows_group_into_orders_by_reference_wherever_they_are_in_the_file() -> None:
    content = csv_file([order_row("A", "S1"), order_row("B", "S2"), order_row("A", "S3", "2")])

    found = read(content)

    assert [(o.reference, o.rows) for o in found.orders] == [("A", (2, 4)), ("B", (3,))]
    first = found.orders[0].submission
    assert first is not None
    assert [(line.sku, line.quantity) for line in first.lines] == [("S1", 1), ("S3", 2)]
    assert first.channel == "import"
    assert first.idempotency_key == import_key(DIGEST, "import", "A")


def test_a_bad_row_rejects_its_whole_order_and_every_row_is_reported_with_its_column() -> None:
    content = csv_file(
        [
            order_row("A", "S1"),
            order_row("A", "S2", quantity="0"),  # row 3
            order_row("A", "S3", currency="USD"),  # row 4: an order field that differs
            order_row("B", "S4"),  # row 5: fine
            order_row("", "S5"),  # row 6: no reference
            order_row("C", "", unit_price="ten"),  # row 7: two problems
        ]
    )

    found = read(content)

    assert found.rows_read == 6
    assert found.ungrouped == (
        RejectedRow(
            row=6,
            column="external_reference",
            message="missing: the reference that groups the rows of one order",
        ),
    )
    a, b, c = found.orders
    assert b.submission is not None and b.rejected == ()
    assert a.submission is None
    assert [(r.row, r.column, r.message) for r in a.rejected] == [
        (2, None, "not imported: its order A has errors in rows 3, 4"),
        (3, "quantity", "Input should be greater than 0"),
        (
            4,
            "currency",
            "differs from row 2, the order's first row: every row of an order repeats its currency",
        ),
    ]
    assert [(r.row, r.column) for r in c.rejected] == [(7, "sku"), (7, "unit_price")]
    assert c.rejected[0].message == "required: the cell is empty"
    assert all(r.external_reference == "C" for r in c.rejected)


def test_order_fields_are_checked_with_the_same_rules_as_post_orders() -> None:
    content = csv_file(
        [
            order_row("A", payment_terms="weekly"),
            order_row("B", currency="JPY", unit_price="10.50"),
            order_row("C", shipping_method=""),
        ]
    )

    a, b, c = read(content).orders

    assert [(r.column, r.message) for r in a.rejected] == [
        ("payment_terms", "Input should be 'prepaid' or 'on_account'")
    ]
    assert [(r.column, r.message) for r in b.rejected] == [("unit_price", "at most 0 decimal places for JPY")]
    assert [(r.column, r.message) for r in c.rejected] == [("shipping_method", "required: the cell is empty")]


def test_a_channel_key_imports_only_its_own_channel() -> None:
    content = csv_file([order_row("A", channel="web"), order_row("B"), order_row("C", channel="shop")])

    a, b, c = read(content, channel="shop", channel_only=True).orders

    assert [(r.column, r.message) for r in a.rejected] == [
        ("channel", "this API key imports orders of channel shop only")
    ]
    assert b.submission is not None and b.submission.channel == "shop"
    assert c.submission is not None


def test_xlsx_numbers_and_blank_rows_read_as_a_person_typed_them() -> None:
    rows: list[dict[str, str | int | float]] = [
        {**order_row("A"), "quantity": 3.0, "unit_price": 19.9},
        {},  # a blank row in the middle
        {**order_row("A", "S2"), "quantity": 1, "unit_price": 5},
    ]

    found = read(xlsx_file(rows), "orders.xlsx")

    assert found.rows_read == 2
    (order,) = found.orders
    assert order.submission is not None
    assert [(line.quantity, line.unit_price) for line in order.submission.lines] == [
        (3, Decimal("19.9")),
        (1, Decimal("5")),
    ]
    assert order.rows == (2, 4)


def test_a_semicolon_csv_with_a_byte_order_mark_reads_like_any_other() -> None:
    content = "\ufeff".encode() + csv_file([order_row("A")], delimiter=";")

    (order,) = read(content).orders

    assert order.submission is not None


def test_header_problems_name_each_column() -> None:
    header = [
        "external_reference",
        "customer_name",
        "currency",
        "sku",
        "quantity",
        "unit_price",
        "postcode",
        "sku",
    ]

    problems = {(p.column, p.message.split(" (")[0]) for p in header_problems(header)}

    assert problems == {
        ("payment_terms", "required column missing"),
        ("shipping_method", "required column missing"),
        ("postcode", "unknown column"),
        ("sku", "column appears twice"),
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.csv", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("orders.xls", b"\xd0\xcf\x11\xe0 old", "Excel 97-2003"),
        ("orders.xlsx", b"PK\x03\x04 broken", "not an XLSX workbook"),
        ("orders.csv", b"", "empty"),
    ],
)
def test_files_that_are_not_order_files_are_refused_with_a_reason(
    name: str, content: bytes, message: str
) -> None:
    with pytest.raises(UnreadableFile, match=message):
        read_file(content, file_format(name, content))


def test_the_same_reference_in_another_file_gets_another_key() -> None:
    assert import_key(DIGEST, "import", "A") == import_key(DIGEST, "import", "A")
    assert import_key(DIGEST, "import", "A") != import_key("1" * 64, "import", "A")
    assert len(import_key(DIGEST, "import", "A" * 200)) <= 200


def test_the_report_lists_each_rejected_row() -> None:
    rejected = [
        RejectedRow(
            row=3, column="quantity", message="Input should be greater than 0", external_reference="A"
        )
    ]

    lines = report(rejected).decode().splitlines()

    assert lines == ["row,column,message,external_reference", "3,quantity,Input should be greater than 0,A"]


def test_an_import_counts_what_its_batches_did() -> None:
    bad = RejectedRow(row=3, column="quantity", message="x", external_reference="A")
    events = [
        OrderImportStarted(
            import_id="i",
            file_name="f.csv",
            file_format="csv",
            file_digest=DIGEST,
            file_size=10,
            channel="import",
            uploaded_by="user:ada",
        ),
        OrderImportRead(import_id="i", rows_read=5, orders_found=3, rejected=(bad,)),
        OrderImportProgressed(
            import_id="i",
            orders_done=3,
            rows_done=5,
            orders_accepted=1,
            orders_already_imported=1,
            orders_rejected=1,
            rejected=(bad, RejectedRow(row=4, column=None, message="y")),
        ),
        OrderImportCompleted(import_id="i"),
    ]

    state = ORDER_IMPORT.replay(events)  # type: ignore[arg-type]

    assert (state.status, state.orders_accepted, state.orders_already_imported, state.orders_rejected) == (
        "completed",
        1,
        1,
        1,
    )
    assert state.rows_rejected == 2


def test_a_workbook_whose_sheet_is_broken_is_refused_not_a_crash() -> None:
    broken = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(template("xlsx"))) as original,
        zipfile.ZipFile(broken, "w") as copy,
    ):
        for item in original.infolist():
            data = original.read(item.filename)
            copy.writestr(item, data[: len(data) // 2] if "worksheets/" in item.filename else data)

    with pytest.raises(UnreadableFile, match="be read"):
        header, rows = read_file(broken.getvalue(), "xlsx")
        list(rows)
