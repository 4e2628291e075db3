"""A short run of the chaos suite inside the regular tests, so it cannot rot: two replicas of
every consuming service, partitions moved between them and back under load, a hot SKU with
fewer units than orders served by both inventory replicas, a process that dies between
publishing and marking its outbox, a consumer that dies between its database commit and its
offset commit, poison on every consumed topic, and orders whose parallel saga step fails on one
side (stock refused beside an issued invoice, which is voided) while a billing replica is
killed; the load ships every order it confirms, and a share of its orders asks for manufactured
SKUs, made to order by production orders that the load's workers drive (tasks, quality checks
with some units reworked or scrapped) under the faults, and the order desk amends, splits and
merges orders and takes back delivered goods while each fault runs.
Then the invariant checker itself, fed crafted stores (stuck orders, an oversold SKU; a
shipment dispatched twice, a shipped order with a line never dispatched, a stock row that does
not add up, stock in transit below zero, a completed order with a shipment on its way and no
payment; production orders that consume components twice, receive their goods twice or do
not add up; reservations that differ from amended lines, a split into nothing, a merged order
still holding stock, refunds beyond payments and a transfer that arrives short), so it is
known to fail when it must."""

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
from tools import chaos, invariants, loadgen

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"


# About two minutes on an idle 2-core machine; a busy one stretches every wait (that is what
# the waits on conditions are for), so this test gets more than the default five minutes.
# With production in the load: 395 s on the shared, loaded machine (2026-11-23), of which 43 s
# waiting for production orders to settle after the faults' loads.
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
        manufactured_share=0.1,
        # The order desk under every fault: one amendment, split, merge and return each.
        desk_amends=1,
        desk_splits=1,
        desk_merges=1,
        desk_returns=1,
        keep=False,
    )

    result = await chaos.chaos_run(args)

    # Every service that consumes runs twice, found from its own wiring.
    assert result["replicas"] == {"billing": 2, "inventory": 2, "order": 2, "production": 2, "reporting": 2}
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
    # Made to order under the faults: every production order the load caused ended (completed,
    # or cancelled with its sales order) and the checker saw them all add up.
    workers, final = result["production_workers"], result["final_check"]
    assert workers["completed"] > 0, workers
    assert workers["completed"] + workers["cancelled"] == workers["seen"] == final["production_orders"], (
        workers
    )
    assert final["production_completed"] == workers["completed"], final
    # The order desk acted under every fault (its refusals are counted, not failures), and the
    # checker compared the reservations it left with the orders' current lines.
    desk = {a: sum(row["desk"][f"{a}_done"] for row in rows.values()) for a in loadgen.DESK_ACTIONS}
    assert sum(desk.values()) > 0, desk
    assert final["reservations_checked"] > 0, final
    assert result["violations"] == 0, result


# --- the checker, on a crafted store ----------------------------------------------------------


@pytest.fixture
async def crafted() -> AsyncIterator[RuntimeSettings]:
    """Empty order, inventory, billing and production databases of their own, migrated."""
    settings = RuntimeSettings(db_prefix=f"ominv_{RUN_ID}")
    for service in ("order", "inventory", "billing", "production"):
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


async def _production_event(
    db: asyncpg.Connection, order: str, version: int, event_type: str, **payload: object
) -> None:
    await _event(
        db, "production_order", order, version, event_type, {"production_order_id": order, **payload}
    )


async def test_invariants_flag_production_that_consumes_twice_receives_twice_or_does_not_add_up(
    crafted: RuntimeSettings,
) -> None:
    production_db = await asyncpg.connect(crafted.dsn("production"))
    inventory_db = await asyncpg.connect(crafted.dsn("inventory"))
    try:
        made = {  # production order: (quantity, [scrapped by checks], passed, scrapped, receipts)
            "PO-twice-in": (3, [1], 2, 1, [2, 2]),  # its goods received twice
            "PO-short": (2, [], 1, 0, [1]),  # 1 passed + 0 scrapped of 2
            "PO-eaten-twice": (2, [], 2, 0, [2]),  # its components consumed twice (below)
            "PO-fine": (1, [], 1, 0, [1]),
        }
        receipt_version = 0
        for order, (quantity, scrapped_by_checks, passed, scrapped, receipts) in made.items():
            events = [("ProductionOrderCreated", {"quantity": quantity})]
            events += [
                ("QualityCheckFailed", {"failed": n, "disposition": "scrap"}) for n in scrapped_by_checks
            ]
            events.append(("ProductionCompleted", {"passed": passed, "scrapped": scrapped}))
            for version, (event_type, payload) in enumerate(events, 1):
                await _production_event(production_db, order, version, event_type, **payload)
            for quantity_in in receipts:
                receipt_version += 1
                await _sku_event(
                    inventory_db,
                    "CHAIR",
                    receipt_version,
                    "StockReceived",
                    warehouse="NORTH",
                    quantity=quantity_in,
                    receipt_id=f"production:{order}",
                )
        # Legs: ten in stock, four held for PO-eaten-twice and consumed twice; one for PO-fine, once.
        legs = [
            ("StockReceived", {"warehouse": "NORTH", "quantity": 10, "receipt_id": "r-legs"}),
            ("StockAllocated", {"order_id": "PO-eaten-twice", "warehouses": {"NORTH": 4}}),
            ("StockAllocated", {"order_id": "PO-fine", "warehouses": {"NORTH": 1}}),
            ("StockConsumed", {"order_id": "PO-eaten-twice", "warehouse": "NORTH", "quantity": 4}),
            ("StockConsumed", {"order_id": "PO-eaten-twice", "warehouse": "NORTH", "quantity": 4}),
            ("StockConsumed", {"order_id": "PO-fine", "warehouse": "NORTH", "quantity": 1}),
        ]
        for version, (event_type, payload) in enumerate(legs, 1):
            await _sku_event(inventory_db, "LEG", version, event_type, **payload)

        report = await invariants.check(crafted, stuck_after=30)
    finally:
        await production_db.close()
        await inventory_db.close()

    about_production = sorted(v for v in report.violations if "PO-" in v)
    assert about_production == sorted(
        [
            "production: the goods of PO-twice-in were received 2 times",
            "production: PO-short made 2: 1 passed + 0 scrapped (0 scrapped by its quality checks)",
            "inventory: production order PO-eaten-twice consumed LEG at NORTH twice",
            "inventory: production order PO-eaten-twice consumed 4 of LEG at NORTH, holding 0 there",
        ]
    ), report.violations
    assert report.counts["goods_received_twice"] == 1
    assert report.counts["production_not_adding_up"] == 1
    assert report.counts["components_consumed_twice"] == 1
    assert report.counts["production_orders"] == report.counts["production_completed"] == 4


async def _reservation(
    inventory_db: asyncpg.Connection, order_id: str, event_type: str, status: str, **payload: object
) -> None:
    """A reservation's last event and its read-model row, changed a minute ago."""
    await _event(
        inventory_db,
        "reservation",
        f"reservation-{order_id}",
        1,
        event_type,
        {"order_id": order_id, **payload},
    )
    await inventory_db.execute(
        "INSERT INTO reservations (order_id, status, updated_at)"
        " VALUES ($1, $2, now() - interval '1 minute')",
        order_id,
        status,
    )


async def _order_event(
    db: asyncpg.Connection, order_id: str, version: int, event_type: str, **payload: object
) -> None:
    await _event(db, "order", f"order-{order_id}", version, event_type, {"order_id": order_id, **payload})


async def _invoice_events(
    db: asyncpg.Connection, order_id: str, *events: tuple[str, dict[str, object]]
) -> None:
    for version, (event_type, payload) in enumerate(events, 1):
        await _event(
            db, "invoice", f"invoice-{order_id}", version, event_type, {"order_id": order_id, **payload}
        )


def _paid() -> tuple[str, dict[str, object]]:
    return "PaymentReceived", {"amount": "10.00", "reference": f"p-{uuid4()}", "method": "card"}


def _lines(**units: int) -> list[dict[str, object]]:
    return [{"sku": sku.replace("_", "-"), "quantity": n, "unit_price": "1.00"} for sku, n in units.items()]


async def test_invariants_flag_order_desk_changes_that_lose_units_or_money(crafted: RuntimeSettings) -> None:
    order_db = await asyncpg.connect(crafted.dsn("order"))
    inventory_db = await asyncpg.connect(crafted.dsn("inventory"))
    billing_db = await asyncpg.connect(crafted.dsn("billing"))
    try:
        a, b = "DESK-A", "DESK-B"
        # Holds what it orders: nothing to say.
        fine = await _order(order_db, "confirmed", "done", "1 second", lines={a: 2})
        # Amended from 2 to 3 units, but inventory still holds 2.
        amended = await _order(order_db, "confirmed", "done", "1 second", lines={a: 3})
        await _order_event(
            order_db,
            amended,
            1,
            "OrderAmended",
            kind="amend",
            previous_lines=_lines(DESK_A=2),
            lines=_lines(DESK_A=3),
        )
        # A change to 5 units under way: inventory did its part, the order has not heard yet.
        changing = await _order(order_db, "confirmed", "done", "1 second", lines={a: 2})
        await _order_event(
            order_db, changing, 1, "OrderChangeRequested", kind="amend", lines=_lines(DESK_A=5)
        )
        # Waits for 4 units of B, but is queued for 2.
        waiting = await _order(order_db, "awaiting_stock", "reserving", "1 second", lines={b: 4})
        # Split into an order that was never placed (its 1 unit gone with it).
        split_source = await _order(order_db, "confirmed", "done", "1 second", lines={a: 1})
        await _order_event(
            order_db,
            split_source,
            1,
            "OrderAmended",
            kind="split",
            previous_lines=_lines(DESK_A=2),
            lines=_lines(DESK_A=1),
            split_into="order-never-placed",
        )
        # Split as it should be: the new order took the 2 units that left.
        split_fine = await _order(order_db, "confirmed", "done", "1 second", lines={a: 1})
        split_new = await _order(order_db, "approved", "reserving", "1 second", lines={a: 2})
        await _order_event(
            order_db,
            split_fine,
            1,
            "OrderAmended",
            kind="split",
            previous_lines=_lines(DESK_A=3),
            lines=_lines(DESK_A=1),
            split_into=split_new,
        )
        await _order_event(
            order_db,
            split_new,
            1,
            "OrderPlaced",
            lines=_lines(DESK_A=2),
            origin="split",
            moved_from=[{"order_id": split_fine, "lines": [{"sku": a, "quantity": 2}]}],
        )
        # Merged, and its units are on the new order, but inventory still holds them for it.
        merged = await _order(order_db, "merged", "ended", "1 second", lines={a: 2})
        merged_into = await _order(order_db, "approved", "reserving", "1 second", lines={a: 2})
        await _order_event(order_db, merged, 1, "OrderMerged", into_order_id=merged_into)
        await _order_event(
            order_db,
            merged_into,
            1,
            "OrderPlaced",
            lines=_lines(DESK_A=2),
            origin="merge",
            moved_from=[{"order_id": merged, "lines": [{"sku": a, "quantity": 2}]}],
        )
        held = {fine: 2, amended: 2, changing: 5, split_source: 1, split_fine: 1, merged: 2}
        await _sku_event(inventory_db, a, 1, "StockReceived", warehouse="NORTH", quantity=20, receipt_id="r1")
        for version, (order_id, units) in enumerate(held.items(), 2):
            await _sku_event(
                inventory_db, a, version, "StockAllocated", order_id=order_id, warehouses={"NORTH": units}
            )
            await _reservation(
                inventory_db,
                order_id,
                "StockReserved",
                "reserved",
                allocations=[{"sku": a, "warehouse": "NORTH", "quantity": units}],
            )
        await inventory_db.execute(
            "INSERT INTO stock_levels VALUES ($1, 'NORTH', 20, $2)", a, sum(held.values())
        )
        await _sku_event(inventory_db, b, 1, "BackorderQueued", order_id=waiting, quantity=2)
        await inventory_db.execute("INSERT INTO backorders VALUES ($1, $2, 2, now())", b, waiting)
        short = [{"sku": b, "quantity": 4}]
        await _reservation(
            inventory_db,
            waiting,
            "StockShortage",
            "backordered",
            lines=short,
            missing=short,
            backordered=True,
        )

        issued = ("InvoiceIssued", {"total": "10.00", "lines": []})
        # Refunded more than it was paid; and one refund issued twice.
        await _invoice_events(
            billing_db,
            "order-over",
            issued,
            _paid(),
            ("RefundIssued", {"refund_id": "R-1", "amount": "15.00"}),
        )
        twice = ("RefundIssued", {"refund_id": "R-2", "amount": "6.00"})
        await _invoice_events(billing_db, "order-twice", issued, _paid(), twice, twice)
        # A split carried 10.00 out of one invoice, and 8.00 arrived on the other.
        await _invoice_events(
            billing_db,
            "order-from",
            issued,
            _paid(),
            ("InvoiceAdjusted", {"amendment_id": "m1", "total": "0.00", "transferred": "10.00", "lines": []}),
        )
        await _invoice_events(
            billing_db,
            "order-to",
            issued,
            (
                "PaymentReceived",
                {"amount": "8.00", "reference": "transfer:m1:order-from", "method": "transfer"},
            ),
        )

        report = await invariants.check(crafted, stuck_after=600)
    finally:
        await order_db.close()
        await inventory_db.close()
        await billing_db.close()

    about_orders = sorted(v for v in report.violations if v.startswith("order:"))
    assert about_orders == sorted(
        [
            f"order: {amended} (confirmed) orders {{'DESK-A': 3}}, but inventory holds {{'DESK-A': 2}}",
            f"order: {waiting} (awaiting_stock) orders {{'DESK-B': 4}}, but inventory has it backordered"
            " for {'DESK-B': 4}, holding {}, queued for {'DESK-B': 2}",
            f"order: {split_source} was split into order-never-placed, which does not exist",
            f"order: {merged} was merged into {merged_into}, but inventory still has its reservation"
            " reserved, holding {'DESK-A': 2}, queued for {}",
        ]
    ), report.violations
    assert {
        "billing: order order-over refunded 15.00 of 10.00 paid",
        "billing: order order-over gave out more than it took: paid 10.00 - carried to other orders 0"
        " - refunded 15.00 = -5.00",
        "billing: refund R-2 issued 2 times",
        "billing: order order-twice refunded 12.00 of 10.00 paid",
        "billing: transfer transfer:m1:order-from sent 10.00, received 8.00",
        "billing: 10.00 carried out of invoices by splits and merges, 8.00 carried in",
    } <= set(report.violations), report.violations
    counts = report.counts
    assert counts["reservations_checked"] == 5 and counts["reservations_changing"] == 1
    assert counts["reservations_not_matching_lines"] == 2
    assert counts["splits"] == 2 and counts["split_into_missing"] == 1
    assert counts["merged"] == 1 and counts["merged_units_not_moved"] == 1
    assert (
        counts["refunds_issued_twice"] == 1
        and counts["refunded_over_paid"] == 2
        and counts["money_lost"] == 2
    )
    assert counts["transfers"] == 1 and counts["transfers_not_matching"] == 1
