"""The reporting dashboard in a real headless Chromium (Debian's, driven through its chromedriver;
`make test` installs both when missing: tools/browser.py): with a known set of orders in the
reporting service, the figures the page renders are the ones the report endpoints answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer, mint
from tests.conftest import RUN_ID
from tests.integration.conftest import Oms, platform_settings, running_platform
from tools import browser
from tools.processes import CORE_SERVICES, Platform, eventually_value

pytestmark = pytest.mark.integration

A, B = (f"DASH-{letter}-{RUN_ID}" for letter in "AB")
FUNNEL = ("placed", "confirmed", "shipped", "delivered", "completed")
AGEING = ("overdue_0_30", "overdue_31_60", "overdue_61_90", "overdue_over_90")


@pytest.fixture(scope="module")
async def dashboard_platform() -> AsyncIterator[Platform]:
    settings: RuntimeSettings = platform_settings(f"omdash_{RUN_ID}", f"dash{RUN_ID}.")
    async with running_platform("dashboard", settings, {}, services=(*CORE_SERVICES, "reporting")) as running:
        yield running


@dataclass
class Known:
    """The data set: what was placed, and from when the dashboard should look."""

    oms: Oms
    reports: httpx.AsyncClient
    since: str
    orders: dict[str, str]


async def reports_caught_up(reports: httpx.AsyncClient, placed: int, since: str) -> None:
    async def state() -> tuple[float | None, int]:
        freshness = (await reports.get("/reports/freshness")).json()
        funnel = (await reports.get("/reports/fulfilment", params={"from": since})).json()
        return freshness["lag_seconds"], next(r["orders"] for r in funnel["rows"] if r["stage"] == "placed")

    await eventually_value(state, lambda found: found == (0, placed), timeout=60)


@pytest.fixture(scope="module")
async def known(dashboard_platform: Platform) -> AsyncIterator[Known]:
    oms = Oms(dashboard_platform)
    reports = httpx.AsyncClient(
        base_url=dashboard_platform.url("reporting"), timeout=30, headers=bearer("analyst", subject="analyst")
    )
    try:
        await oms.receive(A, 10, "NORTH")
        await oms.receive(B, 1, "SOUTH")
        since = datetime.now(UTC).isoformat()
        orders = {
            "paid": await oms.place(web_order("web", [(A, 2, "25.00")])),
            "part-paid": await oms.place(web_order("phone", [(A, 1, "25.00"), (B, 1, "40.00")])),
            "backordered": await oms.place(web_order("web", [(B, 2, "40.00")])),
            "cancelled": await oms.place(web_order("phone", [(A, 1, "25.00")])),
        }
        await pay(oms, orders["paid"])
        await pay(oms, orders["part-paid"], "10.00")
        await oms.wait_status(orders["cancelled"], "awaiting_payment")
        cancel = await oms.order.post(
            f"/orders/{orders['cancelled']}/cancel", json={"reason": "changed mind"}
        )
        assert cancel.status_code in (200, 202), cancel.text
        for name, status in (
            ("paid", "confirmed"),
            ("part-paid", "awaiting_payment"),
            ("backordered", "awaiting_stock"),
            ("cancelled", "cancelled"),
        ):
            await oms.wait_status(orders[name], status, timeout=60)
        await reports_caught_up(reports, 4, since)
        yield Known(oms, reports, since, orders)
    finally:
        await reports.aclose()
        await oms.close()


def web_order(channel: str, lines: list[tuple[str, int, str]]) -> dict[str, Any]:
    return {
        "channel": channel,
        "customer": {"name": "Grace Hopper", "email": "grace@example.com", "region": "north"},
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity, price in lines],
        "currency": "EUR",
        "payment_terms": "prepaid",
        "shipping": {"method": "pickup"},
    }


async def pay(oms: Oms, order_id: str, amount: str | None = None) -> None:
    invoice = await oms.invoice(order_id)
    response = await oms.pay(order_id, amount or invoice["amount"])
    assert response.status_code == 201, response.text


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    binary, driver = browser.chromium_path(), browser.chromedriver_path()
    assert binary and driver, "Chromium or chromedriver is missing: `make browser` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    # As root (CI, containers) Chromium's sandbox cannot start; /dev/shm may be small there.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2000"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)
    try:
        yield session
    finally:
        session.quit()


def open_dashboard(chromium: webdriver.Chrome, base: str, query: dict[str, Any], token: str | None) -> None:
    # The page keeps its token for the tab's life (sessionStorage): forget an earlier test's.
    chromium.get(f"{base}/health")
    chromium.execute_script("sessionStorage.clear()")
    fragment = f"#token={token}" if token else ""
    chromium.get(f"{base}/dashboard?{urlencode(query)}{fragment}")


def wait_for(chromium: webdriver.Chrome, state: str, refreshes: int = 1, timeout: float = 30) -> None:
    def reached(driver: webdriver.Chrome) -> bool:
        body = driver.find_element(By.TAG_NAME, "body")
        done = int(body.get_attribute("data-refreshes") or 0)
        return body.get_attribute("data-state") == state and (state != "ready" or done >= refreshes)

    try:
        WebDriverWait(chromium, timeout, poll_frequency=0.1).until(reached)
    except TimeoutException:
        problem = chromium.find_element(By.ID, "problem").text
        raise AssertionError(f"the page did not reach {state!r}; it says: {problem!r}") from None


def rendered(chromium: webdriver.Chrome) -> dict[str, str]:
    """Every figure on the page by its data-metric name, as the page shows it."""
    figures = chromium.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-metric]')]"
        ".map((e) => [e.dataset.metric, e.textContent]))"
    )
    return dict(figures)


# -- what the page should say, from the API ----------------------------------------------------


def money_total(rows: list[dict[str, Any]], field: str) -> str:
    by_currency: dict[str, Decimal] = {}
    for row in rows:
        by_currency[row["currency"]] = by_currency.get(row["currency"], Decimal(0)) + Decimal(row[field])
    return " · ".join(f"{amount:.2f} {currency}" for currency, amount in sorted(by_currency.items()))


def percent(rate: str | None) -> str:
    return "–" if rate is None else f"{Decimal(rate).scaleb(2):f} %"


async def expected_figures(reports: httpx.AsyncClient, since: str) -> dict[str, str]:
    async def get(path: str, **params: Any) -> dict[str, Any]:
        response = await reports.get(path, params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    orders, funnel, payments, inventory, ranking = await asyncio.gather(
        get("/reports/orders", group_by="day", **{"from": since}),
        get("/reports/fulfilment", **{"from": since}),
        get("/reports/payments", **{"from": since}),
        get("/reports/inventory", **{"from": since}),
        get("/reports/sales/ranking", by="product", top=10, **{"from": since}),
    )
    figures = {
        "orders.total": str(sum(r["orders"] for r in orders["rows"])),
        "orders.units": str(sum(r["units"] for r in orders["rows"])),
        "orders.gross": money_total(orders["rows"], "gross_amount"),
        "funnel.cancelled": str(sum(r["orders"] for r in funnel["cancellations"])),
        "funnel.rejected": str(sum(r["orders"] for r in funnel["rejections"])),
        "funnel.needs_attention": str(funnel["needs_attention"]),
        "stock.outs": str(sum(r["stock_outs"] for r in inventory["rows"])),
        "stock.backordered": str(sum(r["backordered"] for r in inventory["rows"])),
        "stock.out_now": str(sum(1 for r in inventory["rows"] if r["warehouse"] and r["available"] <= 0)),
    }
    for row in orders["rows"]:
        figures[f"orders.day.{row['key']['day']}"] = str(row["orders"])
        figures[f"revenue.{row['currency']}.day.{row['key']['day']}"] = row["gross_amount"]
    for row in funnel["rows"]:
        figures[f"funnel.{row['stage']}"] = str(row["orders"])
        figures[f"funnel.{row['stage']}.conversion"] = percent(row["conversion_from_placed"])
    for row in payments["rows"]:
        for field in ("invoiced", "collected", "refunded", "outstanding"):
            figures[f"payments.{row['currency']}.{field}"] = row[field]
        for field in AGEING:
            figures[f"payments.{row['currency']}.{field}"] = f"{row[field]} {row['currency']}"
    for row in inventory["rows"]:
        if row["stock_outs"] > 0 or row["available"] <= 0:
            at = f"{row['sku']}.{row['warehouse'] or 'backorders'}"
            for field in ("available", "stock_outs", "backordered"):
                figures[f"stock.{at}.{field}"] = str(row[field])
    for index, row in enumerate(ranking["rows"]):
        figures[f"top.{index}.key"] = row["key"]
        figures[f"top.{index}.units"] = f"{row['units']} units"
        figures[f"top.{index}.revenue"] = f"{row['revenue']} {row['currency']}"
    return figures


def without_timings(figures: dict[str, str]) -> dict[str, str]:
    """The p50 durations are rounded for people (1.2 s); the rest is compared exactly."""
    return {name: text for name, text in figures.items() if not name.endswith(".p50")}


# -- the tests ---------------------------------------------------------------------------------


async def test_the_dashboard_shows_the_figures_the_reports_answer(
    known: Known, chromium: webdriver.Chrome, dashboard_platform: Platform
) -> None:
    expected = await expected_figures(known.reports, known.since)
    # The known data set, so that an empty page and an empty report cannot agree by accident.
    assert (expected["orders.total"], expected["funnel.placed"], expected["funnel.cancelled"]) == (
        "4",
        "4",
        "1",
    )
    assert expected["payments.EUR.collected"] == "70.00"  # 60.00 paid in full + 10.00 of 78.00
    assert (expected["top.0.key"], expected["stock.backordered"]) == (B, "2")

    token = mint("dashboard-analyst", ["analyst"])
    open_dashboard(chromium, dashboard_platform.url("reporting"), {"from": known.since}, token)
    await asyncio.to_thread(wait_for, chromium, "ready")

    assert without_timings(rendered(chromium)) == expected
    # The token left the address bar as soon as the page had it.
    assert "token" not in chromium.current_url
    # Everything the page loaded came from the service itself.
    loaded = chromium.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert loaded and all(url.startswith(dashboard_platform.url("reporting") + "/") for url in loaded), loaded


async def test_the_dashboard_refreshes_by_itself(
    known: Known, chromium: webdriver.Chrome, dashboard_platform: Platform
) -> None:
    every_5_seconds = {"from": known.since, "refresh": 5}
    open_dashboard(chromium, dashboard_platform.url("reporting"), every_5_seconds, mint("d", ["analyst"]))
    await asyncio.to_thread(wait_for, chromium, "ready")
    shown = int(rendered(chromium)["orders.total"])

    await known.oms.place(web_order("web", [(A, 1, "25.00")]))
    await reports_caught_up(known.reports, shown + 1, known.since)

    def shows_the_new_order() -> None:
        WebDriverWait(chromium, 30, poll_frequency=0.2).until(
            lambda _: rendered(chromium)["orders.total"] == str(shown + 1)
        )

    await asyncio.to_thread(shows_the_new_order)
    assert without_timings(rendered(chromium)) == await expected_figures(known.reports, known.since)


async def test_without_reports_read_the_page_shows_no_figures(
    known: Known, chromium: webdriver.Chrome, dashboard_platform: Platform
) -> None:
    base = dashboard_platform.url("reporting")
    # The page holds no data: it is served without credentials, and lets nothing else in.
    async with httpx.AsyncClient() as anonymous:
        page = await anonymous.get(f"{base}/dashboard")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    open_dashboard(chromium, base, {}, None)
    await asyncio.to_thread(wait_for, chromium, "signed-out")
    assert chromium.find_element(By.ID, "sign-in").is_displayed()

    open_dashboard(chromium, base, {}, mint("clerk", ["warehouse"]))
    await asyncio.to_thread(wait_for, chromium, "error")
    assert "reports:read" in chromium.find_element(By.ID, "problem").text
    assert set(rendered(chromium).values()) <= {""}

    open_dashboard(chromium, base, {}, "not-a-token")
    await asyncio.to_thread(wait_for, chromium, "signed-out")
    assert "sign in again" in chromium.find_element(By.ID, "problem").text
