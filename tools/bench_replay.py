"""python -m tools.bench_replay: how many events per second the rebuild replays.

Writes a synthetic history to the public events topics of a scratch namespace (the events of
`--orders` orders as the platform publishes them: placed, status changes, invoice, payment,
stock allocated and dispatched, shipment; about 13 per order), then times
`services.reporting.rebuild` over it into a scratch database, and removes both. The figure
is records read and applied per second, progress bar and all (docs/performance.md), with the
replaying process's CPU time per record (`time.process_time`), steadier than the wall-clock
rate on a shared machine. `--fast-decode` replays with the fast decode path
(libs/events/fast_decode.py) instead of the full pydantic decode, to measure the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiokafka import AIOKafkaConsumer

from libs.events import Message, encode, make_envelope
from libs.events.billing import InvoiceIssued, InvoiceLine, InvoicePaid, PaymentReceived
from libs.events.codec import decode, decode_fast, use_fast_decode
from libs.events.inventory import ShipmentCreated, ShipmentDispatched, StockAllocated, StockDispatched
from libs.events.order import OrderPlaced, OrderStatusChanged
from libs.events.values import Allocation, CustomerSnapshot, OrderLine, Shipping, SkuQuantity
from libs.runtime.db import drop_databases
from libs.runtime.kafka import admin_client, create_topics, durable_producer
from libs.runtime.settings import RuntimeSettings
from services.reporting.bootstrap import CONSUMER, SOURCE_TOPICS
from services.reporting.rebuild import RebuildResult, rebuild, source_end_offsets

CHANNELS = ("web", "marketplace", "phone")
COUNTRIES = ("DE", "FR", "NL", "IT")
SKUS = tuple(f"BENCH-{n:03d}" for n in range(50))
WAREHOUSES = ("NORTH", "SOUTH")


def order_history(n: int, at: datetime) -> list[tuple[Message, str, int]]:
    """One order's public events: (message, aggregate id, version in its stream)."""
    order_id = f"bench-{n}"
    sku_a, sku_b = SKUS[n % len(SKUS)], SKUS[(n * 7 + 3) % len(SKUS)]
    lines = (
        OrderLine(sku=sku_a, quantity=1 + n % 3, unit_price=Decimal("19.90")),
        OrderLine(sku=sku_b, quantity=1, unit_price=Decimal("5.00")),
    )
    subtotal = sum((line.quantity * line.unit_price for line in lines), Decimal("0"))
    warehouse = WAREHOUSES[n % 2]
    allocations = tuple(
        Allocation(sku=line.sku, warehouse=warehouse, quantity=line.quantity) for line in lines
    )
    invoice_id = f"inv-{n}"
    tax = (subtotal * Decimal("0.20")).quantize(Decimal("0.01"))
    customer = f"customer-{n % 500}"
    common = {
        "order_id": order_id,
        "channel": CHANNELS[n % 3],
        "customer_id": customer,
        "currency": "EUR",
        "payment_terms": "prepaid",
        "subtotal": subtotal,
        "amount_paid": Decimal("0"),
        "amount_refunded": Decimal("0"),
    }

    def status(now: str, before: str, **extra: object) -> OrderStatusChanged:
        return OrderStatusChanged.model_validate(
            {**common, "status": now, "previous_status": before, **extra}
        )

    shipment_id = f"shp-{n}"
    picked = tuple(SkuQuantity(sku=line.sku, quantity=line.quantity) for line in lines)
    history: list[tuple[Message, str, int]] = [
        (
            OrderPlaced(
                order_id=order_id,
                channel=CHANNELS[n % 3],
                customer_id=customer,
                customer=CustomerSnapshot(name="Bench Customer", region="north"),
                lines=lines,
                currency="EUR",
                payment_terms="prepaid",
                shipping=Shipping.model_validate(
                    {"method": "standard", "address": {"country": COUNTRIES[n % len(COUNTRIES)]}}
                ),
                subtotal=subtotal,
            ),
            order_id,
            1,
        ),
        (status("awaiting_payment", "placed", allocations=allocations, invoice_id=invoice_id), order_id, 4),
        (
            status("confirmed", "awaiting_payment", allocations=allocations, invoice_id=invoice_id),
            order_id,
            6,
        ),
        (status("shipped", "confirmed", allocations=allocations, invoice_id=invoice_id), order_id, 9),
    ]
    history += [
        (StockAllocated(sku=line.sku, order_id=order_id, warehouses={warehouse: line.quantity}), line.sku, 0)
        for line in lines
    ]
    history += [
        (
            InvoiceIssued(
                order_id=order_id,
                invoice_id=invoice_id,
                customer_id=customer,
                currency="EUR",
                lines=tuple(
                    InvoiceLine(
                        **line.model_dump(),
                        tax_rate=Decimal("0.20"),
                        net=line.quantity * line.unit_price,
                        tax=(line.quantity * line.unit_price * Decimal("0.20")).quantize(Decimal("0.01")),
                        gross=(line.quantity * line.unit_price * Decimal("1.20")).quantize(Decimal("0.01")),
                    )
                    for line in lines
                ),
                subtotal=subtotal,
                tax=tax,
                shipping_fee=Decimal("0.00"),
                total=subtotal + tax,
                payment_terms="prepaid",
                due_at=at + timedelta(hours=1),
            ),
            order_id,
            1,
        ),
        (
            PaymentReceived(
                order_id=order_id,
                invoice_id=invoice_id,
                reference=f"pay-{n}",
                method="card",
                amount=subtotal + tax,
                amount_paid=subtotal + tax,
            ),
            order_id,
            2,
        ),
        (InvoicePaid(order_id=order_id, invoice_id=invoice_id, amount_paid=subtotal + tax), order_id, 3),
        (
            ShipmentCreated(
                shipment_id=shipment_id,
                order_id=order_id,
                warehouse=warehouse,
                method="standard",
                lines=picked,
            ),
            shipment_id,
            1,
        ),
        (
            ShipmentDispatched(
                shipment_id=shipment_id, order_id=order_id, warehouse=warehouse, lines=picked, carrier="DHL"
            ),
            shipment_id,
            2,
        ),
    ]
    history += [
        (
            StockDispatched(
                sku=line.sku,
                order_id=order_id,
                warehouse=warehouse,
                quantity=line.quantity,
                shipment_id=shipment_id,
            ),
            line.sku,
            0,
        )
        for line in lines
    ]
    return history


def encoded_history(n: int, at: datetime) -> list[tuple[Message, str, bytes]]:
    """Order n's public events as they go on the topics: (message, key, encoded envelope)."""
    return [
        (
            message,
            key,
            encode(
                make_envelope(
                    message,
                    event_id=uuid.uuid4(),
                    aggregate_id=key,
                    aggregate_version=version,
                    occurred_at=at,
                    correlation_id=f"bench-{n}",
                    causation_id=None,
                    actor="bench",
                )
            ),
        )
        for message, key, version in order_history(n, at)
    ]


async def write_history(settings: RuntimeSettings, orders: int) -> int:
    await create_topics(settings, [settings.topic(t) for t in SOURCE_TOPICS])
    producer = durable_producer(settings, "replay-bench")
    await producer.start()
    sent = 0
    try:
        start = datetime.now(UTC) - timedelta(days=1)
        pending = []
        for n in range(orders):
            at = start + timedelta(seconds=n)
            for message, key, raw in encoded_history(n, at):
                headers = [("event_type", message.message_type.encode())]
                pending.append(
                    await producer.send(settings.topic(message.topic), raw, key.encode(), headers=headers)
                )
                sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def consumed_everything(settings: RuntimeSettings) -> None:
    """The reporting consumer group's offsets at the end of every source partition, as the
    live service leaves them when it has caught up: the usual state a rebuild starts from."""
    group = settings.topic(CONSUMER)
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        ends = await source_end_offsets(settings, committer)
        partitions = list(ends)
        committer.assign(partitions)
        await committer.commit({tp: end for tp, end in ends.items() if end > 0})
    finally:
        await committer.stop()


async def run(orders: int, caught_up: bool = True) -> tuple[int, RebuildResult, float]:
    """(records written, the rebuild's result, its process's CPU seconds). `caught_up`: the
    live consumer group has read everything (else it has never read a record, and the rebuild
    writes an inbox row for every event)."""
    scratch = uuid.uuid4().hex[:8]
    settings = RuntimeSettings(db_prefix=f"omreplay_{scratch}", topic_namespace=f"replay{scratch}.")
    try:
        written = await write_history(settings, orders)
        if caught_up:
            await consumed_everything(settings)
        cpu = time.process_time()
        result = await rebuild(settings, progress=True)
        return written, result, time.process_time() - cpu
    finally:
        await drop_databases(settings)
        admin = admin_client(settings)
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics([settings.topic(t) for t in SOURCE_TOPICS])
        await admin.close()


def decode_costs(orders: int) -> list[tuple[str, float, float]]:
    """CPU-us per event of decode and of decode_fast (fast path on), best of five, for the
    benchmark's events of `orders` orders: ("all", ...) first, then per event type. No Kafka."""
    at = datetime.now(UTC)
    by_type: dict[str, list[bytes]] = {}
    for n in range(orders):
        for message, _, raw in encoded_history(n, at):
            by_type.setdefault(message.message_type, []).append(raw)

    def cost(decoder: Callable[[bytes], object], raws: list[bytes]) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for raw in raws:
                decoder(raw)
            best = min(best, (time.process_time() - started) / len(raws) * 1e6)
        return best

    use_fast_decode(True)
    everything = [raw for raws in by_type.values() for raw in raws]
    groups = [("all", everything), *by_type.items()]
    return [(name, cost(decode, raws), cost(decode_fast, raws)) for name, raws in groups]


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay throughput of the reporting rebuild")
    parser.add_argument("--orders", type=int, default=10_000, help="orders in the synthetic history")
    parser.add_argument("--fast-decode", action="store_true", help="the fast decode path (to compare)")
    parser.add_argument(
        "--never-consumed",
        action="store_true",
        help="the reporting consumer group has read nothing (an inbox row per event), instead of everything",
    )
    parser.add_argument(
        "--decode-only", action="store_true", help="CPU per event of decode and decode_fast, without Kafka"
    )
    arguments = parser.parse_args()
    if arguments.decode_only:
        print(f"decode CPU-us per event, full / fast (load average {os.getloadavg()[0]:.1f}):")
        for name, full, fast in decode_costs(min(arguments.orders, 500)):
            print(f"  {name:20} {full:6.1f} {fast:6.1f}")
        return
    use_fast_decode(arguments.fast_decode)
    written, result, cpu = asyncio.run(run(arguments.orders, caught_up=not arguments.never_consumed))
    print(
        f"replay: {result.records:,} records ({written:,} written, {result.events:,} applied) in"
        f" {result.seconds:.2f}s = {result.records_per_second:,.0f} events/s;"
        f" {cpu / max(result.records, 1) * 1e6:.1f} CPU-us per record in the replaying process;"
        f" {'fast' if arguments.fast_decode else 'full'} decode; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
