"""End-to-end fixtures: the services as real processes, plus a client for their APIs."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.runtime.db import drop_databases
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from tests.conftest import RUN_ID
from tests.integration.openapi_conformance import conformance_hooks
from tools.processes import CORE_SERVICES, Platform, eventually_value

E2E_PREFIX = f"ome2e_{RUN_ID}"
NAMESPACE = f"t{RUN_ID}."
# Tests that are not about the payment deadline must never meet it: on a loaded machine a
# short one cancels their orders mid-test. The deadline test orders on a channel of its own.
PAYMENT_DEADLINE_SECONDS = 3600
SHORT_DEADLINE_CHANNEL = "pay-at-once"
SHORT_PAYMENT_DEADLINE_SECONDS = 3
# Backorders on this channel are alerted and then cancelled within seconds (test_saga_rules_*);
# every other channel's stock wait is days long, so other tests' backorders never meet it.
SHORT_STOCK_WAIT_CHANNEL = "slow-stock"
SHORT_STOCK_WAIT_SECONDS = 2


# Money, tax and backorders (docs/money-and-tax.md, docs/backorders.md): a country with rates
# of its own, a channel whose prices include tax, a SKU whose backorders fill what fits. Every
# other destination, channel and SKU keeps the defaults (20 % everywhere, net prices, FIFO).
TAX_RATES = {"DE": {"standard": "0.19", "reduced": "0.07"}}
TAX_INCLUSIVE_CHANNEL = "shop-gross"
FILL_WHAT_FITS_SKU = f"FILL-{RUN_ID}"

# The tests act as many people at machine speed (bursts of hundreds of orders from one admin
# token); the per-person rate limit would throttle the harness, not the code under test. The
# limiter is tested on its own (a key with its own low limit answers 429).
HARNESS_ENV = {"OM_AUTH_USER_RATE_LIMIT_PER_SECOND": "1000000"}


def platform_settings(db_prefix: str, namespace: str) -> RuntimeSettings:
    return RuntimeSettings(db_prefix=db_prefix, topic_namespace=namespace, topic_partitions=4)


@asynccontextmanager
async def running_platform(
    name: str,
    settings: RuntimeSettings,
    env: dict[str, str],
    replicas: tuple[str, ...] = (),
    services: tuple[str, ...] = CORE_SERVICES,
) -> AsyncIterator[Platform]:
    """The services (order, inventory and billing unless told) as processes in `settings`'
    namespace and databases, with the NORTH and SOUTH warehouses registered; stopped and
    their databases dropped afterwards."""
    running = Platform(
        f"{RUN_ID}-{name}",
        {
            "OM_DB_PREFIX": settings.db_prefix,
            "OM_TOPIC_NAMESPACE": settings.topic_namespace,
            "OM_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "OM_LOG_JSON": "false",
            "OM_ORDER_PAYMENT_DEADLINE_SECONDS": str(PAYMENT_DEADLINE_SECONDS),
            **HARNESS_ENV,
            **env,
        },
        replicas,
        services,
    )
    try:
        await asyncio.to_thread(running.start)
        async with httpx.AsyncClient(
            base_url=running.url("inventory"), headers=bearer("admin"), event_hooks=conformance_hooks()
        ) as inventory:
            for code, region in (("NORTH", "north"), ("SOUTH", "south")):
                response = await inventory.post(
                    "/warehouses", json={"code": code, "name": f"{code} DC", "region": region}
                )
                assert response.status_code in (200, 201), response.text
        yield running
    finally:
        running.stop()
        await drop_databases(settings)


@pytest.fixture(scope="session")
def e2e_settings() -> RuntimeSettings:
    return platform_settings(E2E_PREFIX, NAMESPACE)


@pytest.fixture(scope="session")
async def platform(e2e_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    env = {
        "OM_ORDER_PAYMENT_DEADLINE_SECONDS_BY_CHANNEL": json.dumps(
            {SHORT_DEADLINE_CHANNEL: SHORT_PAYMENT_DEADLINE_SECONDS}
        ),
        "OM_ORDER_COMPENSATION_RETRY_SECONDS": "5",
        # A received return's restock and credit are asked again this soon (test_returns.py).
        "OM_ORDER_RETURN_REPLY_SECONDS": "3",
        "OM_ORDER_SHORTAGE_POLICY_BY_CHANNEL": json.dumps({"marketplace": "reject"}),
        "OM_BILLING_TAX_RATES": json.dumps(TAX_RATES),
        "OM_BILLING_PRICES_INCLUDE_TAX_CHANNELS": TAX_INCLUSIVE_CHANNEL,
        "OM_INVENTORY_BACKORDER_POLICY_BY_SKU": json.dumps({FILL_WHAT_FITS_SKU: "fill"}),
        "OM_ORDER_STOCK_WAIT_ALERT_SECONDS_BY_CHANNEL": json.dumps(
            {SHORT_STOCK_WAIT_CHANNEL: SHORT_STOCK_WAIT_SECONDS}
        ),
        "OM_ORDER_STOCK_WAIT_CANCEL_SECONDS_BY_CHANNEL": json.dumps(
            {SHORT_STOCK_WAIT_CHANNEL: SHORT_STOCK_WAIT_SECONDS}
        ),
    }
    async with running_platform("e2e", e2e_settings, env) as running:
        yield running


class Oms:
    """The three APIs as a channel, a warehouse clerk and a payment gateway use them; as an
    admin (every permission) unless `role` says otherwise. Tests about who may do what make
    their own clients with the role they need. Every answer is checked against the OpenAPI
    document of the service that gave it (openapi_conformance.py): one that does not match
    fails the test that received it."""

    def __init__(self, platform: Platform, role: str = "admin") -> None:
        self.platform = platform
        headers = bearer(role, subject=f"test-{role}")
        self.order, self.inventory, self.billing = (
            httpx.AsyncClient(
                base_url=platform.url(service), timeout=30, headers=headers, event_hooks=conformance_hooks()
            )
            for service in ("order", "inventory", "billing")
        )

    async def close(self) -> None:
        for client in (self.order, self.inventory, self.billing):
            await client.aclose()

    async def receive(self, sku: str, quantity: int, warehouse: str = "NORTH") -> None:
        response = await self.inventory.post(
            "/stock/receipts", json={"sku": sku, "warehouse": warehouse, "quantity": quantity}
        )
        assert response.status_code == 201, response.text

    async def submit(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return await self.order.post("/orders", json=body, headers=headers)

    async def place(self, body: dict[str, Any]) -> str:
        response = await self.submit(body, key=str(uuid4()))
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    async def get_order(self, order_id: str) -> dict[str, Any]:
        response = await self.order.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_status(self, order_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        return dict(
            await eventually_value(
                lambda: self.get_order(order_id), lambda o: o["status"] in statuses, timeout
            )
        )

    async def invoice(self, order_id: str) -> dict[str, Any]:
        async def fetch() -> list[dict[str, Any]]:
            response = await self.billing.get("/invoices", params={"order_id": order_id})
            return list(response.json()) if response.status_code == 200 else []

        invoices = await eventually_value(fetch, lambda found: len(found) == 1)
        return dict(invoices[0])

    async def pay(
        self, order_id: str, amount: str, outcome: str = "succeeded", reference: str | None = None
    ) -> httpx.Response:
        return await self.billing.post(
            "/payments",
            json={
                "order_id": order_id,
                "amount": amount,
                "method": "card",
                "reference": reference or f"pay-{uuid4()}",
                "outcome": outcome,
            },
        )

    async def stock(self, sku: str) -> dict[str, Any]:
        response = await self.inventory.get(f"/stock/{sku}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def refunds(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.billing.get("/refunds", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return list(response.json())


@pytest.fixture
async def oms(platform: Platform) -> AsyncIterator[Oms]:
    # A service of the shared platform that exited since the last test (a test that killed it
    # and did not get to restart it, or a crash) is started again, so one test's failure does
    # not fail every test after it; the warning names it and its exit code (its log is in
    # .local/logs/runs).
    if dead := platform.dead():
        tails = {name: platform.log_path(name).read_text(errors="replace")[-1500:] for name in dead}
        warnings.warn(f"shared platform services had exited: {dead}; started again. {tails}", stacklevel=1)
        await asyncio.to_thread(platform.start, *dead)
    client = Oms(platform)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def sku() -> Iterator[str]:
    yield f"SKU-{uuid4().hex[:10]}"


def order_body(
    sku: str,
    quantity: int = 1,
    unit_price: str = "25.00",
    *,
    terms: str = "prepaid",
    channel: str = "web",
    customer: dict[str, Any] | None = None,
    shipping: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "channel": channel,
        "customer": customer
        or {"name": "Ada Lovelace", "email": f"{uuid4().hex[:8]}@example.com", "region": "north"},
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": unit_price}],
        "currency": "EUR",
        "payment_terms": terms,
        "shipping": shipping or {"method": "pickup"},
        **extra,
    }


def money(value: str | None) -> Decimal:
    return Decimal(value or "0")
