"""A short run of the chaos suite inside the regular tests, so it cannot rot: two replicas of
every consuming service, partitions moved between them and back under load, a hot SKU with
fewer units than orders served by both inventory replicas, a process that dies between
publishing and marking its outbox, a consumer that dies between its database commit and its
offset commit, and poison on every consumed topic. Then the invariant checker itself, fed a
crafted store with stuck orders and an oversold SKU, so it is known to fail when it must."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from libs.runtime.db import create_engine, drop_databases, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tools import chaos, invariants

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"


# About two minutes on an idle 2-core machine; a busy one stretches every wait (that is what
# the waits on conditions are for), so this test gets more than the default five minutes.
@pytest.mark.timeout(600)
async def test_short_chaos_run_with_replicas_keeps_every_invariant() -> None:
    faults = [
        "rebalance-ping-pong",
        "scarce-stock",
        "crash-after-publish-before-outbox-mark",
        "crash-after-db-commit-before-offset-commit",
        "poison",
    ]
    args = argparse.Namespace(
        faults=faults,
        rate=5.0,
        seconds=6.0,
        settle=60.0,
        stuck_after=30.0,
        payment_deadline=10.0,
        pingpong_cycles=1,
        stock=1000,
        keep=False,
    )

    result = await chaos.chaos_run(args)

    assert result["replicas"] == {"billing": 2, "inventory": 2, "order": 2}
    rows = {row["fault"]: row for row in result["faults"]}
    assert set(rows) == set(faults)
    for row in rows.values():
        assert row["accepted"] > 0, row
        assert row["lost"] == row["stuck"] == row["oversold"] == 0, row
        assert row["accepted"] == row["terminal"] + row["waiting"] + row["in_flight"], row
        assert row["details"] == [], row
    scarce = rows["scarce-stock"]["scarce"]
    assert scarce["orders_backordered"] + scarce["orders_refused"] > 0, scarce  # it was scarce
    assert scarce["units_reserved"] <= scarce["units_received"], scarce
    assert rows["poison"]["dead_lettered"] >= rows["poison"]["poison_sent"] > 0
    assert result["violations"] == 0, result


# --- the checker, on a crafted store ----------------------------------------------------------


@pytest.fixture
async def crafted() -> AsyncIterator[RuntimeSettings]:
    """Empty order, inventory and billing databases of their own, migrated."""
    settings = RuntimeSettings(db_prefix=f"ominv_{RUN_ID}")
    for service in ("order", "inventory", "billing"):
        await ensure_database(settings, service)
        engine = create_engine(settings, service)
        try:
            await migrate(engine, SERVICES / service / "adapters" / "migrations")
        finally:
            await engine.dispose()
    try:
        yield settings
    finally:
        await drop_databases(settings)


async def _order(
    db: asyncpg.Connection, status: str, stage: str, idle: str, due_in: str | None = None
) -> str:
    order_id = f"order-{status}-{uuid4().hex[:6]}"
    await db.execute(
        "INSERT INTO orders (order_id, status, stage, channel, customer_id, customer_name, currency,"
        " payment_terms, shipping_method, lines, fingerprint, subtotal, placed_at, updated_at)"
        " VALUES ($1, $2, $3, 'web', 'c1', 'Ada', 'EUR', 'prepaid', 'pickup', '[]', 'f', 10,"
        " now() - $4::text::interval, now() - $4::text::interval)",
        order_id,
        status,
        stage,
        idle,
    )
    if due_in is not None:
        await db.execute(
            "INSERT INTO saga_deadlines VALUES ($1, 'payment', now() + $2::text::interval)", order_id, due_in
        )
    return order_id


async def _sku_event(
    db: asyncpg.Connection, sku: str, version: int, event_type: str, **payload: object
) -> None:
    await db.execute(
        "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, event_version,"
        " occurred_at, correlation_id, actor, payload)"
        " VALUES ($1, 'sku', $2, $3, $4, 1, now(), 'test', 'test', $5::jsonb)",
        f"sku-{sku}",
        version,
        uuid4(),
        event_type,
        json.dumps({"sku": sku, **payload}),
    )


async def test_invariants_flag_stuck_orders_and_oversold_stock(crafted: RuntimeSettings) -> None:
    order_db = await asyncpg.connect(crafted.dsn("order"))
    inventory_db = await asyncpg.connect(crafted.dsn("inventory"))
    try:
        stuck = {
            # a stage left only by an answer, unanswered for ten minutes
            await _order(order_db, "approved", "reserving", "10 minutes"),
            # its payment deadline fired and did nothing (the stale-cache bug): no row left
            await _order(order_db, "awaiting_payment", "awaiting_payment", "1 second"),
            # its deadline is long past and was never handled
            await _order(order_db, "awaiting_payment", "awaiting_payment", "10 minutes", due_in="-5 minutes"),
        }
        fine = {
            await _order(order_db, "awaiting_payment", "awaiting_payment", "10 minutes", due_in="5 minutes"),
            await _order(order_db, "approved", "reserving", "1 second"),
            await _order(order_db, "awaiting_stock", "reserving", "1 hour"),
            await _order(order_db, "cancelled", "ended", "1 hour"),
        }
        # Two units received, three reserved: oversold at NORTH.
        await _sku_event(
            inventory_db, "HOT", 1, "StockReceived", warehouse="NORTH", quantity=2, receipt_id="r1"
        )
        await _sku_event(inventory_db, "HOT", 2, "StockAllocated", order_id="o1", warehouses={"NORTH": 3})
        await inventory_db.execute("INSERT INTO stock_levels VALUES ('HOT', 'NORTH', 2, 3)")
        # Five received, four reserved, then three found missing: the transaction that books the
        # adjustment revokes the reservation it no longer covers, so nothing is oversold.
        await _sku_event(
            inventory_db, "ADJ", 1, "StockReceived", warehouse="NORTH", quantity=5, receipt_id="r2"
        )
        await _sku_event(inventory_db, "ADJ", 2, "StockAllocated", order_id="o2", warehouses={"NORTH": 4})
        async with inventory_db.transaction():
            await _sku_event(inventory_db, "ADJ", 3, "StockAdjusted", warehouse="NORTH", delta=-3)
            await _sku_event(
                inventory_db, "ADJ", 4, "StockDeallocated", order_id="o2", warehouses={"NORTH": 4}
            )
        await inventory_db.execute("INSERT INTO stock_levels VALUES ('ADJ', 'NORTH', 2, 0)")

        report = await invariants.check(crafted, stuck | fine, stuck_after=30)
    finally:
        await order_db.close()
        await inventory_db.close()

    flagged = {v.split()[1] for v in report.violations if v.startswith("order:")}
    assert flagged == stuck, report.violations
    assert report.counts["stuck"] == 3
    assert report.counts["in_flight"] == 2
    assert report.counts["waiting"] == report.counts["terminal"] == 1
    assert report.counts["oversold"] == 1
    assert [v for v in report.violations if v.startswith("inventory:")] == [
        "inventory: HOT oversold at NORTH: 3 reserved of 2 on hand after a StockAllocated"
    ]
