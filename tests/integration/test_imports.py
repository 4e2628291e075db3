"""Order file imports on the running platform (issue 15, docs/imports.md): a file of 1,000
orders with a few bad rows, as CSV and as XLSX, goes in but for the bad orders, with an exact
report; the same file uploaded again places nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from services.order.domain.imports import COLUMN_NAMES, import_key
from tests.integration.conftest import Oms
from tools import cli
from tools.processes import eventually_value

pytestmark = pytest.mark.integration

ORDERS = 1_000


def _row(reference: str, n: int, sku: str, **overrides: str) -> dict[str, str]:
    row = {
        "external_reference": reference,
        "customer_name": f"Customer {n}",
        "customer_email": f"c{n}-{reference.lower()}@example.com",
        "currency": "EUR",
        "payment_terms": "prepaid",
        "shipping_method": "pickup",
        "sku": sku,
        "quantity": "1",
        "unit_price": "12.50",
    }
    row.update(overrides)
    return row


def order_file(
    prefix: str, sku: str
) -> tuple[list[dict[str, str]], list[tuple[int, str | None, str]], list[str]]:
    """1,000 good orders (every fifth of two lines), then the bad ones: rows, the exact report
    (row, column, message) and the references of the good orders."""
    rows: list[dict[str, str]] = []
    good: list[str] = []
    for n in range(ORDERS):
        reference = f"{prefix}-{n:04d}"
        good.append(reference)
        rows.append(_row(reference, n, sku))
        if n % 5 == 0:
            rows.append(_row(reference, n, f"{sku}-B", quantity="2"))
    first_bad = len(rows) + 2  # spreadsheet row numbers: the header is row 1
    rows += [
        _row(f"{prefix}-BAD-QTY", 9001, sku, quantity="0"),
        _row(f"{prefix}-BAD-LINE", 9002, sku),
        _row(f"{prefix}-BAD-LINE", 9002, "", quantity="3"),
        _row("", 9003, sku),
        _row(f"{prefix}-BAD-TERMS", 9004, sku, payment_terms="weekly"),
    ]
    report = [
        (first_bad, "quantity", "Input should be greater than 0"),
        (first_bad + 1, None, f"not imported: its order {prefix}-BAD-LINE has errors in row {first_bad + 2}"),
        (first_bad + 2, "sku", "required: the cell is empty"),
        (first_bad + 3, "external_reference", "missing: the reference that groups the rows of one order"),
        (first_bad + 4, "payment_terms", "Input should be 'prepaid' or 'on_account'"),
    ]
    return rows, report, good


def as_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(COLUMN_NAMES), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def as_xlsx(rows: list[dict[str, str]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(COLUMN_NAMES))
    for row in rows:
        # Numbers as numbers, as a person typing into a spreadsheet leaves them.
        sheet.append([_typed(name, row.get(name)) for name in COLUMN_NAMES])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _typed(name: str, value: str | None) -> str | int | float | None:
    if not value:
        return None
    if name == "quantity":
        return int(value)
    if name == "unit_price":
        return float(value)
    return value


async def upload(oms: Oms, name: str, content: bytes, channel: str) -> str:
    response = await oms.order.post(
        "/imports/orders", files={"file": (name, content)}, data={"channel": channel}
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/imports/{response.json()['import_id']}"
    return str(response.json()["import_id"])


async def finished(oms: Oms, import_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await oms.order.get(f"/imports/{import_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return dict(await eventually_value(fetch, lambda s: s["status"] in ("completed", "failed"), timeout=180))


async def orders_of_channel(oms: Oms, channel: str) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"channel": channel, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = (await oms.order.get("/orders", params=params)).json()
        found |= {item["order_id"] for item in page["items"]}
        cursor = page.get("next_cursor")
        if not cursor:
            return found


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_a_file_of_1000_orders_goes_in_but_for_its_bad_rows_and_again_places_nothing(
    oms: Oms, sku: str, fmt: str
) -> None:
    channel = f"imp-{fmt}-{uuid4().hex[:8]}"
    rows, expected_report, good = order_file(f"{fmt.upper()}{uuid4().hex[:6]}", sku)
    content = as_csv(rows) if fmt == "csv" else as_xlsx(rows)

    began = time.monotonic()
    first = await finished(oms, await upload(oms, f"orders.{fmt}", content, channel))
    took = time.monotonic() - began

    rejected = [(r["row"], r["column"], r["message"]) for r in first["rejected"]]
    assert rejected == expected_report
    assert first["status"] == "completed", first
    assert (first["rows_read"], first["orders_found"]) == (len(rows), ORDERS + 3)
    assert (first["orders_accepted"], first["orders_already_imported"], first["orders_rejected"]) == (
        ORDERS,
        0,
        3,
    )
    assert first["rows_rejected"] == 5
    placed = await orders_of_channel(oms, channel)
    assert len(placed) == ORDERS
    # Each order is found under the key its file and reference give it, as submitted.
    sample = good[5]
    key = import_key(first["file_digest"], channel, sample)
    order = await oms.get_order(str(uuid5(NAMESPACE_URL, f"ordermesh:idem:{key}")))
    assert (order["external_id"], order["channel"]) == (sample, channel)
    assert sorted((line["sku"], line["quantity"]) for line in order["lines"]) == [(sku, 1), (f"{sku}-B", 2)]

    again = await finished(oms, await upload(oms, f"orders-again.{fmt}", content, channel))

    assert (again["orders_accepted"], again["orders_already_imported"], again["orders_rejected"]) == (
        0,
        ORDERS,
        3,
    )
    assert [(r["row"], r["column"], r["message"]) for r in again["rejected"]] == expected_report
    assert await orders_of_channel(oms, channel) == placed
    print(f"import of {ORDERS} orders ({fmt}, {len(content):,} bytes): {took:.1f}s")


async def test_the_report_downloads_as_csv_and_xlsx(oms: Oms, sku: str) -> None:
    channel = f"imp-report-{uuid4().hex[:8]}"
    rows = [_row("R-1", 1, sku), _row("R-2", 2, sku, quantity="0")]
    import_id = (await finished(oms, await upload(oms, "two.csv", as_csv(rows), channel)))["import_id"]

    as_text = await oms.order.get(f"/imports/{import_id}/report", params={"format": "csv"})
    as_sheet = await oms.order.get(f"/imports/{import_id}/report", params={"format": "xlsx"})

    assert as_text.status_code == 200, as_text.text
    assert as_text.headers["content-type"].startswith("text/csv")
    assert as_text.text.splitlines() == [
        "row,column,message,external_reference",
        "3,quantity,Input should be greater than 0,R-2",
    ]
    sheet = load_workbook(io.BytesIO(as_sheet.content), read_only=True).worksheets[0]
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["row", "column", "message", "external_reference"],
        ["3", "quantity", "Input should be greater than 0", "R-2"],
    ]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_the_template_downloads_and_imports_as_its_example_order(oms: Oms, fmt: str) -> None:
    response = await oms.order.get("/imports/orders/template", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert f'filename="orders-template.{fmt}"' in response.headers["content-disposition"]
    channel = f"imp-tpl-{uuid4().hex[:8]}"

    state = await finished(oms, await upload(oms, f"template.{fmt}", response.content, channel))

    # The example names its channel (phone) and reference: the second format's upload finds
    # the order the first placed (same reference, same content) instead of placing it again.
    assert (state["rows_read"], state["orders_accepted"] + state["orders_already_imported"]) == (2, 1)
    assert state["rejected"] == []


async def test_a_file_without_the_required_columns_is_refused_naming_them(oms: Oms) -> None:
    content = b"external_reference,customer_name,sku,qty\nA,Ada,S1,1\n"

    response = await oms.order.post("/imports/orders", files={"file": ("orders.csv", content)})

    assert response.status_code == 422, response.text
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {
        "file.currency",
        "file.payment_terms",
        "file.shipping_method",
        "file.quantity",
        "file.unit_price",
        "file.qty",
    }


async def test_importing_needs_the_import_permission(oms: Oms) -> None:
    from libs.security.dev_issuer import bearer

    response = await oms.order.get(
        "/imports/orders/template", headers=bearer("warehouse", subject="test-warehouse")
    )

    assert response.status_code == 403, response.text
    assert response.json()["missing_permission"] == "orders:import"


async def test_the_cli_imports_a_file_and_prints_the_rejected_rows(
    oms: Oms, sku: str, tmp_path: Path
) -> None:
    channel = f"imp-cli-{uuid4().hex[:8]}"
    path = tmp_path / "orders.csv"
    path.write_bytes(as_csv([_row("CLI-1", 1, sku, channel=channel), _row("CLI-2", 2, sku, quantity="0")]))
    headers = {"Authorization": oms.order.headers["Authorization"]}
    env = {"OM_TOKEN": headers["Authorization"].removeprefix("Bearer ")}

    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli.app,
        ["import-orders", str(path), "--order-url", oms.platform.url("order")],
        env=env,
    )

    assert result.exit_code == 1, result.output  # some rows were rejected
    assert "orders accepted: 1  already imported: 0  rejected: 1  rows rejected: 1" in result.output
    assert "3  quantity              Input should be greater than 0" in result.output
    assert len(await orders_of_channel(oms, channel)) == 1
