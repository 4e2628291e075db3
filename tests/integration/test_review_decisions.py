"""The review queue on the running platform: held only for what the delivery country's
address rules require, decided in bulk (each order answered on its own), exported."""

from __future__ import annotations

import csv
import io
from typing import Any
from uuid import uuid4

from openpyxl import load_workbook

from tests.integration.conftest import Oms, order_body


def _delivery(**address: str) -> dict[str, Any]:
    return {"method": "standard", "address": {"line1": "1 Main Street", **address}}


async def test_only_what_the_country_requires_holds_and_the_desk_decides_each_order(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 10)
    channel = f"desk-{uuid4().hex[:6]}"
    # Ireland needs no postal code; Germany does.
    dublin = await oms.place(
        order_body(sku, channel=channel, shipping=_delivery(city="Dublin", country="IE"))
    )
    berlin = [
        await oms.place(order_body(sku, channel=channel, shipping=_delivery(city="Berlin", country="DE")))
        for _ in range(2)
    ]
    await oms.wait_status(dublin, "awaiting_payment")

    queue = await oms.order.get("/orders", params={"status": "on_hold", "channel": channel})
    assert queue.status_code == 200, queue.text
    held = {item["order_id"]: item["hold_reasons"] for item in queue.json()["items"]}
    assert held == {order_id: ["delivery address is incomplete (missing postal_code)"] for order_id in berlin}

    unknown = f"o-{uuid4().hex[:8]}"
    decided = await oms.order.post(
        "/orders/decisions",
        json={
            "order_ids": [*berlin, dublin, unknown],
            "decision": "approve",
            "reason": "postal code by phone",
        },
    )

    assert decided.status_code == 200, decided.text
    results = {r["order_id"]: r for r in decided.json()["results"]}
    assert [results[o]["status_code"] for o in (*berlin, dublin, unknown)] == [200, 200, 409, 404]
    assert {results[o]["outcome"] for o in berlin} == {"approved"}
    assert results[dublin]["detail"] and results[unknown]["code"] == "unknown_order"
    for order_id in berlin:
        await oms.wait_status(order_id, "awaiting_payment")


async def test_a_bulk_rejection_records_the_reason_on_each_order(oms: Oms, sku: str) -> None:
    channel = f"desk-{uuid4().hex[:6]}"
    held = [
        await oms.place(order_body(sku, channel=channel, shipping=_delivery(city="Berlin", country="DE")))
        for _ in range(2)
    ]

    decided = await oms.order.post(
        "/orders/decisions", json={"order_ids": held, "decision": "reject", "reason": "no such street"}
    )

    assert decided.status_code == 200, decided.text
    assert [(r["status_code"], r["outcome"]) for r in decided.json()["results"]] == [(200, "rejected")] * 2
    for order_id in held:
        order = await oms.wait_status(order_id, "rejected")
        assert "no such street" in order["reason"]
    twice = await oms.order.post(
        "/orders/decisions", json={"order_ids": [*held, held[0]], "decision": "reject", "reason": "again"}
    )
    assert twice.status_code == 422, twice.text


async def test_the_filtered_order_list_is_exported_as_csv_and_xlsx(oms: Oms, sku: str) -> None:
    channel = f"export-{uuid4().hex[:6]}"
    name = '=HYPERLINK("http://evil")'
    held = [
        await oms.place(
            order_body(
                sku,
                1,
                "12.50",
                channel=channel,
                customer={"name": name, "email": f"{uuid4().hex[:8]}@example.org"},
                shipping=_delivery(country="DE"),
            )
        )
        for _ in range(3)
    ]
    filters = {"status": "on_hold", "channel": channel}

    as_csv = await oms.order.get("/orders", params={**filters, "format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["order_id"] for r in rows] == held[::-1]  # newest first, as the list
    assert {(r["subtotal"], r["hold_reasons"]) for r in rows} == {
        ("12.50", "delivery address is incomplete (missing city, postal_code)")
    }
    assert {r["customer_name"] for r in rows} == {"'" + name}  # text, never a formula

    as_xlsx = await oms.order.get("/orders", params={**filters, "format": "xlsx"})
    assert as_xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(as_xlsx.content), read_only=True)["orders"]
    header, *body = list(sheet.iter_rows(values_only=True))
    assert [dict(zip(header, row, strict=True))["order_id"] for row in body] == held[::-1]
    assert {dict(zip(header, row, strict=True))["subtotal"] for row in body} == {12.5}
