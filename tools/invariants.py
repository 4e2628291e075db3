"""Invariant checker over every service's store: what must hold after any fault.

    python -m tools.invariants          check the platform `make up` runs (exit 1 on violations)

Each check reads the events (the source of truth) and, where useful, compares the read models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from libs.runtime.settings import RuntimeSettings

WAITING = {"awaiting_stock", "on_hold", "awaiting_payment"}
TERMINAL = {"confirmed", "cancelled", "rejected"}


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {"violations": len(self.violations), "details": self.violations[:50], **self.counts}


async def _connect(settings: RuntimeSettings, service: str) -> asyncpg.Connection:
    return await asyncpg.connect(settings.dsn(service))


async def check(settings: RuntimeSettings, accepted_orders: Iterable[str] = ()) -> Report:
    report = Report()
    order_db = await _connect(settings, "order")
    inventory_db = await _connect(settings, "inventory")
    billing_db = await _connect(settings, "billing")
    try:
        for name, db in (("order", order_db), ("inventory", inventory_db), ("billing", billing_db)):
            await _gapless_versions(name, db, report)
        await _stock(inventory_db, report)
        await _money(billing_db, report)
        await _orders(order_db, inventory_db, billing_db, set(accepted_orders), report)
    finally:
        for db in (order_db, inventory_db, billing_db):
            await db.close()
    return report


async def _gapless_versions(name: str, db: asyncpg.Connection, report: Report) -> None:
    rows = await db.fetch(
        "SELECT stream_id, count(*) AS n, max(version) AS top FROM events"
        " GROUP BY stream_id HAVING count(*) <> max(version) LIMIT 20"
    )
    for row in rows:
        report.fail(f"{name}: stream {row['stream_id']} has {row['n']} events but version {row['top']}")


async def _stock(db: asyncpg.Connection, report: Report) -> None:
    received = await db.fetch(
        "SELECT payload->>'sku' AS sku, payload->>'warehouse' AS wh, sum((payload->>'quantity')::int) AS qty"
        " FROM events WHERE event_type = 'StockReceived' GROUP BY 1, 2"
    )
    movements = await db.fetch(
        "SELECT event_type, payload->>'sku' AS sku, payload->>'order_id' AS order_id,"
        " payload->'warehouses' AS warehouses FROM events"
        " WHERE event_type IN ('StockAllocated', 'StockDeallocated') ORDER BY global_position"
    )
    on_hand = {(r["sku"], r["wh"]): int(r["qty"]) for r in received}
    live: dict[tuple[str, str], int] = {}  # (order, sku) -> live allocations
    reserved: dict[tuple[str, str], int] = {}
    for row in movements:
        sign = 1 if row["event_type"] == "StockAllocated" else -1
        key = (row["order_id"], row["sku"])
        live[key] = live.get(key, 0) + sign
        for warehouse, quantity in json.loads(row["warehouses"]).items():
            reserved[(row["sku"], warehouse)] = reserved.get((row["sku"], warehouse), 0) + sign * quantity
    twice = [key for key, n in live.items() if n > 1]
    report.counts["stock_reserved_twice"] = len(twice)
    for order_id, sku in twice[:10]:
        report.fail(f"inventory: {sku} reserved more than once for order {order_id}")
    for key, n in live.items():
        if n < 0:
            report.fail(f"inventory: {key[1]} released more often than reserved for order {key[0]}")
    levels = {
        (r["sku"], r["warehouse"]): (r["on_hand"], r["reserved"])
        for r in await db.fetch("SELECT sku, warehouse, on_hand, reserved FROM stock_levels")
    }
    for key in set(on_hand) | set(reserved) | set(levels):
        expected = (on_hand.get(key, 0), reserved.get(key, 0))
        if expected[1] < 0 or expected[1] > expected[0]:
            report.fail(f"inventory: {key} reserved {expected[1]} of {expected[0]} on hand")
        if levels.get(key, (0, 0)) != expected:
            report.fail(f"inventory: read model {key} = {levels.get(key)} but events say {expected}")


async def _money(db: asyncpg.Connection, report: Report) -> None:
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
    per_order = await db.fetch(
        "SELECT payload->>'order_id' AS order_id,"
        " sum((payload->>'total')::numeric) FILTER (WHERE event_type = 'InvoiceIssued') AS invoiced,"
        " sum((payload->>'amount')::numeric) FILTER (WHERE event_type = 'PaymentReceived') AS paid,"
        " sum((payload->>'amount')::numeric) FILTER (WHERE event_type = 'RefundIssued') AS refunded,"
        " bool_or(event_type = 'InvoiceVoided') AS voided"
        " FROM events WHERE stream_type = 'invoice' GROUP BY 1"
    )
    for row in per_order:
        kept = Decimal(row["paid"] or 0) - Decimal(row["refunded"] or 0)
        if kept > Decimal(row["invoiced"] or 0) or kept < 0:
            report.fail(f"billing: order {row['order_id']} keeps {kept} of {row['invoiced']} invoiced")
        if row["voided"] and kept != 0:
            report.fail(f"billing: order {row['order_id']} is void but keeps {kept}")


async def _orders(
    order_db: asyncpg.Connection,
    inventory_db: asyncpg.Connection,
    billing_db: asyncpg.Connection,
    accepted: set[str],
    report: Report,
) -> None:
    statuses = {
        r["order_id"]: r["status"] for r in await order_db.fetch("SELECT order_id, status FROM orders")
    }
    lost = accepted - set(statuses)
    report.counts["lost"] = len(lost)
    for order_id in sorted(lost)[:10]:
        report.fail(f"order: accepted order {order_id} is missing")
    considered = accepted or set(statuses)
    stuck = [
        o for o in considered if o in statuses and statuses[o] not in TERMINAL | WAITING | {"needs_attention"}
    ]
    report.counts["terminal"] = sum(1 for o in considered if statuses.get(o) in TERMINAL)
    report.counts["waiting"] = sum(1 for o in considered if statuses.get(o) in WAITING)
    report.counts["needs_attention"] = sum(1 for o in considered if statuses.get(o) == "needs_attention")
    for order_id in stuck[:10]:
        report.fail(f"order: {order_id} stuck in {statuses[order_id]}")
    report.counts["stuck"] = len(stuck)
    reserved = {
        r["order_id"]
        for r in await inventory_db.fetch("SELECT order_id FROM reservations WHERE status = 'reserved'")
    }
    void = {
        r["order_id"] for r in await billing_db.fetch("SELECT order_id FROM invoices WHERE status = 'void'")
    }
    for order_id in considered:
        status = statuses.get(order_id)
        if status == "confirmed" and (order_id not in reserved or order_id in void):
            report.fail(f"order: {order_id} confirmed without live reservation or with a void invoice")
        if status in ("cancelled", "rejected") and order_id in reserved:
            report.fail(f"order: {order_id} is {status} but still holds stock")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    report = asyncio.run(check(RuntimeSettings()))
    print(json.dumps(report.as_dict(), indent=2))
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
