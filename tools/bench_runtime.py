"""Throughput of the shared event machinery on the local Kafka and PostgreSQL.

    python -m tools.bench_runtime [--events 20000] [--writers 8] [--batch 1]
    python -m tools.bench_runtime --latency [--samples 400] [--rate 50]

- append: events/s through UnitOfWork.record (event store row + outbox row + NOTIFY, one
  transaction per unit of work of --batch events), with --writers concurrent writers.
- relay: events/s from committed outbox rows to broker acknowledgement (acks=all,
  idempotent producer) and row deletion, draining the backlog the append phase left.
- latency (--latency): one hop, produce -> consume, on the local broker: a durable producer
  sends --samples single messages at --rate per second (each carries its send time) to a
  consumer subscribed as the services' consumers are (FastStream batch subscriber); p50/p99
  of send-to-handler time for each combination of producer linger and consumer idle poll
  (RuntimeSettings.kafka_linger_ms and consumer_skip_idle_sleep), in an order that alternates them.
Uses a throw-away database and topic namespace; durability settings stay as configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import uuid4

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from libs.domain import AggregateKind
from libs.events import registry
from libs.events.base import DomainEvent
from libs.runtime import outbox
from libs.runtime.consumer import _raw_bodies, poll_without_idle_sleep
from libs.runtime.db import create_engine, drop_databases, ensure_database, migrate
from libs.runtime.kafka import create_topics, durable_producer
from libs.runtime.relay import OutboxRelay
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, unit_of_work

TOPIC = "bench.runtime.events"


@registry.register
class BenchRecorded(DomainEvent):
    message_type: ClassVar[str] = "BenchRecorded"
    aggregate_type: ClassVar[str] = "bench"
    topic: ClassVar[str] = TOPIC
    n: int
    note: str


@dataclass(frozen=True)
class Nothing:
    pass


BENCH = AggregateKind[Nothing]("bench", Nothing, lambda state, _: state)


async def run(events: int, writers: int, batch: int) -> dict[str, float]:
    tag = uuid4().hex[:6]
    settings = RuntimeSettings(db_prefix=f"ombench_{tag}", topic_namespace=f"bench{tag}.")
    await ensure_database(settings, "runtime")
    engine = create_engine(settings, "runtime")
    await migrate(engine)
    await create_topics(settings, [settings.topic(TOPIC)])
    context = MessageContext(correlation_id="bench", actor="bench")
    per_writer = events // writers // batch

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with unit_of_work(engine, context) as uow:
                await uow.record(
                    BENCH,
                    f"w{w}-{i}",
                    0,
                    [BenchRecorded(n=i, note="x" * 200) for _ in range(batch)],
                )

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    append_seconds = time.perf_counter() - started
    appended = per_writer * writers * batch

    relay = OutboxRelay(
        settings.dsn("runtime"),
        lambda: durable_producer(settings, "bench-relay"),
        "bench",
        settings.relay_batch_size,
        topic_for=settings.topic,
    )
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while True:
        async with engine.connect() as conn:
            if await outbox.backlog(conn) == 0:
                break
        await asyncio.sleep(0.05)
    relay_seconds = time.perf_counter() - started
    relay.stop()
    await task
    await engine.dispose()
    await drop_databases(settings)
    return {
        "events": appended,
        "append_events_per_s": round(appended / append_seconds, 1),
        "append_transactions_per_s": round(appended / batch / append_seconds, 1),
        "relay_events_per_s": round(appended / relay_seconds, 1),
        "writers": writers,
        "events_per_transaction": batch,
    }


async def one_hop_latency(
    settings: RuntimeSettings, linger_ms: int, poll_ms: int, idle_sleep: bool, samples: int, rate: float
) -> dict[str, float]:
    """Send-to-handler latency of `samples` messages sent one by one at `rate`/s."""
    topic = settings.topic(f"latency.{uuid4().hex[:6]}")
    await create_topics(settings, [topic])
    tuned = settings.model_copy(
        update={"kafka_linger_ms": linger_ms, "consumer_skip_idle_sleep": not idle_sleep}
    )
    seen: list[float] = []
    done = asyncio.Event()
    broker = KafkaBroker(settings.kafka_bootstrap, logger=None)

    async def on_batch(message: KafkaMessage) -> None:
        now = time.perf_counter()
        for record in message.raw_message:
            seen.append(now - float(record.value))
        if len(seen) >= samples:
            done.set()

    subscriber = broker.subscriber(
        topic,
        group_id=f"latency-{uuid4().hex[:6]}",
        batch=True,
        max_records=settings.consumer_batch_size,
        batch_timeout_ms=poll_ms,
        auto_offset_reset="earliest",
        decoder=_raw_bodies,
    )
    subscriber(on_batch)
    if not idle_sleep:
        poll_without_idle_sleep(subscriber, poll_ms, settings.consumer_batch_size)
    await broker.start()
    producer = durable_producer(tuned, "latency-probe")
    await producer.start()
    try:
        await asyncio.sleep(2)  # the group settles; the first samples would measure the join
        for _ in range(samples):
            await producer.send(topic, value=repr(time.perf_counter()).encode(), key=b"k")
            await asyncio.sleep(random.expovariate(rate))  # noqa: S311 - arrival jitter, not a secret
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await producer.stop()
        await broker.stop()
    ordered = sorted(seen)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def latency(samples: int, rate: float) -> list[dict[str, Any]]:
    settings = RuntimeSettings(topic_namespace=f"bench{uuid4().hex[:6]}.")
    # Alternated, and each twice, so that a change in the machine's load meets every one.
    configurations = [
        (linger, 50, idle_sleep) for _ in range(2) for linger in (0, 2, 5) for idle_sleep in (True, False)
    ]
    results = []
    for linger, poll, idle_sleep in configurations:
        figures = await one_hop_latency(settings, linger, poll, idle_sleep, samples, rate)
        row = {"linger_ms": linger, "poll_ms": poll, "idle_sleep": idle_sleep, **figures}
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--latency", action="store_true", help="the one-hop latency probe instead")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second in the probe")
    args = parser.parse_args()
    if args.latency:
        asyncio.run(latency(args.samples, args.rate))
    else:
        print(json.dumps(asyncio.run(run(args.events, args.writers, args.batch)), indent=2))
