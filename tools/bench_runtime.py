"""Throughput of the shared event machinery on the local Kafka and PostgreSQL.

    python -m tools.bench_runtime [--events 20000] [--writers 8] [--batch 1]

- append: events/s through UnitOfWork.record (event store row + outbox row + NOTIFY, one
  transaction per unit of work of --batch events), with --writers concurrent writers.
- relay: events/s from committed outbox rows to broker acknowledgement (acks=all,
  idempotent producer) and row deletion, draining the backlog the append phase left.
Uses a throw-away database and topic namespace; durability settings stay as configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import ClassVar
from uuid import uuid4

from libs.domain import AggregateKind
from libs.events import registry
from libs.events.base import DomainEvent
from libs.runtime import outbox
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.events, args.writers, args.batch)), indent=2))
