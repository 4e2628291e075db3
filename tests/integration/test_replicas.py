"""Two order replicas: a stale aggregate cache in one of them never decides anything.

The order service caches the aggregates it has seen. With replicas, another process may
move an order on meanwhile (an HTTP command there, or its partitions moved there and
back); the first process's copy is then stale. A decision taken on it — even the decision
to do nothing with a reply it did not expect — must never stand.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from libs.runtime.db import drop_databases
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from tests.conftest import RUN_ID
from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import HARNESS_ENV, Oms, order_body
from tools import invariants
from tools.processes import Platform

pytestmark = pytest.mark.integration

RUN = f"{RUN_ID}r"
PREFIX = f"ome2e_{RUN}"
NAMESPACE = f"t{RUN}."


@pytest.fixture(scope="module")
def replicas_settings() -> RuntimeSettings:
    return RuntimeSettings(db_prefix=PREFIX, topic_namespace=NAMESPACE, topic_partitions=4)


@pytest.fixture(scope="module")
async def replicated(replicas_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    platform = Platform(
        RUN,
        {
            "OM_DB_PREFIX": PREFIX,
            "OM_TOPIC_NAMESPACE": NAMESPACE,
            "OM_TOPIC_PARTITIONS": "4",
            "OM_LOG_JSON": "false",
            "OM_ORDER_PAYMENT_DEADLINE_SECONDS": "3600",
            **HARNESS_ENV,
        },
        replicas=("order#2",),
    )
    platform.start("order", "inventory", "billing")
    try:
        async with httpx.AsyncClient(
            base_url=platform.url("inventory"), headers=bearer("admin")
        ) as inventory:
            warehouse = {"code": "NORTH", "name": "North DC", "region": "north"}
            response = await inventory.post("/warehouses", json=warehouse)
            assert response.status_code in (200, 201), response.text
        yield platform
    finally:
        platform.stop()
        await drop_databases(replicas_settings)


@pytest.fixture
async def oms(replicated: Platform) -> AsyncIterator[Oms]:
    client = Oms(replicated)
    try:
        yield client
    finally:
        await client.close()


def stop_gracefully(platform: Platform, name: str) -> None:
    """SIGTERM, as an orchestrator stops a pod: the process leaves its group cleanly."""
    process = platform.processes.pop(name)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def test_reply_for_an_order_moved_on_by_the_other_replica_is_not_swallowed(oms: Oms, sku: str) -> None:
    """Replica A (the only one consuming) caches the order when it is placed and held there;
    replica B approves it. The reservation's reply then reaches A, whose copy still says
    `on_hold`: that copy must be found stale, not trusted to ignore the reply."""
    oms.platform.start_with({"OM_RUN_CONSUMERS": "false"}, "order#2")
    try:
        await oms.receive(sku, 10)
        held = await oms.place(order_body(sku, unit_price="6000.00"))  # over the review limit
        assert (await oms.wait_status(held, "on_hold"))["status"] == "on_hold"

        async with httpx.AsyncClient(
            base_url=oms.platform.url("order#2"), timeout=30, headers=bearer("order_desk")
        ) as replica_b:
            approved = await replica_b.post(f"/orders/{held}/approve", json={})
            assert approved.status_code == 200, approved.text

        order = await oms.wait_status(held, "awaiting_payment", "needs_attention", timeout=60)
        assert order["status"] == "awaiting_payment", order
    finally:
        stop_gracefully(oms.platform, "order#2")


async def test_orders_flowing_while_a_second_replica_comes_and_goes_all_reach_their_outcome(
    oms: Oms, replicas_settings: RuntimeSettings
) -> None:
    """The operator's scenario: orders arrive steadily on replica A while replica B is started
    and stopped (SIGTERM) three times, so the order partitions move between them and back.
    Every order must reach the outcome it would have had with one replica."""
    skus = [f"HOT-{uuid4().hex[:6]}" for _ in range(4)]
    for each in skus:
        await oms.receive(each, 10_000)
    placed: list[str] = []

    async def place_steadily(stop: asyncio.Event) -> None:
        index = 0
        while not stop.is_set() and index < 2000:  # bounded whatever happens
            customer = await account_customer(oms)
            body = order_body(
                skus[index % len(skus)], terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer
            )
            placed.append(await oms.place(body))
            index += 1
            await asyncio.sleep(0.05)  # the arrival rate (~15/s with the round trip), not a wait

    stop = asyncio.Event()
    flow = asyncio.create_task(place_steadily(stop))
    try:
        for _ in range(3):
            await asyncio.to_thread(oms.platform.start, "order#2")  # ready: consuming
            await _more_orders_placed(placed, 30)
            await asyncio.to_thread(stop_gracefully, oms.platform, "order#2")
            await _more_orders_placed(placed, 20)
    finally:
        stop.set()
        await flow
    assert len(placed) >= 150

    statuses = await _final_statuses(oms, placed)
    assert set(statuses.values()) == {"confirmed"}, {
        s: sum(1 for v in statuses.values() if v == s) for s in set(statuses.values())
    }
    report = await invariants.check(replicas_settings, placed)
    assert report.violations == [], json.dumps(report.as_dict(), indent=2, default=str)[:4000]


async def _more_orders_placed(placed: list[str], count: int, timeout: float = 120) -> None:
    """Wait until the steady flow has placed `count` more orders."""
    target, deadline = len(placed) + count, time.monotonic() + timeout
    while len(placed) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} more orders not placed within {timeout}s")
        await asyncio.sleep(0.05)


async def _final_statuses(oms: Oms, order_ids: list[str], timeout: float = 120) -> dict[str, str]:
    """Wait until no order is mid-saga any more; return every order's status."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while True:
        pending = [o for o in order_ids if statuses.get(o) not in ("confirmed", "cancelled", "rejected")]
        for order_id in pending:
            statuses[order_id] = (await oms.get_order(order_id))["status"]
        if all(statuses[o] in ("confirmed", "cancelled", "rejected") for o in order_ids):
            return statuses
        if time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.5)
