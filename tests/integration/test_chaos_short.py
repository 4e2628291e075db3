"""A short run of the chaos suite inside the regular tests, so it cannot rot: two replicas of
every consuming service, partitions moved between them and back under load, a hot SKU with
fewer units than orders served by both inventory replicas, a process that dies between
publishing and marking its outbox, a consumer that dies between its database commit and its
offset commit, poison on every consumed topic, and orders whose parallel saga step fails on one
side (stock refused beside an issued invoice, which is voided) while a billing replica is
killed; the load ships every order it confirms.
Then the invariant checker itself, fed crafted stores (stuck orders, an oversold SKU; a
shipment dispatched twice, a shipped order with a line never dispatched, a stock row that does
not add up, stock in transit below zero, a completed order with a shipment on its way and no
payment), so it is known to fail when it must."""

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
        "parallel-step-fails",
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
    # Rejected with their invoices void (the fault waits for it), every invariant kept.
    assert rows["parallel-step-fails"]["one_side_failed"] == chaos.ONE_SIDE_FAILURES
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
    db: asyncpg.Connection,
    status: str,
    stage: str,
    idle: str,
    due_in: str | None = None,
    lines: dict[str, int] | None = None,
) -> str:
    order_id = f"order-{status}-{uuid4().hex[:6]}"
    await db.execute(
        "INSERT INTO orders (order_id, status, stage, channel, customer_id, customer_name, currency,"
        " payment_terms, shipping_method, lines, fingerprint, subtotal, placed_at, updated_at)"
        " VALUES ($1, $2, $3, 'web', 'c1', 'Ada', 'EUR', 'prepaid', 'pickup', $5::jsonb, 'f', 10,"
        " now() - $4::text::interval, now() - $4::text::interval)",
        order_id,
        status,
        stage,
        idle,
        json.dumps([{"sku": sku, "quantity": n, "unit_price": "1.00"} for sku, n in (lines or {}).items()]),
    )
    if due_in is not None:
        await db.execute(
            "INSERT INTO saga_deadlines VALUES ($1, 'payment', now() + $2::text::interval)", order_id, due_in
        )
    return order_id


async def _event(
    db: asyncpg.Connection, stream_type: str, stream_id: str, version: int, event_type: str, payload: object
) -> None:
    await db.execute(
        "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, event_version,"
        " occurred_at, correlation_id, actor, payload)"
        " VALUES ($1, $2, $3, $4, $5, 1, now(), 'test', 'test', $6::jsonb)",
        stream_id,
        stream_type,
        version,
        uuid4(),
        event_type,
        json.dumps(payload),
    )


async def _sku_event(
    db: asyncpg.Connection, sku: str, version: int, event_type: str, **payload: object
) -> None:
    await _event(db, "sku", f"sku-{sku}", version, event_type, {"sku": sku, **payload})


async def _shipment(
    inventory_db: asyncpg.Connection,
    order_db: asyncpg.Connection,
    order_id: str,
    lines: dict[str, int],
    milestones: list[str],
) -> str:
    """A shipment from NORTH with its events (ShipmentCreated, then `milestones`), as inventory's
    read model and the order's both show it."""
    shipment_id = f"ship-{uuid4().hex[:6]}"
    line_list = [{"sku": sku, "quantity": n} for sku, n in lines.items()]
    about = {"shipment_id": shipment_id, "order_id": order_id}
    created = {**about, "warehouse": "NORTH", "method": "standard", "lines": line_list}
    await _event(inventory_db, "shipment", f"shipment-{shipment_id}", 1, "ShipmentCreated", created)
    for version, milestone in enumerate(milestones, 2):
        payload = {**about, "warehouse": "NORTH", "lines": line_list} if milestone == "Dispatched" else about
        await _event(
            inventory_db, "shipment", f"shipment-{shipment_id}", version, f"Shipment{milestone}", payload
        )
    status = {"Dispatched": "dispatched", "Delivered": "delivered"}[milestones[-1]]
    await inventory_db.execute(
        "INSERT INTO shipments (shipment_id, order_id, warehouse, method, lines, status, created_at,"
        " updated_at) VALUES ($1, $2, 'NORTH', 'standard', $3::jsonb, $4, now(), now())",
        shipment_id,
        order_id,
        json.dumps(line_list),
        status,
    )
    await order_db.execute(
        "INSERT INTO order_shipments (order_id, shipment_id, warehouse, status, updated_at)"
        " VALUES ($1, $2, 'NORTH', $3, now())",
        order_id,
        shipment_id,
        status,
    )
    return shipment_id


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
            # waiting for stock, but its stock wait deadline passed long ago and did nothing
            await _order(order_db, "awaiting_stock", "reserving", "10 minutes", due_in="-5 minutes"),
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
    assert report.counts["stuck"] == 4
    assert report.counts["in_flight"] == 2
    assert report.counts["waiting"] == report.counts["terminal"] == 1
    assert report.counts["oversold"] == 1
    assert [v for v in report.violations if v.startswith("inventory:")] == [
        "inventory: HOT oversold at NORTH: 3 reserved of 2 on hand after a StockAllocated"
    ]


async def test_invariants_flag_shipping_that_does_not_add_up(crafted: RuntimeSettings) -> None:
    order_db = await asyncpg.connect(crafted.dsn("order"))
    inventory_db = await asyncpg.connect(crafted.dsn("inventory"))
    try:
        # Shipped, but only the BOX of its shipment left: its PEN was never dispatched.
        shipped = await _order(order_db, "shipped", "fulfilling", "1 minute", lines={"BOX": 2, "PEN": 1})
        never_left = await _shipment(inventory_db, order_db, shipped, {"BOX": 2, "PEN": 1}, ["Dispatched"])
        # Dispatched twice (the stock left once; the order is right to say shipped).
        shipped_once = await _order(order_db, "shipped", "fulfilling", "1 minute", lines={"BOX": 1})
        twice = await _shipment(
            inventory_db, order_db, shipped_once, {"BOX": 1}, ["Dispatched", "Dispatched"]
        )
        # Completed, with its shipment still on the road and no invoice paid.
        completed = await _order(order_db, "completed", "ended", "1 minute", lines={"BOX": 1})
        on_the_road = await _shipment(inventory_db, order_db, completed, {"BOX": 1}, ["Dispatched"])
        # Delivered, every line left once and arrived: nothing to say.
        delivered = await _order(order_db, "delivered", "fulfilling", "1 minute", lines={"PEN": 2})
        arrived = await _shipment(inventory_db, order_db, delivered, {"PEN": 2}, ["Dispatched", "Delivered"])

        # BOX at NORTH: 10 received, 4 dispatched = 6, but the stock row says 9.
        box = [
            ("StockReceived", {"warehouse": "NORTH", "quantity": 10, "receipt_id": "r1"}),
            ("StockAllocated", {"order_id": shipped, "warehouses": {"NORTH": 2}}),
            ("StockAllocated", {"order_id": shipped_once, "warehouses": {"NORTH": 1}}),
            ("StockAllocated", {"order_id": completed, "warehouses": {"NORTH": 1}}),
            (
                "StockDispatched",
                {"order_id": shipped, "warehouse": "NORTH", "quantity": 2, "shipment_id": never_left},
            ),
            (
                "StockDispatched",
                {"order_id": shipped_once, "warehouse": "NORTH", "quantity": 1, "shipment_id": twice},
            ),
            (
                "StockDispatched",
                {"order_id": completed, "warehouse": "NORTH", "quantity": 1, "shipment_id": on_the_road},
            ),
        ]
        pen = [
            ("StockReceived", {"warehouse": "NORTH", "quantity": 5, "receipt_id": "r2"}),
            ("StockAllocated", {"order_id": shipped, "warehouses": {"NORTH": 1}}),
            ("StockAllocated", {"order_id": delivered, "warehouses": {"NORTH": 2}}),
            (
                "StockDispatched",
                {"order_id": delivered, "warehouse": "NORTH", "quantity": 2, "shipment_id": arrived},
            ),
        ]
        # MUG: 2 sent from NORTH to SOUTH, 3 arrived: in transit below zero (the books agree).
        mug = [
            ("StockReceived", {"warehouse": "NORTH", "quantity": 5, "receipt_id": "r3"}),
            (
                "StockTransferredOut",
                {"transfer_id": "t1", "from_warehouse": "NORTH", "to_warehouse": "SOUTH", "quantity": 2},
            ),
            (
                "StockTransferredIn",
                {"transfer_id": "t1", "from_warehouse": "NORTH", "to_warehouse": "SOUTH", "quantity": 3},
            ),
        ]
        for sku, events in (("BOX", box), ("PEN", pen), ("MUG", mug)):
            for version, (event_type, payload) in enumerate(events, 1):
                await _sku_event(inventory_db, sku, version, event_type, **payload)
        await inventory_db.executemany(
            "INSERT INTO stock_levels VALUES ($1, $2, $3, $4)",
            [("BOX", "NORTH", 9, 0), ("PEN", "NORTH", 3, 1), ("MUG", "NORTH", 3, 0), ("MUG", "SOUTH", 3, 0)],
        )
        await inventory_db.execute("INSERT INTO transfer_lines VALUES ('t1', 'MUG', 2, 3, 0)")

        report = await invariants.check(crafted, stuck_after=30)
    finally:
        await order_db.close()
        await inventory_db.close()

    assert sorted(report.violations) == sorted(
        [
            f"inventory: shipment {twice} of order {shipped_once} left its warehouse twice",
            f"inventory: shipment {never_left} left with lines {{'BOX': 2, 'PEN': 1}}, but the goods"
            " that left for it are {'BOX': 2}",
            "inventory: BOX at NORTH has 9 on hand, but receipts 10 + transfers in 0 - transfers out 0"
            " - dispatched 4 + adjustments 0 = 6",
            "inventory: transfer t1 of MUG has -1 in transit after a StockTransferredIn (sent 2,"
            " received 3, written off 0)",
            f"order: {shipped} is shipped, but of {{'BOX': 2, 'PEN': 1}} ordered {{'BOX': 2}} left",
            f"order: {completed} is completed, but its shipment {on_the_road} is dispatched",
            f"order: {completed} is completed but not paid in full (no invoice)",
        ]
    ), report.violations
    assert report.counts["dispatched_twice"] == 1
    assert report.counts["lines_not_dispatched_once"] == 1
    assert report.counts["stock_not_adding_up"] == 1
    assert report.counts["transit_negative"] == 1
    assert report.counts["shipped"] == 4 and report.counts["delivered"] == 2
    assert report.counts["terminal"] == 1 and report.counts["waiting"] == 3
