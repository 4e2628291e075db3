"""`make chaos`: each fault under steady load, then the invariant checker.

Runs its own order, inventory and billing processes (two inventory replicas, so a stopped
consumer's partitions move to the other) in a topic namespace and databases of their own, on
the local Kafka and PostgreSQL (started if needed). Prints one table and writes
bench/results/chaos-latest.json with a top-level `violations` count.

    python -m tools.chaos                    every fault
    python -m tools.chaos --faults kill-inventory,poison --rate 10 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from libs.events import make_envelope
from libs.events.inventory import ReserveStock
from libs.events.topics import (
    BILLING_COMMANDS,
    BILLING_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_INTAKE,
    dead_letter_topic,
)
from libs.runtime import faults
from libs.runtime.db import drop_databases
from libs.runtime.settings import RuntimeSettings
from tools import infra, invariants, loadgen
from tools.bench import consumer_lag
from tools.processes import Platform

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONSUMED = {  # topic -> consumer group that reads it
    ORDER_INTAKE: "order-intake",
    INVENTORY_COMMANDS: "inventory-commands",
    BILLING_COMMANDS: "billing-commands",
    INVENTORY_EVENTS: "order-saga",
}


@dataclass
class Chaos:
    platform: Platform
    settings: RuntimeSettings
    poison_sent: int = 0

    # -- faults ---------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        self.platform.kill(name)
        await asyncio.sleep(1)
        await asyncio.to_thread(self.platform.start, name)

    async def crash_at(self, name: str, point: str) -> None:
        """Restart `name` armed to die at `point`; once it has, restart it normally."""
        self.platform.kill(name)
        self.platform.start_with({"OM_FAULTS": point}, name, wait=False)
        await asyncio.to_thread(self.platform.wait_exit, name, 60)
        await asyncio.to_thread(self.platform.start, name)

    async def restart_kafka(self) -> None:
        if infra.read_pid("kafka") is None:
            raise RuntimeError("the broker was not started by this project; cannot restart it")
        infra.stop_pid("kafka")
        await asyncio.sleep(2)
        await asyncio.to_thread(infra.kafka_start)
        await asyncio.to_thread(infra.kafka_wait_ready)

    async def restart_postgres(self) -> None:
        if infra.read_pid("postgresql") is None:
            raise RuntimeError("PostgreSQL was not started by this project; cannot restart it")
        await asyncio.to_thread(infra.pg_stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(infra.pg_start)

    async def stop_consumer(self, name: str, seconds: float) -> None:
        """SIGSTOP longer than the session timeout: the group rebalances to the other replica."""
        self.platform.signal(name, signal.SIGSTOP)
        await asyncio.sleep(seconds)
        self.platform.signal(name, signal.SIGCONT)

    async def replay(self) -> None:
        """Publish every record of the consumed topics again (duplicates of everything)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        try:
            for topic in (INVENTORY_COMMANDS, BILLING_COMMANDS, INVENTORY_EVENTS, BILLING_EVENTS):
                for record in await read_all(self.settings, self.settings.topic(topic)):
                    await producer.send(
                        record.topic, record.value, key=record.key, headers=list(record.headers or ())
                    )
            await producer.flush()
        finally:
            await producer.stop()

    async def poison(self) -> None:
        """Garbage, a broken envelope, a schema-invalid payload and an unknown type, per topic."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        valid = make_envelope(
            ReserveStock(order_id="poison", lines=({"sku": "X", "quantity": 1},)),  # type: ignore[arg-type]
            event_id=uuid4(),
            aggregate_id="poison",
            aggregate_version=0,
            occurred_at=datetime.now(UTC),
            correlation_id="poison",
            causation_id=None,
            actor="chaos",
        ).model_dump(mode="json")
        bad_payload = {**valid, "payload": {"order_id": "poison", "lines": [{"sku": "X", "quantity": -5}]}}
        unknown = {**valid, "event_id": str(uuid4()), "event_type": "StockTeleported"}
        messages = [
            b"\x00\xffnot json",
            b'{"event_id": "nope"}',
            json.dumps(bad_payload).encode(),
            json.dumps(unknown).encode(),
        ]
        try:
            for topic in CONSUMED:
                for value in messages:
                    await producer.send_and_wait(self.settings.topic(topic), value, key=b"poison")
                    self.poison_sent += 1
        finally:
            await producer.stop()

    async def dead_letters(self) -> int:
        total = 0
        for group in set(CONSUMED.values()):
            records = await read_all(self.settings, dead_letter_topic(self.settings.topic(group)))
            total += sum(1 for r in records if dict(r.headers or ()).get("dlq.reason"))
        return total


async def read_all(settings: RuntimeSettings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in assigned]
            if all(position >= ends[tp] for position, tp in zip(positions, assigned, strict=False)):
                return records
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
    return consumer.partitions_for_topic(topic) or set()


async def lag_zero_after(settings: RuntimeSettings, started: float, timeout: float = 120) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lag = await consumer_lag(settings)
            if lag and all(v == 0 for v in lag.values()):
                return round(time.monotonic() - started, 1)
        except Exception:
            pass
        await asyncio.sleep(0.5)
    return None


async def settled(settings: RuntimeSettings, order_ids: list[str], timeout: float) -> None:
    """Wait until no accepted order is still mid-saga (it may legitimately wait for stock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(settings.dsn("order"))
            try:
                busy = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])"
                    " AND status NOT IN ('confirmed', 'cancelled', 'rejected',"
                    " 'awaiting_stock', 'on_hold', 'needs_attention')",
                    order_ids,
                )
                present = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])", order_ids
                )
            finally:
                await conn.close()
            if busy == 0 and present == len(order_ids):
                return
        except (OSError, asyncpg.PostgresError):
            pass
        await asyncio.sleep(0.5)


FAULTS: dict[str, Callable[[Chaos], Awaitable[None]]] = {
    "kill-order": lambda c: c.kill("order"),
    "kill-inventory": lambda c: c.kill("inventory"),
    "kill-billing": lambda c: c.kill("billing"),
    "crash-after-db-commit-before-offset-commit": lambda c: c.crash_at(
        "billing", faults.AFTER_DB_COMMIT_BEFORE_OFFSET_COMMIT
    ),
    "crash-after-publish-before-outbox-mark": lambda c: c.crash_at(
        "order", faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK
    ),
    "restart-kafka": lambda c: c.restart_kafka(),
    "restart-postgresql": lambda c: c.restart_postgres(),
    "sigstop-consumer": lambda c: c.stop_consumer("inventory", 10),
    "replay-topics": lambda c: c.replay(),
    "poison": lambda c: c.poison(),
}


async def run_fault(
    chaos: Chaos, generator: loadgen.LoadGenerator, name: str, rate: float, seconds: float, settle: float
) -> dict[str, Any]:
    orders = max(int(rate * seconds), 1)
    load = asyncio.create_task(generator.run(orders, rate, 8, drain_seconds=0))
    await asyncio.sleep(seconds / 3)
    fault_started = time.monotonic()
    error = None
    try:
        await FAULTS[name](chaos)
    except Exception as failure:  # reported in the table, and counted as a violation
        error = f"{type(failure).__name__}: {failure}"
    result = await load
    lag_seconds = await lag_zero_after(chaos.settings, fault_started)
    accepted = [
        oid
        for oid, t in result.orders.items()
        if not (t.outcome or "").startswith(("submit_failed", "refused"))
    ]
    await settled(chaos.settings, accepted, settle)
    report = await invariants.check(chaos.settings, accepted)
    return {
        "fault": name,
        "submitted": len(result.orders),
        "accepted": len(accepted),
        "terminal": report.counts["terminal"],
        "waiting": report.counts["waiting"],
        "lost": report.counts["lost"],
        "stuck": report.counts["stuck"],
        "stock_reserved_twice": report.counts["stock_reserved_twice"],
        "payments_applied_twice": report.counts["payments_applied_twice"],
        "refunds_issued_twice": report.counts["refunds_issued_twice"],
        "lag_zero_after_s": lag_seconds,
        "violations": len(report.violations) + (1 if error else 0) + (1 if lag_seconds is None else 0),
        "details": ([error] if error else []) + report.violations[:10],
    }


async def chaos_run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid4().hex[:6]
    settings = RuntimeSettings(
        db_prefix=f"omchaos_{run_id}", topic_namespace=f"chaos{run_id}.", topic_partitions=4
    )
    await asyncio.to_thread(infra.up)
    platform = Platform(
        f"chaos-{run_id}",
        {
            "OM_DB_PREFIX": settings.db_prefix,
            "OM_TOPIC_NAMESPACE": settings.topic_namespace,
            "OM_TOPIC_PARTITIONS": "4",
            "OM_ORDER_PAYMENT_DEADLINE_SECONDS": "20",
            "OM_ORDER_COMPENSATION_RETRY_SECONDS": "10",
            "OM_LOG_JSON": "false",
        },
        replicas=("inventory#2",),
    )
    await asyncio.to_thread(platform.start)
    chaos = Chaos(platform, settings)
    rows = []
    try:
        mix = loadgen.Mix(payment_fail_share=0.05, never_pay_share=0.02)
        async with loadgen.LoadGenerator(
            settings, platform.url("order"), platform.url("inventory"), platform.url("billing"), mix
        ) as generator:
            await generator.stock_up(args.stock)
            await generator.start_listening()
            for name in args.faults:
                print(f"fault: {name} ...", flush=True)
                rows.append(await run_fault(chaos, generator, name, args.rate, args.seconds, args.settle))
        if "poison" in args.faults:
            dead = await chaos.dead_letters()
            missing = max(chaos.poison_sent - dead, 0)
            for row in rows:
                if row["fault"] == "poison":
                    row["poison_sent"], row["dead_lettered"] = chaos.poison_sent, dead
                    row["violations"] += missing
                    if missing:
                        row["details"].append(
                            f"{missing} poison messages missing from the dead-letter topics"
                        )
        final = await invariants.check(settings)
    finally:
        platform.stop()
        if not args.keep:
            await drop_databases(settings)
    return {
        "violations": sum(r["violations"] for r in rows) + len(final.violations),
        "final_check": final.as_dict(),
        "faults": rows,
    }


def table(result: dict[str, Any]) -> str:
    columns = [
        "fault",
        "submitted",
        "accepted",
        "terminal",
        "waiting",
        "lost",
        "stock_reserved_twice",
        "payments_applied_twice",
        "refunds_issued_twice",
        "lag_zero_after_s",
        "violations",
    ]
    headers = [
        "fault",
        "submitted",
        "accepted",
        "terminal",
        "waiting",
        "lost",
        "reserved 2x",
        "paid 2x",
        "refunded 2x",
        "lag->0 s",
        "violations",
    ]
    widths = [
        max(len(h), *(len(str(r[c])) for r in result["faults"]))
        for h, c in zip(headers, columns, strict=False)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))]
    for row in result["faults"]:
        lines.append("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=False)))
        lines += [f"    ! {detail}" for detail in row["details"]]
    lines.append(
        f"total violations: {result['violations']} (final check: {result['final_check']['violations']})"
    )
    return "\n".join(lines)


def main() -> None:
    # The broker restarts on purpose: keep the clients' reconnect chatter off the table.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faults", type=lambda v: v.split(","), default=list(FAULTS))
    parser.add_argument("--rate", type=float, default=20, help="orders/s of steady load")
    parser.add_argument("--seconds", type=float, default=12, help="load per fault")
    parser.add_argument("--settle", type=float, default=60, help="most seconds to wait for sagas")
    parser.add_argument("--stock", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the run's databases")
    args = parser.parse_args()
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; choose from {sorted(FAULTS)}")
    result = asyncio.run(chaos_run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos-latest.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    raise SystemExit(1 if result["violations"] else 0)


if __name__ == "__main__":
    main()
