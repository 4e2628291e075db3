"""Invariant checker over every service's store: what must hold after any fault.

    python -m tools.invariants                  check the platform `make up` runs (exit 1 on violations)
    python -m tools.invariants --stuck-after 300

Each check reads the events (the source of truth) and, where useful, compares the read models.
Each database is read in one repeatable-read transaction, so its checks see one moment.

An order is stuck when it sits in a saga stage longer than its deadline plus a margin
(`stuck_after`): the stage's pending row in `saga_deadlines` when it has one (payment,
compensation retries), else the time it entered the stage, since those stages (review,
reserving, invoicing) move on as soon as a participant answers. A stage that is only left by
its deadline (awaiting_payment, compensating) without a pending deadline row is stuck at
once: nothing would ever move it. Orders waiting for stock (backordered) or for a person
(on hold) are not stuck; but an order waiting for stock that inventory has reserved, or that
waits behind nobody for stock that is there, is. A confirmed order's fulfilment (stage
`fulfilling`) waits for its goods to travel (confirmed, partially shipped, shipped) and, on
account, for its payment (delivered): not stuck, once inventory has answered with shipments;
until then it waits on its `reply:ship` deadline like any forward step. `completed` is terminal.

Shipping: per SKU and warehouse, on hand = receipts + transfers in - transfers out - dispatched
+ adjustments (and never negative); stock in transit per transfer and SKU never below zero (in
+ written off never more than went out) and as the transfer read model says; no shipment leaves
twice, and the goods that left for a shipment are its lines; an order shipped, delivered or
completed had every line dispatched exactly once (and no order more than it ordered); a
delivered or completed order has every live shipment delivered or collected; a completed order
is paid in full.

Returns and refunds (docs/returns.md): no refund id is issued twice and no order has more
refunded than paid; each return is credited at most once, and a credit note's refund is paid
out exactly once at its amount; no SKU of an order is credited for more units than were
invoiced, and no more units come back to inventory than left for the order. A returned or
partially returned order had every line dispatched and every shipment arrived (like a
delivered one); it is done, not stuck.

The order desk (amendments, splits, merges): a reserved order's reservation holds, allocated
plus dispatched, exactly the order's current lines (the orders table's, which OrderAmended
updates); a backordered one holds nothing and waits, in the queue of each SKU it is short of,
for that line's units. An order with a change requested and not yet applied or refused is in
flight, as is a reservation that changed after the order's snapshot. A split's new order
exists and took the units that left its source; a merged order (terminal) has its units on
the order it became, which was placed with exactly its sources' units, and inventory holds or
queues nothing for it. Money, over every invoice: refunds never above what it was paid
(transfers in included), payments - carried to other orders - refunds never below 0, and each
transfer of a split or merge received at the amount sent (so the totals out and in agree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from libs.runtime.settings import RuntimeSettings

# merged: the order desk moved all of it into another order (the order desk section below).
TERMINAL = {"completed", "cancelled", "rejected", "merged"}
# For stock (until its stock wait deadline alerts a person, then cancels it, by policy) or for
# a person (held at review or over the credit limit).
WAITING = {"awaiting_stock", "on_hold"}
# Fulfilment: goods on their way, or (delivered, on account) the payment: as long as it takes.
FULFILLING = {"confirmed", "partially_shipped", "shipped", "delivered"}
# Goods came back after delivery: done (nothing left in flight), every shipment had arrived.
RETURNED = {"partially_returned", "returned"}
SHIPPED = {"shipped", "delivered", "completed"} | RETURNED  # every shipment has left
ARRIVED = {"delivered", "completed"} | RETURNED  # every shipment delivered or collected
LEFT_BY_DEADLINE = {"awaiting_payment", "compensating"}  # stages that must have a pending deadline
STUCK_AFTER_SECONDS = 60.0
# SKU events that change what is on hand in a warehouse: event type -> (ledger column,
# warehouse, change). A transfer in transit is on hand nowhere; one written off in transit
# changes nothing here. Dispatches (StockDispatched) are booked by `_dispatched`.
ON_HAND_CHANGES: dict[str, Callable[[dict[str, Any]], tuple[str, str, int]]] = {
    "StockReceived": lambda p: ("receipts", p["warehouse"], int(p["quantity"])),
    "StockAdjusted": lambda p: ("adjustments", p["warehouse"], int(p["delta"])),
    "StockTransferredOut": lambda p: ("transfers_out", p["from_warehouse"], -int(p["quantity"])),
    "StockTransferredIn": lambda p: ("transfers_in", p["to_warehouse"], int(p["quantity"])),
}
LEDGER = ("receipts", "transfers_in", "transfers_out", "dispatched", "adjustments", "consumed")
# Transfer events per SKU: event type -> the column of the transfer's line it adds to.
TRANSIT_CHANGES = {
    "StockTransferredOut": "sent",
    "StockTransferredIn": "received",
    "StockTransitWrittenOff": "written_off",
}


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # worth a look, not violations

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "violations": len(self.violations),
            "details": self.violations[:50],
            "notes": self.notes[:50],
            **self.counts,
        }


@dataclass
class SkuState:
    """One SKU folded from its events: stock per warehouse, live allocations, waiting orders."""

    on_hand: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    allocations: dict[str, dict[str, int]] = field(default_factory=dict)  # order -> {warehouse: qty}
    queue: list[str] = field(default_factory=list)  # backordered orders, first come first
    queued: dict[str, int] = field(default_factory=dict)  # order -> units it waits for
    shipped: set[tuple[str, str]] = field(default_factory=set)  # (shipment, warehouse) dispatched
    # warehouse -> ledger column -> units (signed as they change on hand)
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    transit: dict[str, dict[str, int]] = field(default_factory=dict)  # transfer -> sent/received/written_off
    # (shipment, warehouse) -> (order, sku, units) that left (StockDispatched)
    goods_out: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    # (production order, warehouse) whose reserved components went into production (StockConsumed)
    consumed: set[tuple[str, str]] = field(default_factory=set)

    def book(self, column: str, warehouse: str, change: int) -> None:
        self.on_hand[warehouse] = self.on_hand.get(warehouse, 0) + change
        columns = self.ledger.setdefault(warehouse, dict.fromkeys(LEDGER, 0))
        columns[column] += change

    def available(self) -> int:
        return sum(self.on_hand.values()) - sum(self.reserved.values())


@dataclass(frozen=True)
class Reservation:
    status: str
    idle_s: float  # since its last change
    wanted: dict[str, int]  # what the order asked for, per SKU (known once short)


@dataclass
class ShipmentState:
    """One shipment folded from its events."""

    order_id: str
    warehouse: str
    lines: dict[str, int]  # sku -> units
    status: str = "pending"
    left: int = 0  # ShipmentDispatched or ShipmentCollected events: at most one


SHIPMENT_STATUS = {
    "ShipmentCreated": "pending",
    "ShipmentPicked": "picking",
    "ShipmentPacked": "packed",
    "ShipmentDispatched": "dispatched",
    "ShipmentReadyForPickup": "ready_for_pickup",
    "ShipmentCollected": "collected",
    "ShipmentDelivered": "delivered",
    "ShipmentCancelled": "cancelled",
}


@dataclass(frozen=True)
class Inventory:
    skus: dict[str, SkuState]
    reservations: dict[str, Reservation]
    shipments: dict[str, ShipmentState] = field(default_factory=dict)
    # order -> sku -> units that left for it (StockDispatched)
    dispatched: dict[str, dict[str, int]] = field(default_factory=dict)


async def _connect(settings: RuntimeSettings, service: str) -> asyncpg.Connection:
    return await asyncpg.connect(settings.dsn(service))


async def check(
    settings: RuntimeSettings,
    accepted_orders: Iterable[str] = (),
    *,
    stuck_after: float = STUCK_AFTER_SECONDS,
    reject_channels: frozenset[str] | None = None,
) -> Report:
    """`accepted_orders`: the orders a load generator had accepted (all orders if empty).
    `reject_channels`: channels whose orders are rejected on a shortage rather than
    backordered (the order service's policy), to check each order's outcome against it."""
    report = Report()
    dbs = {name: await _connect(settings, name) for name in ("order", "inventory", "billing")}
    try:
        for db in dbs.values():
            await db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot_at = {}  # each database's snapshot is taken by its first query
        for name, db in dbs.items():
            snapshot_at[name] = time.monotonic()
            await _gapless_versions(name, db, report)
        # The order database's snapshot is taken first: what an order saw of inventory and
        # billing (a dispatch, a payment) is in their later snapshots too.
        inventory = await _stock(dbs["inventory"], report)
        money = await _money(dbs["billing"], report)
        await _orders(
            dbs["order"],
            dbs["billing"],
            inventory,
            money,
            set(accepted_orders),
            stuck_after,
            reject_channels,
            report,
        )
        await _order_desk(
            dbs["order"],
            inventory,
            set(accepted_orders),
            report,
            ahead_s=snapshot_at["inventory"] - snapshot_at["order"],
        )
        await _money_moves(dbs["billing"], report)
        production = await _connect_if_created(settings, "production")
        if production is not None:
            dbs["production"] = production
            # Its snapshot is taken after inventory's: every receipt or consumption inventory
            # booked for a production order comes from a completion this snapshot holds.
            await production.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await _gapless_versions("production", production, report)
            await _production(production, dbs["inventory"], stuck_after, report)
    finally:
        for db in dbs.values():
            await db.close()
    return report


async def _connect_if_created(settings: RuntimeSettings, service: str) -> asyncpg.Connection | None:
    """A service that is not part of every platform (production): None if it never ran (no
    database, or one its migrations never filled)."""
    try:
        db = await _connect(settings, service)
    except asyncpg.InvalidCatalogNameError:
        return None
    if await db.fetchval("SELECT to_regclass('events') IS NOT NULL"):
        return db
    await db.close()
    return None


# --- production -----------------------------------------------------------------------


@dataclass
class ProductionOrderState:
    quantity: int = 0
    completions: list[dict[str, Any]] = field(default_factory=list)
    scrapped_by_checks: int = 0
    completed_s: float = 0.0  # seconds since its completion


async def _production(
    db: asyncpg.Connection, inventory: asyncpg.Connection, stuck_after: float, report: Report
) -> None:
    """Every production order's quantities add up (passed + scrapped = quantity, the scrap its
    quality checks wrote off), it is completed at most once, its finished goods are received
    into inventory exactly once per completion (and only for one), and its components are
    consumed only once it is completed (StockConsumed once per warehouse: see `_consumed`)."""
    orders: dict[str, ProductionOrderState] = {}
    for row in await db.fetch(
        "SELECT event_type, payload, extract(epoch FROM now() - occurred_at)::float8 AS age_s FROM events"
        " WHERE stream_type = 'production_order'"
        " AND event_type IN ('ProductionOrderCreated', 'QualityCheckFailed', 'ProductionCompleted')"
        " ORDER BY stream_id, version"
    ):
        payload = json.loads(row["payload"])
        state = orders.setdefault(payload["production_order_id"], ProductionOrderState())
        if row["event_type"] == "ProductionOrderCreated":
            state.quantity = int(payload["quantity"])
        elif row["event_type"] == "QualityCheckFailed" and payload["disposition"] == "scrap":
            state.scrapped_by_checks += int(payload["failed"])
        elif row["event_type"] == "ProductionCompleted":
            state.completions.append(payload)
            state.completed_s = float(row["age_s"])
    receipts: dict[str, list[int]] = {}
    for row in await inventory.fetch(
        "SELECT payload FROM events WHERE stream_type = 'sku' AND event_type = 'StockReceived'"
        " AND payload->>'receipt_id' LIKE 'production:%'"
    ):
        payload = json.loads(row["payload"])
        receipts.setdefault(payload["receipt_id"].removeprefix("production:"), []).append(
            int(payload["quantity"])
        )
    consumed = {
        row["order_id"]
        for row in await inventory.fetch(
            "SELECT DISTINCT payload->>'order_id' AS order_id FROM events"
            " WHERE stream_type = 'sku' AND event_type = 'StockConsumed'"
        )
    }
    for production_order_id, state in sorted(orders.items()):
        _production_adds_up(
            production_order_id, state, receipts.pop(production_order_id, []), stuck_after, report
        )
        if production_order_id in consumed and not state.completions:
            report.fail(
                f"production: components of {production_order_id} consumed, but it was never completed"
            )
    for production_order_id in sorted(receipts)[:10]:
        report.fail(f"production: goods received for {production_order_id}, which production does not know")
    report.counts["production_orders"] = len(orders)
    report.counts["production_completed"] = sum(1 for s in orders.values() if s.completions)


def _production_adds_up(
    production_order_id: str,
    state: ProductionOrderState,
    received: list[int],
    stuck_after: float,
    report: Report,
) -> None:
    if len(state.completions) > 1:
        report.fail(f"production: {production_order_id} completed {len(state.completions)} times")
    if not state.completions:
        if received:
            report.fail(f"production: goods received for {production_order_id}, which is not completed")
        return
    completed = state.completions[0]
    passed, scrapped = int(completed["passed"]), int(completed["scrapped"])
    if passed + scrapped != state.quantity or scrapped != state.scrapped_by_checks:
        report.count("production_not_adding_up")
        report.fail(
            f"production: {production_order_id} made {state.quantity}: {passed} passed + {scrapped} scrapped"
            f" ({state.scrapped_by_checks} scrapped by its quality checks)"
        )
    if len(received) > 1:
        report.count("goods_received_twice")
        report.fail(f"production: the goods of {production_order_id} were received {len(received)} times")
    elif received and received[0] != passed:
        report.fail(f"production: {received[0]} received for {production_order_id}, which passed {passed}")
    elif not received and passed and state.completed_s > stuck_after:
        report.fail(
            f"production: {production_order_id} completed {state.completed_s:.0f}s ago, its {passed} units"
            " never received"
        )


async def _gapless_versions(name: str, db: asyncpg.Connection, report: Report) -> None:
    rows = await db.fetch(
        "SELECT stream_id, count(*) AS n, max(version) AS top FROM events"
        " GROUP BY stream_id HAVING count(*) <> max(version) LIMIT 20"
    )
    for row in rows:
        report.fail(f"{name}: stream {row['stream_id']} has {row['n']} events but version {row['top']}")


# --- inventory ------------------------------------------------------------------------


async def _stock(db: asyncpg.Connection, report: Report) -> Inventory:
    """Fold every SKU's events in stream order: reserved never above on hand (per SKU and
    warehouse) in what any transaction committed, no order allocated twice, and the read
    models equal the events."""
    rows = await db.fetch(
        "SELECT stream_id, transaction_id::text AS tx, event_type, payload FROM events"
        " WHERE stream_type = 'sku' ORDER BY stream_id, version"
    )
    skus: dict[str, SkuState] = {}
    twice = 0
    oversold: set[tuple[str, str]] = set()
    negative: set[tuple[str, str]] = set()
    for n, row in enumerate(rows):
        event, payload = row["event_type"], json.loads(row["payload"])
        sku = payload["sku"]
        state = skus.setdefault(sku, SkuState())
        if event in ON_HAND_CHANGES:
            column, warehouse, change = ON_HAND_CHANGES[event](payload)
            state.book(column, warehouse, change)
        if event in TRANSIT_CHANGES:
            _in_transit(sku, state, event, payload, report)
        if event == "StockAllocated":
            order_id, plan = payload["order_id"], payload["warehouses"]
            if order_id in state.allocations:
                twice += 1
                report.fail(f"inventory: {sku} reserved more than once for order {order_id}")
            state.allocations[order_id] = plan
            for warehouse, quantity in plan.items():
                state.reserved[warehouse] = state.reserved.get(warehouse, 0) + int(quantity)
        elif event == "StockDeallocated":
            # All the order held, or part of it (an amendment, a move): what is left stays held.
            order_id = payload["order_id"]
            held = state.allocations.pop(order_id, None)
            if held is None:
                report.fail(f"inventory: {sku} released for order {order_id}, which held none")
            for warehouse, quantity in payload["warehouses"].items():
                state.reserved[warehouse] = state.reserved.get(warehouse, 0) - int(quantity)
                if state.reserved[warehouse] < 0:
                    report.fail(f"inventory: {sku} at {warehouse} reserved below zero")
            left = {w: int(q) - int(payload["warehouses"].get(w, 0)) for w, q in (held or {}).items()}
            if any(q > 0 for q in left.values()):
                state.allocations[order_id] = {w: q for w, q in left.items() if q > 0}
        elif event == "StockDispatched":
            _dispatched(sku, state, payload, report)
        elif event == "StockConsumed":
            _consumed(sku, state, payload, report)
        elif event == "BackorderQueued":
            if payload["order_id"] in state.queue:
                report.fail(f"inventory: order {payload['order_id']} queued twice for {sku}")
            else:
                state.queue.append(payload["order_id"])
                state.queued[payload["order_id"]] = int(payload["quantity"])
        elif event == "BackorderDequeued" and payload["order_id"] in state.queue:
            state.queue.remove(payload["order_id"])
        elif event == "BackorderResized" and payload["order_id"] in state.queue:
            state.queued[payload["order_id"]] = int(payload["quantity"])
        elif event == "BackorderMoved":
            _backorder_moved(sku, state, payload, report)
        following = rows[n + 1] if n + 1 < len(rows) else None
        if following is None or (following["stream_id"], following["tx"]) != (row["stream_id"], row["tx"]):
            # What a transaction committed: within one, an adjustment may take on hand below
            # what is reserved just before the reservations that no longer fit are revoked.
            for warehouse, on_hand in state.on_hand.items():
                if on_hand < 0 and (sku, warehouse) not in negative:
                    negative.add((sku, warehouse))
                    report.fail(f"inventory: {sku} at {warehouse} has {on_hand} on hand after a {event}")
            for warehouse, reserved in state.reserved.items():
                if reserved > state.on_hand.get(warehouse, 0) and (sku, warehouse) not in oversold:
                    oversold.add((sku, warehouse))
                    report.fail(
                        f"inventory: {sku} oversold at {warehouse}: {reserved} reserved of"
                        f" {state.on_hand.get(warehouse, 0)} on hand after a {event}"
                    )
    report.counts["stock_reserved_twice"] = twice
    report.counts["oversold"] = len(oversold)
    await _stock_read_models(db, skus, report)
    await _transit_read_model(db, skus, report)
    reservations = await _reservations(db, report)
    _backorders_served(skus, reservations, report)
    shipments = await _shipments(db, report)
    dispatched = _goods_out_match_shipments(skus, shipments, report)
    await _goods_back_within_goods_out(db, dispatched, report)
    return Inventory(skus, reservations, shipments, dispatched)


async def _goods_back_within_goods_out(
    db: asyncpg.Connection, dispatched: dict[str, dict[str, int]], report: Report
) -> None:
    """No more units of an order's SKU come back (restocked or written off) than left for it."""
    rows = await db.fetch(
        "SELECT payload->>'order_id' AS order_id, a->>'sku' AS sku, sum((a->>'quantity')::int) AS units,"
        " array_agg(DISTINCT payload->>'return_id') AS return_ids"
        " FROM events, jsonb_array_elements(payload->'restocked' || payload->'written_off') a"
        " WHERE event_type = 'ReturnedGoodsReceived' GROUP BY 1, 2"
    )
    returns_of: dict[str, set[str]] = {}
    for row in rows:
        returns_of.setdefault(row["order_id"], set()).update(row["return_ids"])
    over = 0
    for row in rows:
        # A replacement is dispatched under its return's id; it may come back in turn.
        shipped_under = {row["order_id"], *returns_of.get(row["order_id"], ())}
        left = sum(dispatched.get(under, {}).get(row["sku"], 0) for under in shipped_under)
        if row["units"] > left:
            over += 1
            report.fail(
                f"inventory: {row['units']} x {row['sku']} came back for order {row['order_id']}; {left} left"
            )
    report.counts["returned_over_dispatched"] = over


def _in_transit(sku: str, state: SkuState, event: str, payload: dict[str, Any], report: Report) -> None:
    """Stock in transit is conserved: what arrives or is written off never exceeds what went
    out for that transfer, so in transit (sent - received - written off) never falls below 0."""
    line = state.transit.setdefault(payload["transfer_id"], {"sent": 0, "received": 0, "written_off": 0})
    line[TRANSIT_CHANGES[event]] += int(payload["quantity"])
    in_transit = line["sent"] - line["received"] - line["written_off"]
    if in_transit < 0:
        report.count("transit_negative")
        report.fail(
            f"inventory: transfer {payload['transfer_id']} of {sku} has {in_transit} in transit after a"
            f" {event} (sent {line['sent']}, received {line['received']}, written off {line['written_off']})"
        )


def _backorder_moved(sku: str, state: SkuState, payload: dict[str, Any], report: Report) -> None:
    """Queued units went to another order (a split or merge), with the giver's place (or the
    taker's own, if earlier); the giver leaves the queue when nothing is left of its entry."""
    giver, taker, quantity = payload["from_order_id"], payload["to_order_id"], int(payload["quantity"])
    if giver not in state.queue:
        report.fail(f"inventory: order {giver} gave its place for {sku} to {taker}, but it was not queued")
        return
    if taker not in state.queue:
        state.queue.insert(state.queue.index(giver), taker)
    state.queued[taker] = state.queued.get(taker, 0) + quantity
    state.queued[giver] = state.queued.get(giver, 0) - quantity
    if state.queued[giver] <= 0:
        state.queue.remove(giver)


def _dispatched(sku: str, state: SkuState, payload: dict[str, Any], report: Report) -> None:
    """Goods left for an order: only what it held there, once per shipment; on hand and
    reserved fall together."""
    order_id, warehouse, quantity = payload["order_id"], payload["warehouse"], int(payload["quantity"])
    if (payload["shipment_id"], warehouse) in state.shipped:
        report.fail(f"inventory: shipment {payload['shipment_id']} took {sku} out of {warehouse} twice")
    state.shipped.add((payload["shipment_id"], warehouse))
    previous = state.goods_out.get((payload["shipment_id"], warehouse), (order_id, payload["sku"], 0))[2]
    state.goods_out[(payload["shipment_id"], warehouse)] = (order_id, payload["sku"], previous + quantity)
    held = {w: int(q) for w, q in state.allocations.get(order_id, {}).items()}
    if held.get(warehouse, 0) < quantity:
        report.fail(
            f"inventory: {quantity} of {sku} left {warehouse} for order {order_id}, which held"
            f" {held.get(warehouse, 0)} there"
        )
    held[warehouse] = held.get(warehouse, 0) - quantity
    state.allocations.pop(order_id, None)
    if any(q > 0 for q in held.values()):
        state.allocations[order_id] = {w: q for w, q in held.items() if q > 0}
    state.book("dispatched", warehouse, -quantity)
    state.reserved[warehouse] = state.reserved.get(warehouse, 0) - quantity


def _consumed(sku: str, state: SkuState, payload: dict[str, Any], report: Report) -> None:
    """Components went into production: only what the production order held there, once; on
    hand and reserved fall together."""
    order_id, warehouse, quantity = payload["order_id"], payload["warehouse"], int(payload["quantity"])
    if (order_id, warehouse) in state.consumed:
        report.count("components_consumed_twice")
        report.fail(f"inventory: production order {order_id} consumed {sku} at {warehouse} twice")
    state.consumed.add((order_id, warehouse))
    held = state.allocations.get(order_id, {})
    if int(held.get(warehouse, 0)) < quantity:
        report.fail(
            f"inventory: production order {order_id} consumed {quantity} of {sku} at {warehouse},"
            f" holding {held.get(warehouse, 0)} there"
        )
    left = {w: int(q) for w, q in held.items() if w != warehouse}
    state.allocations.pop(order_id, None)
    if any(left.values()):
        state.allocations[order_id] = left
    state.book("consumed", warehouse, -quantity)
    state.reserved[warehouse] = state.reserved.get(warehouse, 0) - quantity


async def _stock_read_models(db: asyncpg.Connection, skus: dict[str, SkuState], report: Report) -> None:
    expected = {
        (sku, warehouse): (state.on_hand.get(warehouse, 0), state.reserved.get(warehouse, 0))
        for sku, state in skus.items()
        for warehouse in set(state.on_hand) | set(state.reserved)
    }
    levels = {
        (r["sku"], r["warehouse"]): (r["on_hand"], r["reserved"])
        for r in await db.fetch("SELECT sku, warehouse, on_hand, reserved FROM stock_levels")
    }
    for key in sorted(set(expected) | set(levels)):
        (on_hand, reserved), (want_on_hand, want_reserved) = (
            levels.get(key, (0, 0)),
            expected.get(key, (0, 0)),
        )
        if on_hand != want_on_hand:
            report.count("stock_not_adding_up")
            sku, warehouse = key
            ledger = skus[sku].ledger.get(warehouse, dict.fromkeys(LEDGER, 0)) if sku in skus else {}
            sums = " ".join(
                f"{'-' if v < 0 or column in ('transfers_out', 'dispatched', 'consumed') else '+'}"
                f" {column.replace('_', ' ')} {abs(v)}"
                for column, v in ledger.items()
                if v or column != "consumed"  # production's column: named only where it moved stock
            )
            report.fail(
                f"inventory: {sku} at {warehouse} has {on_hand} on hand, but"
                f" {sums.lstrip('+ ') or 'no events'} = {want_on_hand}"
            )
        if reserved != want_reserved:
            report.fail(f"inventory: {key} has {reserved} reserved but events say {want_reserved}")
    queued = {(sku, order_id) for sku, state in skus.items() for order_id in state.queue}
    backorders = {(r["sku"], r["order_id"]) for r in await db.fetch("SELECT sku, order_id FROM backorders")}
    for sku, order_id in sorted(queued ^ backorders)[:10]:
        side = "events" if (sku, order_id) in queued else "the backorders table"
        report.fail(f"inventory: only {side} say order {order_id} waits for {sku}")


async def _transit_read_model(db: asyncpg.Connection, skus: dict[str, SkuState], report: Report) -> None:
    """The transfer lines that have left say what arrived and what was written off as the
    events do (a transfer requested but not dispatched has sent nothing yet)."""
    lines = {
        (r["transfer_id"], r["sku"]): (int(r["quantity"]), int(r["received"]), int(r["written_off"]))
        for r in await db.fetch(
            "SELECT transfer_id, sku, quantity, received, written_off FROM transfer_lines"
        )
    }
    for sku, state in skus.items():
        for transfer_id, line in state.transit.items():
            quantity, received, written_off = lines.get((transfer_id, sku), (0, 0, 0))
            if (quantity, received, written_off) != (line["sent"], line["received"], line["written_off"]):
                report.fail(
                    f"inventory: transfer {transfer_id} of {sku}: read model says {quantity} sent,"
                    f" {received} received, {written_off} written off; events say {line['sent']},"
                    f" {line['received']}, {line['written_off']}"
                )


async def _shipments(db: asyncpg.Connection, report: Report) -> dict[str, ShipmentState]:
    """Each shipment from its events: it leaves the warehouse (dispatched or collected) at most
    once, and the read model's status is its last event's."""
    rows = await db.fetch(
        "SELECT stream_id, event_type, payload FROM events WHERE stream_type = 'shipment'"
        " ORDER BY stream_id, version"
    )
    shipments: dict[str, ShipmentState] = {}
    twice = 0
    for row in rows:
        event, payload = row["event_type"], json.loads(row["payload"])
        shipment_id = payload["shipment_id"]
        if event == "ShipmentCreated":
            lines: dict[str, int] = {}
            for line in payload["lines"]:
                lines[line["sku"]] = lines.get(line["sku"], 0) + int(line["quantity"])
            shipments[shipment_id] = ShipmentState(payload["order_id"], payload["warehouse"], lines)
        shipment = shipments.get(shipment_id)
        if shipment is None:
            report.fail(f"inventory: shipment {shipment_id} has a {event} before it was created")
            continue
        if event in ("ShipmentDispatched", "ShipmentCollected"):
            shipment.left += 1
            if shipment.left == 2:
                twice += 1
                report.fail(
                    f"inventory: shipment {shipment_id} of order {shipment.order_id} left its warehouse twice"
                )
        shipment.status = SHIPMENT_STATUS.get(event, shipment.status)
    report.counts["dispatched_twice"] = twice
    table = {
        r["shipment_id"]: r["status"] for r in await db.fetch("SELECT shipment_id, status FROM shipments")
    }
    for shipment_id in sorted(set(table) | set(shipments)):
        events_say = shipments[shipment_id].status if shipment_id in shipments else None
        if table.get(shipment_id) != events_say:
            report.fail(
                f"inventory: shipment {shipment_id} is {table.get(shipment_id)}"
                f" but its events say {events_say}"
            )
    return shipments


def _goods_out_match_shipments(
    skus: dict[str, SkuState], shipments: dict[str, ShipmentState], report: Report
) -> dict[str, dict[str, int]]:
    """The goods that left for a shipment (StockDispatched) are its lines, once, if it left,
    and nothing if it did not; returns the units that left per order and SKU."""
    out: dict[str, dict[str, int]] = {}  # shipment -> sku -> units
    per_order: dict[str, dict[str, int]] = {}
    for state in skus.values():
        for (shipment_id, _warehouse), (order_id, sku, quantity) in state.goods_out.items():
            out.setdefault(shipment_id, {})[sku] = out.get(shipment_id, {}).get(sku, 0) + quantity
            per_order.setdefault(order_id, {})[sku] = per_order.get(order_id, {}).get(sku, 0) + quantity
    for shipment_id in sorted(set(out) | set(shipments)):
        shipment = shipments.get(shipment_id)
        expected = shipment.lines if shipment is not None and shipment.left else {}
        if out.get(shipment_id, {}) != expected:
            left = "left" if shipment is not None and shipment.left else "did not leave"
            report.fail(
                f"inventory: shipment {shipment_id} {left} with lines {expected}, but the goods that"
                f" left for it are {out.get(shipment_id, {})}"
            )
    return per_order


async def _reservations(db: asyncpg.Connection, report: Report) -> dict[str, Reservation]:
    """Each order's reservation as its last event says, checked against the read model."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (stream_id) event_type, payload FROM events WHERE stream_type = 'reservation'"
        " AND event_type IN ('StockReserved', 'StockShortage', 'StockReleased', 'ReservationConsumed',"
        " 'ReservationAdjusted')"
        " ORDER BY stream_id, version DESC"
    )
    table = {
        r["order_id"]: (r["status"], float(r["idle_s"]))
        for r in await db.fetch(
            "SELECT order_id, status, extract(epoch FROM now() - updated_at)::float8 AS idle_s"
            " FROM reservations"
        )
    }
    reservations: dict[str, Reservation] = {}
    for row in rows:
        payload = json.loads(row["payload"])
        status = {
            "StockReserved": "reserved",
            "StockReleased": "released",
            "ReservationConsumed": "consumed",
        }.get(row["event_type"], "backordered" if payload.get("backordered") else "refused")
        if row["event_type"] == "ReservationAdjusted":  # an amendment, split or merge
            status = (
                "released" if not payload["lines"] else "backordered" if payload["waiting"] else "reserved"
            )
        order_id = payload["order_id"]
        wanted: dict[str, int] = {}
        for line in payload.get("lines", ()):
            wanted[line["sku"]] = wanted.get(line["sku"], 0) + int(line["quantity"])
        in_table, idle_s = table.pop(order_id, (None, 0.0))
        if in_table != status:
            report.fail(f"inventory: reservation of {order_id} is {in_table} but its events say {status}")
        reservations[order_id] = Reservation(status, idle_s, wanted)
    for order_id in sorted(table)[:10]:
        report.fail(f"inventory: reservation of {order_id} has no events")
    return reservations


def _backorders_served(
    skus: dict[str, SkuState], reservations: dict[str, Reservation], report: Report
) -> None:
    """Stock is reserved for the first waiting order in the transaction that frees or books
    it, so no queue may start with an order that is not waiting, or one that could be served."""
    for sku, state in skus.items():
        if not state.queue:
            continue
        head = state.queue[0]
        reservation = reservations.get(head)
        if reservation is None or reservation.status != "backordered":
            status = reservation.status if reservation else "unknown"
            report.fail(f"inventory: {sku}'s backorders start with order {head}, which is {status}")
            continue
        if all(
            s in skus and skus[s].available() >= quantity and skus[s].queue[:1] in ([], [head])
            for s, quantity in reservation.wanted.items()
        ):
            report.fail(
                f"inventory: order {head} waits first in line for {sku}, and the stock it asks for"
                f" ({reservation.wanted}) is available"
            )


# --- billing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    invoiced: Decimal
    kept: Decimal  # paid less refunded
    voided: bool
    paid: Decimal | None = None  # None: as kept (no refund to tell apart)

    @property
    def paid_in_full(self) -> bool:
        """Paid the invoice in full, whatever was given back after (a goodwill refund)."""
        paid = self.kept if self.paid is None else self.paid
        return not self.voided and self.invoiced > 0 and paid >= self.invoiced


async def _money(db: asyncpg.Connection, report: Report) -> dict[str, Money]:
    """Per order: invoiced, kept and voided, from billing's events."""
    payments = await db.fetch(
        "SELECT payload->>'reference' AS reference, count(*) AS n FROM events"
        " WHERE event_type = 'PaymentReceived' GROUP BY 1 HAVING count(*) > 1"
    )
    report.counts["payments_applied_twice"] = len(payments)
    for row in payments[:10]:
        report.fail(f"billing: payment {row['reference']} applied {row['n']} times")
    refunds = await db.fetch(
        "SELECT payload->>'refund_id' AS refund_id, count(*) AS n FROM events"
        " WHERE event_type = 'RefundIssued' GROUP BY 1 HAVING count(*) > 1"
    )
    report.counts["refunds_issued_twice"] = len(refunds)
    for row in refunds[:10]:
        report.fail(f"billing: refund {row['refund_id']} issued {row['n']} times")
    # An order desk's change (InvoiceAdjusted, docs/billing.md) sets the invoice's total anew and
    # may carry money to another order's invoice (received there as a "transfer" payment).
    per_order = await db.fetch(
        "SELECT payload->>'order_id' AS order_id,"
        " (array_agg((payload->>'total')::numeric ORDER BY version DESC)"
        "  FILTER (WHERE event_type IN ('InvoiceIssued', 'InvoiceAdjusted')))[1] AS invoiced,"
        " coalesce(sum((payload->>'amount')::numeric) FILTER (WHERE event_type = 'PaymentReceived'), 0)"
        "  - coalesce(sum((payload->>'transferred')::numeric)"
        "   FILTER (WHERE event_type = 'InvoiceAdjusted'), 0)"
        "  AS paid,"
        " sum((payload->>'amount')::numeric) FILTER (WHERE event_type = 'RefundIssued') AS refunded,"
        " bool_or(event_type = 'InvoiceVoided') AS voided"
        " FROM events WHERE stream_type = 'invoice' GROUP BY 1"
    )
    money = {}
    for row in per_order:
        kept = Decimal(row["paid"] or 0) - Decimal(row["refunded"] or 0)
        if kept > Decimal(row["invoiced"] or 0) or kept < 0:
            report.fail(f"billing: order {row['order_id']} keeps {kept} of {row['invoiced']} invoiced")
        if row["voided"] and kept != 0:
            report.fail(f"billing: order {row['order_id']} is void but keeps {kept}")
        money[row["order_id"]] = Money(
            Decimal(row["invoiced"] or 0), kept, bool(row["voided"]), Decimal(row["paid"] or 0)
        )
    await _credit_notes(db, report)
    return money


async def _credit_notes(db: asyncpg.Connection, report: Report) -> None:
    """Each return credited once, its refund paid out once at the credit note's amount, and
    no SKU credited for more units than its invoice has."""
    twice = await db.fetch(
        "SELECT payload->>'return_id' AS return_id, count(*) AS n FROM events"
        " WHERE event_type = 'CreditNoteIssued' AND payload->>'return_id' IS NOT NULL"
        " GROUP BY 1 HAVING count(*) > 1"
    )
    report.counts["returns_credited_twice"] = len(twice)
    for row in twice[:10]:
        report.fail(f"billing: return {row['return_id']} credited {row['n']} times")
    unpaid = await db.fetch(
        "SELECT n.payload->>'credit_note_id' AS credit_note_id,"
        " (n.payload->>'refund_amount')::numeric AS due,"
        " coalesce(sum((r.payload->>'amount')::numeric), 0) AS refunded FROM events n"
        " LEFT JOIN events r ON r.event_type = 'RefundIssued'"
        "  AND r.payload->>'credit_note_id' = n.payload->>'credit_note_id'"
        " WHERE n.event_type = 'CreditNoteIssued' GROUP BY 1, 2"
        " HAVING coalesce(sum((r.payload->>'amount')::numeric), 0) <> (n.payload->>'refund_amount')::numeric"
    )
    report.counts["credit_notes_refunded_wrongly"] = len(unpaid)
    for row in unpaid[:10]:
        report.fail(
            f"billing: credit note {row['credit_note_id']} refunds {row['due']},"
            f" but {row['refunded']} went back"
        )
    over = await db.fetch(
        "WITH credited AS (SELECT payload->>'order_id' AS order_id, l->>'sku' AS sku,"
        "  sum((l->>'quantity')::int) AS units FROM events, jsonb_array_elements(payload->'lines') l"
        "  WHERE event_type = 'CreditNoteIssued' GROUP BY 1, 2),"
        " latest AS (SELECT DISTINCT ON (payload->>'order_id') payload->>'order_id' AS order_id,"
        "  payload->'lines' AS lines FROM events"
        "  WHERE event_type IN ('InvoiceIssued', 'InvoiceAdjusted')"
        "  ORDER BY payload->>'order_id', version DESC),"
        " invoiced AS (SELECT order_id, l->>'sku' AS sku, sum((l->>'quantity')::int) AS units"
        "  FROM latest, jsonb_array_elements(lines) l GROUP BY 1, 2)"
        " SELECT c.order_id, c.sku, c.units, coalesce(i.units, 0) AS invoiced FROM credited c"
        " LEFT JOIN invoiced i USING (order_id, sku) WHERE c.units > coalesce(i.units, 0)"
    )
    report.counts["units_credited_over_invoiced"] = len(over)
    for row in over[:10]:
        report.fail(
            f"billing: order {row['order_id']} credited {row['units']} x {row['sku']}"
            f" of {row['invoiced']} invoiced"
        )


# --- orders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    status: str
    stage: str
    channel: str
    idle_s: float  # since its last change
    deadlines: int  # pending saga_deadlines rows
    overdue_s: float | None  # since its earliest pending deadline (negative: still ahead)
    shipments: int = 0  # shipments the order knows of (inventory answered its CreateShipments)


def classify(order: OrderRow, stuck_after: float) -> tuple[str, str]:
    """(kind, how it stands): kind is "terminal", "waiting" (for stock, a person, its goods
    to travel or its payment after delivery), "in_flight" (mid-saga, within its deadline plus
    the margin), "needs_attention" or "stuck"."""
    where = f"{order.status}/{order.stage}"
    if order.status in TERMINAL or order.status in RETURNED:
        return "terminal", where
    if order.status == "needs_attention":
        return "needs_attention", where  # a person was alerted; counted, not a violation
    if order.status in WAITING:
        # A wait's deadline (the stock wait's alert or cancel) that passed and did nothing
        # would leave the order waiting forever.
        if order.deadlines and order.overdue_s is not None and order.overdue_s > stuck_after:
            return "stuck", f"in {where}: its deadline passed {order.overdue_s:.0f}s ago"
        return "waiting", where
    if order.stage == "fulfilling" and order.status in FULFILLING and order.shipments:
        return "waiting", where
    if order.deadlines:
        assert order.overdue_s is not None
        if order.overdue_s > stuck_after:
            return "stuck", f"in {where}: its deadline passed {order.overdue_s:.0f}s ago"
        return "in_flight", f"in {where}, deadline in {-order.overdue_s:.0f}s"
    if order.stage in LEFT_BY_DEADLINE:
        return "stuck", f"in {where} with no pending deadline ({order.idle_s:.0f}s since its last change)"
    if order.idle_s > stuck_after:
        return "stuck", f"in {where} for {order.idle_s:.0f}s, and the stage has no deadline"
    return "in_flight", f"in {where} for {order.idle_s:.0f}s"  # a participant's answer is on its way


async def order_rows(db: asyncpg.Connection, order_ids: Iterable[str] | None = None) -> dict[str, OrderRow]:
    """Orders (all, or those named) with their pending deadlines, timed by the database's clock."""
    rows = await db.fetch(
        "SELECT o.order_id, o.status, o.stage, o.channel,"
        " extract(epoch FROM now() - o.updated_at)::float8 AS idle_s,"
        " count(d.kind) AS deadlines,"
        " extract(epoch FROM now() - min(d.due_at))::float8 AS overdue_s,"
        " (SELECT count(*) FROM order_shipments s WHERE s.order_id = o.order_id) AS shipments"
        " FROM orders o LEFT JOIN saga_deadlines d USING (order_id)"
        " WHERE $1::text[] IS NULL OR o.order_id = ANY($1::text[]) GROUP BY o.order_id",
        None if order_ids is None else list(order_ids),
    )
    return {r["order_id"]: OrderRow(**dict(r)) for r in rows}


async def _orders(
    order_db: asyncpg.Connection,
    billing_db: asyncpg.Connection,
    inventory: Inventory,
    money: dict[str, Money],
    accepted: set[str],
    stuck_after: float,
    reject_channels: frozenset[str] | None,
    report: Report,
) -> None:
    orders = await order_rows(order_db)
    lost = accepted - set(orders)
    report.counts["lost"] = len(lost)
    for order_id in sorted(lost)[:10]:
        report.fail(f"order: accepted order {order_id} is missing")
    considered = sorted(accepted or set(orders))
    for name in ("terminal", "waiting", "in_flight", "needs_attention", "stuck"):
        report.counts[name] = 0
    for order_id in considered:
        if order_id not in orders:
            continue
        kind, how = classify(orders[order_id], stuck_after)
        report.count(kind)
        if kind == "stuck":
            report.fail(f"order: {order_id} stuck {how}")
        elif kind == "in_flight":
            report.notes.append(f"order: {order_id} still {how}")
    void = {
        r["order_id"] for r in await billing_db.fetch("SELECT order_id FROM invoices WHERE status = 'void'")
    }
    for name in ("stock_reserved", "backordered", "refused_stock", "released_stock", "rejected_unreserved"):
        report.counts[name] = 0
    for order_id in considered:
        order = orders.get(order_id)
        if order is None:
            continue
        reservation = inventory.reservations.get(order_id)
        held = reservation.status if reservation else None
        if held == "reserved":
            report.count("stock_reserved")
        elif held == "backordered":
            report.count("backordered")
        elif held == "refused":
            report.count("refused_stock")
        elif held == "released":
            report.count("released_stock")
        elif held is None and order.status == "rejected":
            # Rejected before anything was reserved for it: at review, or a split's or merge's
            # new order whose units inventory refused to move.
            report.count("rejected_unreserved")
        if order.status == "confirmed" and (held != "reserved" or order_id in void):
            report.fail(f"order: {order_id} confirmed without live reservation or with a void invoice")
        if order.status in ("cancelled", "rejected") and held == "reserved":
            report.fail(f"order: {order_id} is {order.status} but still holds stock")
        _stock_outcome(order, reservation, stuck_after, reject_channels, report)
    lines = {
        r["order_id"]: json.loads(r["lines"])
        for r in await order_db.fetch(
            "SELECT order_id, lines FROM orders WHERE order_id = ANY($1::text[])", considered
        )
    }
    for name in ("shipped", "delivered", "completed", "lines_not_dispatched_once"):
        report.counts[name] = 0
    for order_id in considered:
        if order_id in orders:
            _shipping(orders[order_id], lines.get(order_id, []), inventory, money.get(order_id), report)


def _shipping(
    order: OrderRow, lines: list[dict[str, Any]], inventory: Inventory, money: Money | None, report: Report
) -> None:
    """An order shipped (or beyond) had every line dispatched exactly once, and none more than
    it ordered; delivered (or completed) means every live shipment arrived; completed, paid."""
    order_id = order.order_id
    ordered: dict[str, int] = {}
    for line in lines:
        ordered[line["sku"]] = ordered.get(line["sku"], 0) + int(line["quantity"])
    dispatched = inventory.dispatched.get(order_id, {})
    if order.status in SHIPPED:
        report.count("shipped")
        if dispatched != ordered:
            report.count("lines_not_dispatched_once")
            report.fail(f"order: {order_id} is {order.status}, but of {ordered} ordered {dispatched} left")
    elif any(quantity > ordered.get(sku, 0) for sku, quantity in dispatched.items()):
        report.count("lines_not_dispatched_once")
        report.fail(f"order: {order_id} is {order.status}, and {dispatched} left of {ordered} ordered")
    if order.status in ARRIVED:
        report.count("delivered")
        for shipment_id, shipment in sorted(inventory.shipments.items()):
            if shipment.order_id == order_id and shipment.status not in (
                "delivered",
                "collected",
                "cancelled",
            ):
                report.fail(
                    f"order: {order_id} is {order.status},"
                    f" but its shipment {shipment_id} is {shipment.status}"
                )
    if order.status == "completed":
        report.count("completed")
        if money is None or not money.paid_in_full:
            how = "no invoice" if money is None else f"{money.kept} kept of {money.invoiced} invoiced"
            report.fail(f"order: {order_id} is completed but not paid in full ({how})")


def _stock_outcome(
    order: OrderRow,
    reservation: Reservation | None,
    stuck_after: float,
    reject_channels: frozenset[str] | None,
    report: Report,
) -> None:
    """An order and inventory agree on what happened to its stock: reserved, backordered
    (and the order waits), or refused (and the order was rejected by its shortage policy).
    A reply still on its way is allowed `stuck_after` seconds."""
    if reservation is None:
        return
    settled = reservation.idle_s > stuck_after and order.idle_s > stuck_after
    if reservation.status == "backordered":
        # needs_attention: it waited past the stock wait's alert time, and waits on. on_hold:
        # its credit check, run beside the reservation, held it for finance meanwhile.
        if order.status not in ("awaiting_stock", "needs_attention", "on_hold") and settled:
            report.fail(f"order: {order.order_id} is {order.status} but inventory has it backordered")
        if reject_channels is not None and order.channel in reject_channels:
            report.fail(f"order: {order.order_id} from {order.channel} was backordered, not rejected")
    elif reservation.status == "refused":
        if order.status != "rejected" and settled:
            report.fail(f"order: {order.order_id} is {order.status} but inventory refused its stock")
        if reject_channels is not None and order.channel not in reject_channels:
            report.fail(f"order: {order.order_id} from {order.channel} was refused stock, not backordered")
    elif order.status == "awaiting_stock" and settled:
        report.fail(
            f"order: {order.order_id} stuck in awaiting_stock: inventory's reservation is"
            f" {reservation.status} since {reservation.idle_s:.0f}s"
        )


# --- the order desk: amendments, splits and merges (docs/order-desk.md) ---------------------

# The events of a change on the order: requested, then applied (amended, merged) or refused.
CHANGE_EVENTS = ("OrderChangeRequested", "OrderAmended", "OrderMerged", "OrderChangeRefused")
# Inventory's snapshot is taken after the order's: a reservation that changed since then (or
# whose change committed a moment after it was stamped) may answer a change the order has not
# heard of yet. Added to the time between the two snapshots.
RESERVATION_AHEAD_SECONDS = 2.0
# An order whose reservation should not be compared with its lines: ended (its stock released
# or gone with its goods), or a person alerted (a change refused whose reservation could not be
# put back says the two differ until that person acts).
NOT_COMPARED = TERMINAL | RETURNED | {"needs_attention"}


@dataclass
class DeskChanges:
    """The order desk's changes as the orders' events tell them."""

    under_way: set[str] = field(default_factory=set)  # requested, not yet applied or refused
    splits: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)  # (from, into, units)
    merged_into: dict[str, str] = field(default_factory=dict)
    moved_from: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # new -> source -> units
    placed: dict[str, dict[str, int]] = field(default_factory=dict)  # a split's or merge's new order's lines


def _units(lines: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Units per SKU of order lines (a SKU may have several lines)."""
    units: dict[str, int] = {}
    for line in lines:
        units[line["sku"]] = units.get(line["sku"], 0) + int(line["quantity"])
    return units


async def _desk_changes(db: asyncpg.Connection) -> DeskChanges:
    rows = await db.fetch(
        "SELECT event_type, payload FROM events WHERE stream_type = 'order'"
        " AND (event_type = ANY($1::text[])"
        "  OR (event_type = 'OrderPlaced' AND payload->>'origin' IS NOT NULL))"
        " ORDER BY stream_id, version",
        list(CHANGE_EVENTS),
    )
    changes = DeskChanges()
    for row in rows:
        event, payload = row["event_type"], json.loads(row["payload"])
        order_id = payload["order_id"]
        if event == "OrderPlaced":
            changes.placed[order_id] = _units(payload["lines"])
            changes.moved_from[order_id] = {m["order_id"]: _units(m["lines"]) for m in payload["moved_from"]}
            continue
        if event == "OrderChangeRequested":
            changes.under_way.add(order_id)
            continue
        changes.under_way.discard(order_id)
        if event == "OrderAmended" and payload.get("split_into"):
            before, after = _units(payload["previous_lines"]), _units(payload["lines"])
            left = {sku: n - after.get(sku, 0) for sku, n in before.items() if n > after.get(sku, 0)}
            changes.splits.append((order_id, payload["split_into"], left))
        elif event == "OrderMerged":
            changes.merged_into[order_id] = payload["into_order_id"]
    return changes


async def _order_desk(
    db: asyncpg.Connection, inventory: Inventory, accepted: set[str], report: Report, ahead_s: float = 0.0
) -> None:
    """Reservations match the orders' current lines; a split's new order exists with the units
    that left its source; a merged order's units are all on the order it became, and inventory
    holds nothing for it any more. `ahead_s`: how much later inventory's snapshot was taken."""
    changes = await _desk_changes(db)
    orders = {
        r["order_id"]: (r["status"], r["stage"], _units(json.loads(r["lines"])))
        for r in await db.fetch("SELECT order_id, status, stage, lines FROM orders")
    }
    held: dict[str, dict[str, int]] = {}  # order -> sku -> units allocated to it
    queued: dict[str, dict[str, int]] = {}  # order -> sku -> units it waits for in the SKU's queue
    for sku, state in inventory.skus.items():
        for order_id, plan in state.allocations.items():
            units = sum(int(q) for q in plan.values())
            if units:
                held.setdefault(order_id, {})[sku] = units
        for order_id in state.queue:
            queued.setdefault(order_id, {})[sku] = state.queued.get(order_id, 0)
    for name in ("reservations_checked", "reservations_changing", "reservations_not_matching_lines"):
        report.counts[name] = 0
    for order_id in sorted(accepted or set(orders)):
        if order_id not in orders:
            continue
        status, stage, ordered = orders[order_id]
        reservation = inventory.reservations.get(order_id)
        if (
            reservation is None
            or reservation.status not in ("reserved", "backordered")
            or status in NOT_COMPARED
            or stage == "compensating"
        ):
            continue
        if order_id in changes.under_way or reservation.idle_s < ahead_s + RESERVATION_AHEAD_SECONDS:
            report.count("reservations_changing")  # like any step in flight: not yet comparable
            continue
        report.count("reservations_checked")
        mismatch = _reservation_mismatch(
            reservation,
            ordered,
            held.get(order_id, {}),
            queued.get(order_id, {}),
            inventory.dispatched.get(order_id, {}),
        )
        if mismatch:
            report.count("reservations_not_matching_lines")
            report.fail(f"order: {order_id} ({status}) orders {ordered}, but inventory {mismatch}")
    _splits_and_merges(changes, orders, held, queued, inventory, report)


def _reservation_mismatch(
    reservation: Reservation,
    ordered: dict[str, int],
    held: dict[str, int],
    queued: dict[str, int],
    dispatched: dict[str, int],
) -> str | None:
    """How the units inventory holds or queues for an order differ from its lines, or None.
    Reserved: what is allocated plus what left for it is every line. Backordered: it holds
    nothing, waits in the queue of some SKU, and for each such SKU waits for the line's units."""
    if reservation.status == "reserved":
        has = {sku: held.get(sku, 0) + dispatched.get(sku, 0) for sku in set(held) | set(dispatched)}
        if has != ordered or queued:
            return (
                f"holds {held}"
                + (f", {dispatched} left" if dispatched else "")
                + (f" and queues {queued}" if queued else "")
            )
        return None
    wrong = {sku: n for sku, n in queued.items() if n != ordered.get(sku)}
    if held or not queued or wrong or (reservation.wanted and reservation.wanted != ordered):
        return f"has it backordered for {reservation.wanted or '?'}, holding {held}, queued for {queued}"
    return None


def _splits_and_merges(
    changes: DeskChanges,
    orders: dict[str, tuple[str, str, dict[str, int]]],
    held: dict[str, dict[str, int]],
    queued: dict[str, dict[str, int]],
    inventory: Inventory,
    report: Report,
) -> None:
    report.counts["splits"] = len(changes.splits)
    report.counts["merged"] = len(changes.merged_into)
    for name in ("split_into_missing", "merged_units_not_moved"):
        report.counts[name] = 0
    for source, new, units in changes.splits:
        moved = changes.moved_from.get(new, {}).get(source)
        if new not in orders or moved is None:
            report.count("split_into_missing")
            report.fail(f"order: {source} was split into {new}, which does not exist")
        elif moved != units:
            report.count("split_into_missing")
            report.fail(f"order: {units} left {source} in its split, but {new} took {moved} from it")
    for merged, into in sorted(changes.merged_into.items()):
        problems = []
        status, _stage, lines = orders.get(merged, ("unknown", "", {}))
        moved = changes.moved_from.get(into, {}).get(merged)
        if into not in orders or moved is None:
            problems.append(f"{into}, which it was merged into, does not have its units")
        elif moved != lines:
            problems.append(f"its lines are {lines}, but {into} took {moved}")
        elif changes.placed.get(into) != _sum_units(changes.moved_from[into].values()):
            problems.append(f"{into} has {changes.placed.get(into)}, not the units of the orders merged")
        if status != "merged":
            problems.append(f"it is {status}")
        reservation = inventory.reservations.get(merged)
        if (
            held.get(merged)
            or queued.get(merged)
            or (reservation is not None and reservation.status in ("reserved", "backordered"))
        ):
            problems.append(
                f"inventory still has its reservation {reservation.status if reservation else '?'},"
                f" holding {held.get(merged, {})}, queued for {queued.get(merged, {})}"
            )
        if problems:
            report.count("merged_units_not_moved")
            report.fail(f"order: {merged} was merged into {into}, but " + "; ".join(problems))


def _sum_units(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for sku, n in part.items():
            total[sku] = total.get(sku, 0) + n
    return total


async def _money_moves(db: asyncpg.Connection, report: Report) -> None:
    """Across every invoice: no money lost or given back twice. Refunds never exceed what it
    was paid (transfers in included); what it took less what it carried to another order's
    invoice less what it refunded is never below 0; every transfer out arrives, at its amount,
    as the other invoice's `transfer` payment (and none arrives that was not sent), so the
    total carried out equals the total carried in."""
    rows = await db.fetch(
        "SELECT stream_id, min(payload->>'order_id') AS order_id,"
        " coalesce(sum((payload->>'amount')::numeric)"
        "  FILTER (WHERE event_type = 'PaymentReceived'), 0) AS paid,"
        " coalesce(sum((payload->>'transferred')::numeric)"
        "  FILTER (WHERE event_type = 'InvoiceAdjusted'), 0) AS carried_out,"
        " coalesce(sum((payload->>'amount')::numeric)"
        "  FILTER (WHERE event_type = 'RefundIssued'), 0) AS refunded"
        " FROM events WHERE stream_type = 'invoice' GROUP BY 1 ORDER BY 1"
    )
    report.counts["refunded_over_paid"] = report.counts["money_lost"] = 0
    for row in rows:
        paid, out, refunded = Decimal(row["paid"]), Decimal(row["carried_out"]), Decimal(row["refunded"])
        if refunded > paid:
            report.count("refunded_over_paid")
            report.fail(f"billing: order {row['order_id']} refunded {refunded} of {paid} paid")
        if paid - out - refunded < 0:
            report.count("money_lost")
            report.fail(
                f"billing: order {row['order_id']} gave out more than it took: paid {paid}"
                f" - carried to other orders {out} - refunded {refunded} = {paid - out - refunded}"
            )
    sent = {
        f"transfer:{r['move_id']}:{r['order_id']}": Decimal(r["amount"])
        for r in await db.fetch(
            "SELECT payload->>'amendment_id' AS move_id, payload->>'order_id' AS order_id,"
            " (payload->>'transferred')::numeric AS amount FROM events"
            " WHERE event_type = 'InvoiceAdjusted' AND (payload->>'transferred')::numeric > 0"
        )
    }
    arrived: dict[str, Decimal] = {}
    for r in await db.fetch(
        "SELECT payload->>'reference' AS reference, (payload->>'amount')::numeric AS amount FROM events"
        " WHERE event_type = 'PaymentReceived' AND payload->>'method' = 'transfer'"
    ):
        arrived[r["reference"]] = arrived.get(r["reference"], Decimal(0)) + Decimal(r["amount"])
    report.counts["transfers"] = len(sent)
    report.counts["transfers_not_matching"] = 0
    for reference in sorted(set(sent) | set(arrived)):
        if sent.get(reference) != arrived.get(reference):
            report.count("transfers_not_matching")
            report.fail(
                f"billing: transfer {reference} sent {sent.get(reference, 0)},"
                f" received {arrived.get(reference, 0)}"
            )
    if sum(sent.values(), Decimal(0)) != sum(arrived.values(), Decimal(0)):
        report.fail(
            f"billing: {sum(sent.values(), Decimal(0))} carried out of invoices by splits and merges,"
            f" {sum(arrived.values(), Decimal(0))} carried in"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=STUCK_AFTER_SECONDS,
        help="seconds past a stage's deadline (or since it began, for stages without one)"
        " before an order counts as stuck",
    )
    args = parser.parse_args()
    report = asyncio.run(check(RuntimeSettings(), stuck_after=args.stuck_after))
    print(json.dumps(report.as_dict(), indent=2))
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
