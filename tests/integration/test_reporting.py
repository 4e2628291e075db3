"""The reporting service on the real platform: a known mix of orders goes through the order,
inventory and billing services; the reports (and their CSV, XLSX and Parquet files) say
exactly what happened, from the public topics alone; a rebuild by replay gives the same.

The mix (prices net of 20 % tax; standard shipping 4.90 + 0.98 tax on every invoice):
  O1 web         DE  c1  A x2 @10  paid, shipped, delivered -> completed
  O2 web         FR  c2  A x1 + B x1 @20  paid 10.00 of 41.88 (partial) -> awaiting_payment
  O3 marketplace DE  c1  B x2  paid -> confirmed
  O4 b2b         FR  c3  A x3  on account (due in 30 days) -> confirmed
  O5 web         DE  c2  A x1  paid, then cancelled -> invoice void, 17.88 refunded
  O6 phone       NL  c4  C x2 @15  no stock -> backordered, awaiting_stock (invoice open)
  O7 b2b         IT  c5  A x1  on account without credit -> held, rejected by finance
Stock: A 10 at NORTH, B 3 at SOUTH (O2 and O3 empty it: one stock-out), C none.
Later the order desk changes orders (`desk`), and goods of a delivered order come back
(`returned`): each with its own customer, reported from its own start.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from openpyxl import load_workbook
from prometheus_client.parser import text_string_to_metric_families

from libs.events.codec import decode
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from services.reporting.adapters.exports import to_millisecond
from services.reporting.adapters.projections import PROJECTIONS
from services.reporting.analyst_role import AdminLogin, drop_analyst_role, grant_analyst_role
from services.reporting.bootstrap import CONSUMER, SOURCE_TOPICS
from services.reporting.rebuild import group_has_members, rebuild, source_end_offsets
from tests.conftest import RUN_ID
from tests.integration.accounts import ACCOUNT_CHANNEL, grant_credit
from tests.integration.conftest import Oms, money, platform_settings, running_platform
from tests.integration.test_returns import return_of
from tools.infra import LOCAL
from tools.processes import CORE_SERVICES, Platform, eventually_value

pytestmark = pytest.mark.integration

A, B, C = (f"{letter}-{RUN_ID}" for letter in "ABC")
CUSTOMERS = {n: f"c{n}-{RUN_ID}" for n in range(1, 6)}
ADDRESSES = {
    country: {"line1": "1 Main St", "city": "Town", "postal_code": "12345", "country": country}
    for country in ("DE", "FR", "IT", "NL")
}
LATER = datetime.now(UTC) + timedelta(days=75)  # O2 and O6 are 74 days overdue then, O4 45


@pytest.fixture(scope="module")
def reporting_settings() -> RuntimeSettings:
    return platform_settings(f"omrep_{RUN_ID}", f"rep{RUN_ID}.")


@pytest.fixture(scope="module")
async def reporting_platform(reporting_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    async with running_platform(
        "reporting", reporting_settings, {}, services=(*CORE_SERVICES, "reporting")
    ) as running:
        yield running


@dataclass
class Mix:
    oms: Oms
    reports: httpx.AsyncClient
    orders: dict[str, str]  # O1..O7 -> order id
    before_orders: datetime  # after the receipts, before any order


async def _step(oms: Oms, shipment_id: str, action: str, body: dict[str, Any] | None = None) -> None:
    response = await oms.inventory.post(f"/shipments/{shipment_id}/{action}", json=body or {})
    assert response.status_code == 200, response.text


async def _shipment(oms: Oms, order_id: str) -> str:
    async def fetch() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/shipments", params={"order_id": order_id})
        return list(response.json()) if response.status_code == 200 else []

    (shipment,) = await eventually_value(fetch, lambda found: len(found) == 1, timeout=60)
    return str(shipment["shipment_id"])


def _order(
    channel: str, country: str, customer: int, lines: list[tuple[str, int, str]], terms: str = "prepaid"
) -> dict[str, Any]:
    return {
        "channel": channel,
        "customer": {"id": CUSTOMERS[customer], "name": f"Customer {customer}", "region": "anywhere"},
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity, price in lines],
        "currency": "EUR",
        "payment_terms": terms,
        "shipping": {"method": "standard", "address": ADDRESSES[country]},
    }


async def _paid(oms: Oms, order_id: str, amount: str | None = None) -> None:
    invoice = await oms.invoice(order_id)
    response = await oms.pay(order_id, amount or invoice["amount"])
    assert response.status_code == 201, response.text


async def _reports_caught_up(reports: httpx.AsyncClient) -> None:
    async def fresh() -> dict[str, Any]:
        response = await reports.get("/reports/freshness")
        assert response.status_code == 200, response.text
        return dict(response.json())

    await eventually_value(fresh, lambda f: f["lag_seconds"] == 0, timeout=60)


@pytest.fixture(scope="module")
async def mix(reporting_platform: Platform) -> AsyncIterator[Mix]:
    oms = Oms(reporting_platform)
    reports = httpx.AsyncClient(
        base_url=reporting_platform.url("reporting"),
        timeout=60,
        headers=bearer("analyst", subject="analyst-1"),
    )
    try:
        await oms.receive(A, 10, "NORTH")
        await oms.receive(B, 3, "SOUTH")

        async def received() -> list[dict[str, Any]]:
            return list((await reports.get("/reports/inventory")).json()["rows"])

        await eventually_value(received, lambda rows: len(rows) == 2, timeout=60)
        before_orders = datetime.now(UTC)
        await grant_credit(oms, CUSTOMERS[3])
        ids: dict[str, str] = {}

        ids["O1"] = await oms.place(_order("web", "DE", 1, [(A, 2, "10.00")]))
        await _paid(oms, ids["O1"])
        await oms.wait_status(ids["O1"], "confirmed")
        shipment = await _shipment(oms, ids["O1"])
        await _step(oms, shipment, "pick")
        await _step(oms, shipment, "pack")
        await _step(oms, shipment, "dispatch", {"carrier": "DHL", "tracking_number": f"T-{uuid4().hex[:8]}"})
        await _step(oms, shipment, "deliver")

        ids["O2"] = await oms.place(_order("web", "FR", 2, [(A, 1, "10.00"), (B, 1, "20.00")]))
        await _paid(oms, ids["O2"], "10.00")
        ids["O3"] = await oms.place(_order("marketplace", "DE", 1, [(B, 2, "20.00")]))
        await _paid(oms, ids["O3"])
        ids["O4"] = await oms.place(_order(ACCOUNT_CHANNEL, "FR", 3, [(A, 3, "10.00")], terms="on_account"))
        ids["O5"] = await oms.place(_order("web", "DE", 2, [(A, 1, "10.00")]))
        await _paid(oms, ids["O5"])
        await oms.wait_status(ids["O5"], "confirmed")
        cancelled = await oms.order.post(
            f"/orders/{ids['O5']}/cancel", json={"reason": "customer changed mind"}
        )
        assert cancelled.status_code == 202, cancelled.text
        ids["O6"] = await oms.place(_order("phone", "NL", 4, [(C, 2, "15.00")]))
        ids["O7"] = await oms.place(_order(ACCOUNT_CHANNEL, "IT", 5, [(A, 1, "10.00")], terms="on_account"))
        await oms.wait_status(ids["O7"], "on_hold")
        rejected = await oms.order.post(f"/orders/{ids['O7']}/reject", json={"reason": "no credit granted"})
        assert rejected.status_code in (200, 202), rejected.text

        for name, status in (
            ("O1", "completed"),
            ("O2", "awaiting_payment"),
            ("O3", "confirmed"),
            ("O4", "confirmed"),
            ("O5", "cancelled"),
            ("O6", "awaiting_stock"),
            ("O7", "rejected"),
        ):
            await oms.wait_status(ids[name], status, timeout=60)
        assert len(await oms.refunds(ids["O5"])) == 1
        await _reports_caught_up(reports)
        yield Mix(oms, reports, ids, before_orders)
    finally:
        await reports.aclose()
        await oms.close()


async def _json(reports: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await reports.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return dict(response.json())


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["orders"], row["units"], row["net_amount"], row["tax_amount"], row["gross_amount"])


# -- orders -----------------------------------------------------------------------------------


async def test_orders_by_status_count_every_order_once_with_its_invoiced_amounts(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/orders", group_by="status")

    assert {row["key"]["status"]: _figures(row) for row in report["rows"]} == {
        "awaiting_payment": (1, 2, "30.00", "6.00", "36.00"),
        "awaiting_stock": (1, 2, "30.00", "6.00", "36.00"),
        "cancelled": (1, 1, "10.00", "2.00", "12.00"),
        "completed": (1, 2, "20.00", "4.00", "24.00"),
        "confirmed": (2, 5, "70.00", "14.00", "84.00"),
        "rejected": (1, 1, "10.00", "0.00", "10.00"),  # never invoiced: no tax worked out
    }
    assert {row["currency"] for row in report["rows"]} == {"EUR"}


async def test_orders_group_by_combines_region_and_channel(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/orders", group_by="region,channel")

    assert report["group_by"] == ["region", "channel"]
    assert [(row["key"], _figures(row)) for row in report["rows"]] == [
        ({"region": "DE", "channel": "marketplace"}, (1, 2, "40.00", "8.00", "48.00")),
        ({"region": "DE", "channel": "web"}, (2, 3, "30.00", "6.00", "36.00")),
        ({"region": "FR", "channel": "b2b"}, (1, 3, "30.00", "6.00", "36.00")),
        ({"region": "FR", "channel": "web"}, (1, 2, "30.00", "6.00", "36.00")),
        ({"region": "IT", "channel": "b2b"}, (1, 1, "10.00", "0.00", "10.00")),
        ({"region": "NL", "channel": "phone"}, (1, 2, "30.00", "6.00", "36.00")),
    ]


async def test_orders_by_warehouse_and_product_filtered_by_channel(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/orders", group_by="warehouse,product", channel="web")

    assert [(row["key"], _figures(row)) for row in report["rows"]] == [
        ({"warehouse": "NORTH", "product": A}, (3, 4, "40.00", "8.00", "48.00")),
        ({"warehouse": "SOUTH", "product": B}, (1, 1, "20.00", "4.00", "24.00")),
    ]
    by_month = await _json(mix.reports, "/reports/orders", group_by="month", region="NL")
    assert [(row["key"], row["orders"]) for row in by_month["rows"]] == [
        ({"month": f"{datetime.now(UTC):%Y-%m}"}, 1)
    ]


async def test_an_empty_period_has_no_rows_and_bad_parameters_are_named(mix: Mix) -> None:
    future = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    assert (await _json(mix.reports, "/reports/orders", group_by="day", **{"from": future}))["rows"] == []
    assert (await _json(mix.reports, "/reports/payments", **{"from": future}))["rows"] == []

    for path, params, field in (
        ("/reports/orders", {"group_by": "colour"}, "group_by"),
        ("/reports/sales/ranking", {"by": "warehouse"}, "by"),
        ("/reports/sales/ranking", {"by": "product", "top": "0"}, "top"),
        ("/reports/orders", {"format": "pdf"}, "format"),
        ("/reports/orders", {"from": "yesterday"}, "from"),
    ):
        response = await mix.reports.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert field in str(response.json()["errors"][0]["field"]), response.text


# -- sales, payments, receivables ---------------------------------------------------------------


async def test_sales_ranking_leaves_out_cancelled_and_rejected_orders(mix: Mix) -> None:
    def ranked(report: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(r["rank"], r["key"], r["orders"], r["units"], r["revenue"]) for r in report["rows"]]

    by_product = await _json(mix.reports, "/reports/sales/ranking", by="product")
    assert ranked(by_product) == [(1, A, 3, 6, "60.00"), (2, B, 2, 3, "60.00"), (3, C, 1, 2, "30.00")]
    assert ranked(await _json(mix.reports, "/reports/sales/ranking", by="product", top=1)) == [
        (1, A, 3, 6, "60.00")
    ]
    assert ranked(await _json(mix.reports, "/reports/sales/ranking", by="region")) == [
        (1, "DE", 2, 4, "60.00"),
        (2, "FR", 2, 5, "60.00"),
        (3, "NL", 1, 2, "30.00"),
    ]
    by_customer = ranked(await _json(mix.reports, "/reports/sales/ranking", by="customer"))
    assert by_customer == [
        (1, CUSTOMERS[1], 2, 4, "60.00"),
        (2, CUSTOMERS[2], 1, 2, "30.00"),
        (3, CUSTOMERS[3], 1, 3, "30.00"),
        (4, CUSTOMERS[4], 1, 2, "30.00"),
    ]


async def test_payments_collected_refunded_outstanding_and_aged(mix: Mix) -> None:
    now = await _json(mix.reports, "/reports/payments")
    later = await _json(mix.reports, "/reports/payments", as_of=LATER.isoformat())

    (today,) = now["rows"]
    assert {k: v for k, v in today.items() if k != "currency"} == {
        "invoiced": "209.40",  # O1 29.88 + O2 41.88 + O3 53.88 + O4 41.88 + O6 41.88 (O5 void)
        "collected": "111.64",  # O1 29.88 + O2 10.00 (partial) + O3 53.88 + O5 17.88
        "refunded": "17.88",  # O5, cancelled after payment
        "outstanding": "115.64",  # O2 31.88 + O4 41.88 + O6 41.88
        "not_due": "115.64",
        "overdue_0_30": "0.00",
        "overdue_31_60": "0.00",
        "overdue_61_90": "0.00",
        "overdue_over_90": "0.00",
        "credited": "0.00",  # nothing was returned
    }
    (aged,) = later["rows"]
    assert (aged["not_due"], aged["overdue_31_60"], aged["overdue_61_90"]) == ("0.00", "41.88", "73.76")


async def test_receivables_list_each_customer_s_open_invoices(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/receivables", as_of=LATER.isoformat())

    assert [
        (r["customer_id"], r["order_id"], r["total"], r["amount_paid"], r["outstanding"], r["bucket"])
        for r in report["rows"]
    ] == [
        (CUSTOMERS[2], mix.orders["O2"], "41.88", "10.00", "31.88", "61-90"),
        (CUSTOMERS[3], mix.orders["O4"], "41.88", "0.00", "41.88", "31-60"),
        (CUSTOMERS[4], mix.orders["O6"], "41.88", "0.00", "41.88", "61-90"),
    ]
    # Due 30 days after it was issued, a few seconds after LATER was taken: not quite 45 days.
    assert report["rows"][1]["days_past_due"] == 44


# -- inventory, fulfilment, production ------------------------------------------------------------


async def test_inventory_levels_stock_outs_turnover_and_backorders(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/inventory")

    def levels(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (
                r["sku"],
                r["warehouse"],
                r["on_hand"],
                r["reserved"],
                r["available"],
                r["backordered"],
                r["stock_outs"],
                r["dispatched"],
                r["turnover"],
            )
            for r in rows
        ]

    assert levels(report["rows"]) == [
        (A, "NORTH", 8, 4, 4, 0, 0, 2, "0.2500"),  # O2 1 + O4 3 reserved; O1's 2 dispatched
        (B, "SOUTH", 3, 3, 0, 0, 1, 0, "0.0000"),  # O2 and O3 took the last of it
        (C, None, 0, 0, 0, 2, 0, 0, None),  # O6 waits for 2
    ]
    then = await _json(mix.reports, "/reports/inventory", as_of=mix.before_orders.isoformat())
    assert levels(then["rows"]) == [
        (A, "NORTH", 10, 0, 10, 0, 0, 2, "0.2000"),
        (B, "SOUTH", 3, 0, 3, 0, 1, 0, "0.0000"),
    ]
    south = await _json(mix.reports, "/reports/inventory", warehouse="SOUTH")
    assert [r["sku"] for r in south["rows"]] == [B]


async def test_fulfilment_funnel_reasons_and_timings(mix: Mix) -> None:
    report = await _json(mix.reports, "/reports/fulfilment")

    assert [
        (r["stage"], r["orders"], r["conversion_from_previous"], r["conversion_from_placed"])
        for r in report["rows"]
    ] == [
        ("placed", 7, "1.0000", "1.0000"),
        ("confirmed", 4, "0.5714", "0.5714"),  # O1, O3, O4 and O5 (confirmed, then cancelled)
        ("shipped", 1, "0.2500", "0.1429"),
        ("delivered", 1, "1.0000", "0.1429"),
        ("completed", 1, "1.0000", "0.1429"),
    ]
    cancelled = await mix.oms.get_order(mix.orders["O5"])
    rejected = await mix.oms.get_order(mix.orders["O7"])
    assert report["cancellations"] == [{"reason": cancelled["reason"], "orders": 1, "rate": "0.1429"}]
    assert report["rejections"] == [{"reason": rejected["reason"], "orders": 1, "rate": "0.1429"}]
    assert "customer changed mind" in cancelled["reason"]
    timing = report["time_to_confirmation"]
    assert Decimal("0") < Decimal(timing["p50_seconds"]) <= Decimal(timing["p95_seconds"]) < Decimal("300")
    assert Decimal(report["time_to_delivery"]["p50_seconds"]) > 0
    assert report["needs_attention"] == 0


async def test_production_is_empty_before_production_publishes(mix: Mix) -> None:
    assert (await _json(mix.reports, "/reports/production"))["rows"] == []


# -- exports ------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    """One spelling per value across the formats: decimals by value, times in UTC to the
    millisecond (what a spreadsheet keeps)."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return to_millisecond(moment.astimezone(UTC)).isoformat()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return str(Decimal(str(value)).normalize())
    try:
        return str(Decimal(value).normalize())
    except ArithmeticError:
        pass
    try:
        return _canonical(datetime.fromisoformat(value))
    except ValueError:
        return str(value)


def _rows_of(fmt: str, content: bytes) -> list[dict[str, str]]:
    if fmt == "csv":
        return [
            {k: _canonical(v) for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(content.decode()))
        ]
    if fmt == "xlsx":
        sheet = load_workbook(io.BytesIO(content), read_only=True).active
        assert sheet is not None
        header, *rows = list(sheet.iter_rows(values_only=True))
        return [{str(k): _canonical(v) for k, v in zip(header, row, strict=True)} for row in rows]
    return [
        {k: _canonical(v) for k, v in row.items()} for row in pq.read_table(io.BytesIO(content)).to_pylist()
    ]


EXPORTS = [
    ("/reports/orders", {"group_by": "region,channel"}, "orders"),
    ("/reports/sales/ranking", {"by": "product"}, "sales-ranking-by-product"),
    ("/reports/payments", {"as_of": LATER.isoformat()}, "payments"),
    ("/reports/receivables", {"as_of": LATER.isoformat()}, "receivables"),
    ("/reports/inventory", {}, "inventory"),
    ("/reports/fulfilment", {}, "fulfilment"),
    ("/reports/production", {}, "production"),
]


@pytest.mark.parametrize(("path", "params", "name"), EXPORTS, ids=[e[2] for e in EXPORTS])
async def test_every_report_exports_the_same_rows_as_csv_xlsx_and_parquet(
    mix: Mix, path: str, params: dict[str, str], name: str
) -> None:
    report = await _json(mix.reports, path, **params)
    files = {}
    for fmt, media in (
        ("csv", "text/csv"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("parquet", "application/vnd.apache.parquet"),
    ):
        by_parameter = await mix.reports.get(path, params={**params, "format": fmt})
        by_accept = await mix.reports.get(path, params=params, headers={"Accept": media})
        for response in (by_parameter, by_accept):
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(media)
            disposition = response.headers["content-disposition"]
            assert disposition.startswith(
                f'attachment; filename="ordermesh-{name}-'
            ) and disposition.endswith(f'.{fmt}"')
        assert by_parameter.content == by_accept.content or fmt != "csv"
        files[fmt] = _rows_of(fmt, by_parameter.content)

    assert files["csv"] == files["xlsx"] == files["parquet"]
    if name == "fulfilment":
        funnel = {r["item"]: r["orders"] for r in files["csv"] if r["section"] == "funnel"}
        assert funnel == {r["stage"]: str(r["orders"]) for r in report["rows"]}
        return
    assert files["csv"] == [_flattened(row) for row in report["rows"]]


def _flattened(row: dict[str, Any]) -> dict[str, str]:
    """A JSON row as a file has it: the orders report's `key` as one column per dimension."""
    flat = {k: _canonical(v) for k, v in row.items() if not isinstance(v, dict)}
    key = row.get("key")
    if isinstance(key, dict):
        flat |= {k: _canonical(v) for k, v in key.items()}
    return flat


# -- the order desk: amended, split and merged orders (docs/reporting.md) ------------------------
# After the mix (its tests above read every order), the order desk changes orders of customer
# c6 (stock D 20 and E 10 at NORTH, F none):
#   P1 D x2 @10, paid, amended up to D x2 + E x2 @5 -> awaiting_payment (the difference owed)
#   P2 D x3 @10, paid, amended down to D x1 -> confirmed, the overpayment refunded
#   P3 D x1 + E x2, paid, E x2 split off into P3s -> both confirmed, P3s paid by a transfer
#   P4 D x1 and P5 E x1, paid, merged into P45 -> one shipping fee, the other refunded
#   P6 D x1 + F x2, paid while backordered, F x2 split off into P6s -> P6 confirmed, P6s waits
# The reports from `Desk.start` must say what the orders, invoices, payments and stock say.

D, E, F = (f"{letter}-{RUN_ID}" for letter in "DEF")
DESK_CUSTOMER = f"c6-{RUN_ID}"


@dataclass
class Desk:
    start: datetime
    orders: dict[str, str]  # P1.. -> order id, the split and merge results included
    paid: Decimal  # what the test paid, by card


def _desk_order(lines: list[tuple[str, int, str]]) -> dict[str, Any]:
    body = _order("web", "DE", 1, lines)
    return body | {"customer": {"id": DESK_CUSTOMER, "name": "Customer 6", "region": "anywhere"}}


async def _desk_change_done(oms: Oms, order_id: str, *statuses: str) -> dict[str, Any]:
    """The order once no change of the order desk is under way, in one of `statuses`."""
    return dict(
        await eventually_value(
            lambda: oms.get_order(order_id),
            lambda o: o.get("change") is None and o["status"] in statuses,
            timeout=60,
        )
    )


async def _desk_post(oms: Oms, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await oms.order.post(path, json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
async def desk(mix: Mix) -> Desk:
    oms = mix.oms
    await oms.receive(D, 20, "NORTH")
    await oms.receive(E, 10, "NORTH")
    start = datetime.now(UTC)
    paid = Decimal("0.00")
    ids: dict[str, str] = {}

    async def confirmed(name: str, lines: list[tuple[str, int, str]]) -> None:
        nonlocal paid
        ids[name] = await oms.place(_desk_order(lines))
        paid += money((await oms.invoice(ids[name]))["amount"])
        await _paid(oms, ids[name])
        await oms.wait_status(ids[name], "confirmed")

    await confirmed("P1", [(D, 2, "10.00")])
    await _desk_post(
        oms,
        f"/orders/{ids['P1']}/amend",
        {"lines": [line(D, 2, "10.00"), line(E, 2, "5.00")], "reason": "two more"},
    )
    await _desk_change_done(oms, ids["P1"], "awaiting_payment")

    await confirmed("P2", [(D, 3, "10.00")])
    await _desk_post(oms, f"/orders/{ids['P2']}/amend", {"lines": [line(D, 1, "10.00")], "reason": "fewer"})
    await _desk_change_done(oms, ids["P2"], "confirmed")
    await eventually_value(lambda: oms.refunds(ids["P2"]), lambda found: len(found) == 1, timeout=60)

    await confirmed("P3", [(D, 1, "10.00"), (E, 2, "5.00")])
    split = await _desk_post(
        oms, f"/orders/{ids['P3']}/split", {"lines": [{"sku": E, "quantity": 2}], "reason": "ship apart"}
    )
    ids["P3s"] = split["new_order_id"]
    await _desk_change_done(oms, ids["P3"], "confirmed")
    await oms.wait_status(ids["P3s"], "confirmed", timeout=60)

    await confirmed("P4", [(D, 1, "10.00")])
    await confirmed("P5", [(E, 1, "5.00")])
    merged = await _desk_post(
        oms, "/orders/merge", {"order_ids": [ids["P4"], ids["P5"]], "reason": "one parcel"}
    )
    ids["P45"] = merged["order_id"]
    await oms.wait_status(ids["P45"], "confirmed", timeout=60)
    for name in ("P4", "P5"):
        await _desk_change_done(oms, ids[name], "merged")
    await eventually_value(lambda: oms.refunds(ids["P45"]), lambda found: len(found) == 1, timeout=60)

    ids["P6"] = await oms.place(_desk_order([(D, 1, "10.00"), (F, 2, "5.00")]))
    await oms.wait_status(ids["P6"], "awaiting_stock")
    paid += money((await oms.invoice(ids["P6"]))["amount"])
    await _paid(oms, ids["P6"])
    split = await _desk_post(
        oms,
        f"/orders/{ids['P6']}/split",
        {"lines": [{"sku": F, "quantity": 2}], "reason": "ship what we have"},
    )
    ids["P6s"] = split["new_order_id"]
    await _desk_change_done(oms, ids["P6"], "confirmed")
    await oms.wait_status(ids["P6s"], "awaiting_stock", timeout=60)
    await eventually_value(
        lambda: oms.invoice(ids["P6s"]), lambda invoice: invoice["status"] == "paid", timeout=60
    )
    await _reports_caught_up(mix.reports)
    return Desk(start, ids, paid)


def line(sku: str, quantity: int, price: str) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price}


def _cents(amount: Decimal) -> str:
    return f"{amount:.2f}"


@dataclass
class Sources:
    """What the order, billing and inventory services say about the desk's orders."""

    orders: dict[str, dict[str, Any]]
    invoices: dict[str, dict[str, Any]]
    payments: list[dict[str, Any]]
    refunds: list[dict[str, Any]]


async def _sources(oms: Oms, desk: Desk) -> Sources:
    orders = {name: await oms.get_order(order_id) for name, order_id in desk.orders.items()}
    invoices = {name: await oms.invoice(order_id) for name, order_id in desk.orders.items()}
    payments: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    for order_id in desk.orders.values():
        response = await oms.billing.get("/payments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        payments += response.json()
        refunds += await oms.refunds(order_id)
    return Sources(orders, invoices, payments, refunds)


def _expected_order_rows(sources: Sources, dimension: str) -> dict[str, tuple[Any, ...]]:
    """The orders report's figures by status or product, from the orders' lines and their
    invoices' lines; a merged order counts only by status, with nothing in it."""
    keyed: dict[str, dict[str, Any]] = {}
    zero = Decimal("0.00")
    for name, order in sources.orders.items():
        merged = order["status"] == "merged"
        if merged and dimension != "status":
            continue
        invoice_lines = sources.invoices[name]["lines"]
        skus = {entry["sku"] for entry in order["lines"]}
        for sku in sorted(skus) if dimension == "product" else [None]:
            key = order["status"] if dimension == "status" else str(sku)
            mine = [entry for entry in invoice_lines if sku is None or entry["sku"] == sku]
            ordered = [entry for entry in order["lines"] if sku is None or entry["sku"] == sku]
            row = keyed.setdefault(
                key, {"orders": set(), "units": 0, "net": zero, "tax": zero, "gross": zero}
            )
            row["orders"].add(name)
            if merged:
                continue
            row["units"] += sum(entry["quantity"] for entry in ordered)
            for part in ("net", "tax", "gross"):
                row[part] += sum(money(entry[part]) for entry in mine)
    return {
        key: (len(r["orders"]), r["units"], _cents(r["net"]), _cents(r["tax"]), _cents(r["gross"]))
        for key, r in keyed.items()
    }


async def test_amended_split_and_merged_orders_are_reported_as_their_orders_and_invoices_stand(
    mix: Mix, desk: Desk
) -> None:
    sources = await _sources(mix.oms, desk)
    statuses = {name: order["status"] for name, order in sources.orders.items()}
    assert statuses == {
        "P1": "awaiting_payment",
        "P2": "confirmed",
        "P3": "confirmed",
        "P3s": "confirmed",
        "P4": "merged",
        "P5": "merged",
        "P45": "confirmed",
        "P6": "confirmed",
        "P6s": "awaiting_stock",
    }
    since = {"from": desk.start.isoformat()}

    by_status = await _json(mix.reports, "/reports/orders", group_by="status", **since)
    by_product = await _json(mix.reports, "/reports/orders", group_by="product", **since)

    assert {row["key"]["status"]: _figures(row) for row in by_status["rows"]} == _expected_order_rows(
        sources, "status"
    )
    assert {row["key"]["product"]: _figures(row) for row in by_product["rows"]} == _expected_order_rows(
        sources, "product"
    )
    # Anchors that do not depend on the sums above: the merged orders' own row, and D's units
    # (P1 2 + P2 1 after its amendment + P3 1 + P45 1 from P4 + P6 1).
    merged = next(row for row in by_status["rows"] if row["key"]["status"] == "merged")
    assert _figures(merged) == (2, 0, "0.00", "0.00", "0.00")
    assert next(row for row in by_product["rows"] if row["key"]["product"] == D)["units"] == 6


async def test_payments_of_changed_orders_count_money_once_and_owe_what_billing_says(
    mix: Mix, desk: Desk
) -> None:
    sources = await _sources(mix.oms, desk)
    transfers = [p for p in sources.payments if p["method"] == "transfer"]
    assert len(transfers) >= 3, "P3s, P6s and P45 were paid by transfers"
    owed = Decimal("0.00")
    for name, invoice in sources.invoices.items():
        if invoice["status"] == "open":
            paid_back = sum(
                (
                    money(r["amount"])
                    for r in sources.refunds
                    if r["order_id"] == desk.orders[name] and r["credit_note_id"]
                ),
                Decimal("0.00"),
            )
            owed += money(invoice["amount"]) - money(invoice["amount_paid"]) + paid_back

    (row,) = (await _json(mix.reports, "/reports/payments", **{"from": desk.start.isoformat()}))["rows"]

    assert row["invoiced"] == _cents(sum((money(i["amount"]) for i in sources.invoices.values()), Decimal(0)))
    assert row["collected"] == _cents(desk.paid)  # by card; transfers moved that money, no more
    assert row["collected"] == _cents(
        sum((money(p["amount"]) for p in sources.payments if p["method"] != "transfer"), Decimal(0))
    )
    assert row["refunded"] == _cents(sum((money(r["amount"]) for r in sources.refunds), Decimal(0)))
    assert len(sources.refunds) == 2  # P2's overpayment and P45's second shipping fee
    p1 = sources.invoices["P1"]
    assert owed == money(p1["amount"]) - money(p1["amount_paid"]) > 0  # only P1's difference is owed
    assert row["outstanding"] == _cents(owed)
    assert {sources.invoices[name]["status"] for name in ("P4", "P5")} == {"merged"}


async def test_stock_reserved_and_backordered_follow_amendments_splits_and_merges(
    mix: Mix, desk: Desk
) -> None:
    expected = {
        D: (20, 6, 14, 0),  # P1 2, P2 1 (amended down from 3), P3 1, P45 1 (from P4), P6 1
        E: (10, 5, 5, 0),  # P1 2 (amended up), P3s 2 (split from P3), P45 1 (from P5)
    }
    for sku, (on_hand, reserved, available, backordered) in expected.items():
        stock = await mix.oms.stock(sku)
        assert (stock["on_hand"], stock["reserved"]) == (on_hand, reserved)
        (row,) = (await _json(mix.reports, "/reports/inventory", sku=sku))["rows"]
        assert (row["warehouse"], row["on_hand"], row["reserved"], row["available"], row["backordered"]) == (
            "NORTH",
            on_hand,
            reserved,
            available,
            backordered,
        )
    waiting = await mix.oms.stock(F)
    assert [(b["order_id"], b["quantity"]) for b in waiting["backorders"]] == [(desk.orders["P6s"], 2)]
    (row,) = (await _json(mix.reports, "/reports/inventory", sku=F))["rows"]
    assert (row["warehouse"], row["reserved"], row["backordered"]) == (None, 0, 2)  # moved from P6 to P6s


# -- returns: credit notes (docs/reporting.md "Returns and credit notes") ----------------------------
# Customer c7, on account, orders G x3 @10 (30.00 + 6.00 tax + 5.88 shipping = 41.88), pays
# 20.00 of it, receives the goods and sends two units back for a refund: billing credits 24.00
# (what the two were invoiced at, tax included; the shipping fee is not credited) and refunds
# the 20.00 paid, so 41.88 - 24.00 - (20.00 - 20.00) = 17.88 is still owed.

G = f"G-{RUN_ID}"
RETURN_CUSTOMER = f"c7-{RUN_ID}"


@dataclass
class Returned:
    start: datetime
    order_id: str
    done: dict[str, Any]  # the completed return, as the order service shows it


@pytest.fixture(scope="module")
async def returned(mix: Mix) -> Returned:
    oms = mix.oms
    await oms.receive(G, 3, "NORTH")
    await grant_credit(oms, RETURN_CUSTOMER)
    start = datetime.now(UTC)
    body = _order(ACCOUNT_CHANNEL, "DE", 1, [(G, 3, "10.00")], terms="on_account")
    body["customer"] = {"id": RETURN_CUSTOMER, "name": "Customer 7", "region": "anywhere"}
    order_id = await oms.place(body)
    await oms.wait_status(order_id, "confirmed")
    await _paid(oms, order_id, "20.00")
    shipment = await _shipment(oms, order_id)
    await _step(oms, shipment, "pick")
    await _step(oms, shipment, "pack")
    await _step(oms, shipment, "dispatch", {"carrier": "DHL", "tracking_number": f"T-{uuid4().hex[:8]}"})
    await _step(oms, shipment, "deliver")
    await oms.wait_status(order_id, "delivered")  # on account, not paid in full: not completed

    requested = await oms.order.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"sku": G, "quantity": 2, "reason": "arrived scratched"}],
            "resolution": "refund",
        },
    )
    assert requested.status_code == 201, requested.text
    return_id = requested.json()["return_id"]
    assert (await oms.order.post(f"/returns/{return_id}/approve")).status_code == 200
    received = await oms.order.post(
        f"/returns/{return_id}/receive",
        json={"lines": [{"sku": G, "quantity": 2, "condition": "resellable"}]},
    )
    assert received.status_code == 200, received.text
    done = await return_of(oms, return_id, "completed")
    await _reports_caught_up(mix.reports)
    return Returned(start, order_id, done)


async def test_a_return_s_credit_note_lowers_what_payments_and_receivables_say_is_owed(
    mix: Mix, returned: Returned
) -> None:
    since = {"from": returned.start.isoformat()}
    assert (money(returned.done["credit_amount"]), money(returned.done["refund_amount"])) == (
        Decimal("24.00"),
        Decimal("20.00"),
    )

    (row,) = (await _json(mix.reports, "/reports/payments", **since))["rows"]
    receivables = await _json(mix.reports, "/reports/receivables", customer=RETURN_CUSTOMER)

    assert {k: v for k, v in row.items() if k != "currency"} == {
        "invoiced": "41.88",  # as issued: a credit note does not change the invoice
        "collected": "20.00",
        "refunded": "20.00",  # what was paid, given back with the credit note
        "credited": "24.00",
        "outstanding": "17.88",
        "not_due": "17.88",
        "overdue_0_30": "0.00",
        "overdue_31_60": "0.00",
        "overdue_61_90": "0.00",
        "overdue_over_90": "0.00",
    }
    assert [
        (r["order_id"], r["total"], r["amount_paid"], r["credited"], r["outstanding"], r["bucket"])
        for r in receivables["rows"]
    ] == [(returned.order_id, "41.88", "20.00", "24.00", "17.88", "not_due")]

    # Billing owes the same: a cent more than 17.88 is refused, 17.88 settles the invoice, and
    # it is no longer receivable.
    over = await mix.oms.pay(returned.order_id, "17.89")
    assert over.status_code == 422 and "17.88 still owed" in over.text, over.text
    assert (await mix.oms.pay(returned.order_id, "17.88")).status_code == 201
    await eventually_value(
        lambda: mix.oms.invoice(returned.order_id), lambda invoice: invoice["status"] == "paid", timeout=60
    )
    await _reports_caught_up(mix.reports)
    (settled,) = (await _json(mix.reports, "/reports/payments", **since))["rows"]
    assert (settled["collected"], settled["credited"], settled["outstanding"]) == ("37.88", "24.00", "0.00")
    assert (await _json(mix.reports, "/reports/receivables", customer=RETURN_CUSTOMER))["rows"] == []


# -- freshness, access, rebuild ---------------------------------------------------------------------


async def test_freshness_names_every_source_and_is_caught_up(mix: Mix) -> None:
    freshness = await _json(mix.reports, "/reports/freshness")
    by_topic = {s["topic"]: s for s in freshness["sources"]}
    assert set(by_topic) == {
        "oms.order.events.v1",
        "oms.inventory.events.v1",
        "oms.billing.events.v1",
        "oms.production.events.v1",
    }
    assert freshness["lag_seconds"] == 0
    assert all(s["messages_behind"] == 0 for s in freshness["sources"])
    assert by_topic["oms.order.events.v1"]["events_applied"] >= 7 + 6  # placed, and at least one change each
    metrics = await mix.reports.get("/metrics")
    assert 'reporting_lag_seconds{topic="oms.order.events.v1"}' in metrics.text


async def test_reports_need_reports_read(mix: Mix) -> None:
    url = str(mix.reports.base_url)
    async with httpx.AsyncClient(base_url=url, headers=bearer("warehouse")) as warehouse:
        refused = await warehouse.get("/reports/orders")
    assert refused.status_code == 403
    assert "reports:read" in refused.text
    async with httpx.AsyncClient(base_url=url) as anonymous:
        assert (await anonymous.get("/reports/orders")).status_code == 401


async def test_a_rebuild_by_replay_gives_the_same_reports(
    mix: Mix,
    desk: Desk,
    returned: Returned,
    reporting_settings: RuntimeSettings,
    reporting_platform: Platform,
) -> None:
    # The mix, the order desk's changes (amendments, a split, a merge, transfers, a moved
    # backorder) and the return's credit note and refund are all replayed.
    queries: list[tuple[str, dict[str, Any]]] = [
        ("/reports/orders", {"group_by": "status,product", "from": desk.start.isoformat()}),
        ("/reports/payments", {"from": desk.start.isoformat(), "as_of": LATER.isoformat()}),
        ("/reports/payments", {"from": returned.start.isoformat(), "as_of": LATER.isoformat()}),
        ("/reports/orders", {"group_by": "region,channel"}),
        ("/reports/orders", {"group_by": "status,warehouse,product"}),
        ("/reports/sales/ranking", {"by": "customer"}),
        ("/reports/payments", {"as_of": LATER.isoformat()}),
        ("/reports/receivables", {"as_of": LATER.isoformat()}),
        ("/reports/inventory", {}),
        ("/reports/inventory", {"as_of": mix.before_orders.isoformat()}),
        ("/reports/fulfilment", {}),
    ]
    before = [await _json(mix.reports, path, **params) for path, params in queries]

    result = await rebuild(reporting_settings, progress=False)

    assert result.events > 0 and result.skipped == 0
    assert not result.offsets_moved  # the running service keeps its own offsets
    after = [await _json(mix.reports, path, **params) for path, params in queries]
    assert after == before
    await _reports_caught_up(mix.reports)
    assert [await _json(mix.reports, path, **params) for path, params in queries] == before

    # With the service stopped, its consumer group is moved to where the replay ended: it
    # starts from there, and the reports stay the same.
    reporting_platform.kill("reporting")
    group = reporting_settings.topic(CONSUMER)
    await eventually_value(lambda: group_has_members(reporting_settings, group), lambda busy: not busy)
    stopped = await rebuild(reporting_settings, progress=False)
    assert stopped.offsets_moved and stopped.events == result.events
    await asyncio.to_thread(reporting_platform.start, "reporting")
    await _reports_caught_up(mix.reports)
    assert [await _json(mix.reports, path, **params) for path, params in queries] == before


async def test_a_rebuild_marks_as_applied_what_a_live_consumer_behind_it_reads_again(
    mix: Mix, reporting_settings: RuntimeSettings, reporting_platform: Platform
) -> None:
    """A running reporting service that is behind keeps its offsets through a rebuild: the
    records between them and the replay's end reach it again, and its inbox must drop every
    one of them (the rebuild writes inbox rows for exactly those, not for the history before)."""
    settings, group = reporting_settings, reporting_settings.topic(CONSUMER)
    before = await _json(mix.reports, "/reports/orders", group_by="status,product")
    reporting_platform.kill("reporting")
    await eventually_value(lambda: group_has_members(settings, group), lambda busy: not busy)

    # The group is put half-way through every partition and held by a member that reads
    # nothing, as a service that is behind would be.
    behind = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await behind.start()
    try:
        ends = await source_end_offsets(settings, behind)
        halfway = {tp: end // 2 for tp, end in ends.items() if end > 1}
        behind.assign(list(halfway))
        await behind.commit(halfway)
    finally:
        await behind.stop()
    member = AIOKafkaConsumer(
        *(settings.topic(topic) for topic in SOURCE_TOPICS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
    )
    await member.start()
    try:
        await eventually_value(lambda: group_has_members(settings, group), bool)
        result = await rebuild(settings, progress=False)
    finally:
        await member.stop()
    assert not result.offsets_moved

    read_again = await _projected_event_ids(settings, halfway, ends)
    db = await asyncpg.connect(settings.dsn("reporting"))
    try:
        marked = {
            r["event_id"] for r in await db.fetch("SELECT event_id FROM inbox WHERE consumer = $1", group)
        }
    finally:
        await db.close()
    assert read_again and marked == read_again

    # The service comes back half-way: everything it reads again is a duplicate it drops.
    await asyncio.to_thread(reporting_platform.start, "reporting")
    await _reports_caught_up(mix.reports)
    handled = await _handled_by_outcome(reporting_platform.url("reporting"), group)
    assert handled.get("duplicate") == len(read_again) and not handled.get("handled")
    assert await _json(mix.reports, "/reports/orders", group_by="status,product") == before


async def _projected_event_ids(
    settings: RuntimeSettings, start: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> set[UUID]:
    """The ids of the events reporting projects among the records from `start` to `ends`."""
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    ids: set[UUID] = set()
    try:
        reader.assign(list(start))
        for tp, offset in start.items():
            reader.seek(tp, offset)
        remaining = {tp for tp in start if start[tp] < ends[tp]}
        while remaining:
            for tp, records in (await reader.getmany(*remaining, timeout_ms=1000)).items():
                for record in records:
                    if record.offset < ends[tp]:
                        decoded = decode(record.value or b"")
                        if type(decoded.message) in PROJECTIONS:
                            ids.add(decoded.envelope.event_id)
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await reader.stop()
    return ids


async def _handled_by_outcome(url: str, group: str) -> dict[str, float]:
    """The reporting consumer's ordermesh_messages_handled_total, summed per outcome."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    outcomes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ordermesh_messages_handled_total":
                outcome = sample.labels["outcome"]
                outcomes[outcome] = outcomes.get(outcome, 0.0) + sample.value
    return outcomes


async def test_the_analyst_role_reads_the_reports_views_and_nothing_else(
    mix: Mix, reporting_settings: RuntimeSettings
) -> None:
    role = f"{reporting_settings.db_prefix}_analyst"
    # The local server's superuser, over its socket (tools/infra.py trusts local connections).
    login = AdminLogin(str(LOCAL / "pg" / "sockets"), reporting_settings.pg_port, "postgres")
    readable = await grant_analyst_role(reporting_settings, login, role, "analyst-pw")
    try:
        assert {"report_orders", "report_receivables", "orders", "stock_movements"} <= set(readable)
        assert not {"inbox", "outbox", "events"} & set(readable)
        analyst = await asyncpg.connect(
            host=reporting_settings.pg_host,
            port=reporting_settings.pg_port,
            user=role,
            password="analyst-pw",
            database=reporting_settings.database_name("reporting"),
        )
        try:
            mix_orders = list(mix.orders.values())
            assert (
                await analyst.fetchval(
                    "SELECT count(*) FROM report_orders WHERE order_id = ANY($1)", mix_orders
                )
                == 7
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.fetch("SELECT * FROM inbox")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await analyst.execute("DELETE FROM orders")
        finally:
            await analyst.close()
        # Locally PUBLIC may connect to any database (deploy/k8s takes that away), but no
        # table of another service's database is readable.
        elsewhere = await asyncpg.connect(
            host=reporting_settings.pg_host,
            port=reporting_settings.pg_port,
            user=role,
            password="analyst-pw",
            database=reporting_settings.database_name("order"),
        )
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await elsewhere.fetch("SELECT * FROM events LIMIT 1")
        finally:
            await elsewhere.close()
    finally:
        await drop_analyst_role(reporting_settings, login, role)
