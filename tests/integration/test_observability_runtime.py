"""The runtime's health signals when something is wrong, on the real broker and database with
a service runtime in this process: consumer lag and outbox backlog keep being sampled while the
consumer and the relay make no progress (they were only updated after a batch or a publish),
and /ready answers 503 when a consumer's task, the relay or a background loop has died."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from libs.events import encode, make_envelope, registry
from libs.events.base import DomainEvent
from libs.runtime.consumer import EventConsumer
from libs.runtime.db import drop_databases
from libs.runtime.http import create_app
from libs.runtime.metrics import CONSUMER_LAG, OUTBOX_BACKLOG, OUTBOX_OLDEST_SECONDS
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import UnitOfWork
from tests.conftest import RUN_ID, eventually
from tools import replay

pytestmark = pytest.mark.integration

TOPIC = f"test.{RUN_ID}.watched.events"
SERVICE = "watched"


@registry.register
class ParcelWeighed(DomainEvent):
    message_type: ClassVar[str] = f"TestParcelWeighed{RUN_ID}"
    aggregate_type: ClassVar[str] = "parcel"
    topic: ClassVar[str] = TOPIC
    parcel_id: str


@dataclass
class Watched:
    runtime: ServiceRuntime
    consumer: EventConsumer
    app: Any
    gate: asyncio.Event
    entered: asyncio.Event
    settings: RuntimeSettings

    async def ready(self) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://watched") as client:
            return await client.get("/ready")


async def forever() -> None:
    """A background loop of the service (the order service's deadline loop, say)."""
    await asyncio.Event().wait()


@pytest.fixture(scope="module")
async def watched() -> AsyncIterator[Watched]:
    settings = RuntimeSettings(
        db_prefix=f"omwatch_{RUN_ID}",
        topic_namespace=f"w{RUN_ID}.",
        topic_partitions=2,
        metrics_sample_seconds=0.2,
        publish_after_commit=False,
        log_json=False,
    )
    gate, entered = asyncio.Event(), asyncio.Event()

    async def weigh(uow: UnitOfWork, decoded: Any) -> None:
        entered.set()
        await gate.wait()  # a handler that does not come back (a lock wait, a hung call)

    runtime = ServiceRuntime(SERVICE, settings)
    consumer = EventConsumer(
        "watched-parcels", [TOPIC], {ParcelWeighed: weigh}, runtime.engine, settings, "service:watched"
    )
    runtime.add_consumer(consumer)
    runtime.background.append(forever)
    # The relay's broker is unreachable: it keeps failing, and rows stay in the outbox.
    runtime.relay._producer_factory = lambda: AIOKafkaProducer(
        bootstrap_servers="127.0.0.1:9", request_timeout_ms=1000
    )
    app = create_app(runtime, [], "watched")
    await runtime.start()
    try:
        yield Watched(runtime, consumer, app, gate, entered, settings)
    finally:
        gate.set()
        await runtime.stop()
        await drop_databases(settings)


async def _send(settings: RuntimeSettings, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(count):
            parcel = ParcelWeighed(parcel_id="p-1")
            envelope = make_envelope(
                parcel,
                event_id=uuid4(),
                aggregate_id="p-1",
                aggregate_version=1,
                occurred_at=datetime.now(UTC),
                correlation_id="p-1",
                causation_id=None,
                actor="test",
            )
            await producer.send_and_wait(
                settings.topic(TOPIC),
                encode(envelope),
                key=b"p-1",
                headers=[("event_type", ParcelWeighed.message_type.encode())],
            )
    finally:
        await producer.stop()


async def test_lag_keeps_being_sampled_while_a_batch_makes_no_progress(watched: Watched) -> None:
    await _send(watched.settings, 1)
    await asyncio.wait_for(watched.entered.wait(), 30)  # the consumer is now stuck in that batch
    await _send(watched.settings, 5)

    lag = CONSUMER_LAG.labels(watched.consumer.name, watched.settings.topic(TOPIC))
    assert await eventually(lambda: _at_least(lambda: lag._value.get(), 6))


async def test_outbox_backlog_keeps_being_sampled_while_nothing_is_published(watched: Watched) -> None:
    async with watched.runtime.engine.begin() as conn:
        for n in range(3):
            await conn.execute(
                text("INSERT INTO outbox (topic, key, value, created_at) VALUES ('t', :k, 'x', :at)"),
                {"k": f"k{n}", "at": datetime(2026, 1, 1, tzinfo=UTC)},
            )

    backlog = OUTBOX_BACKLOG.labels(SERVICE)
    assert await eventually(lambda: _at_least(lambda: backlog._value.get(), 3))
    assert OUTBOX_OLDEST_SECONDS.labels(SERVICE)._value.get() > 3600


async def test_replay_is_refused_while_the_group_has_members_and_moves_an_idle_group(
    watched: Watched,
) -> None:
    settings, topic = watched.settings, watched.settings.topic(TOPIC)
    with pytest.raises(replay.ReplayRefused, match="live member"):
        await replay.plan(settings, watched.consumer.name, (topic,))

    idle = settings.topic(f"idle-{uuid4().hex[:6]}")  # a group with no consumer running
    moves = await replay.plan(settings, idle, (topic,))
    assert sum(m.messages for m in moves) >= 6  # what the lag test sent, from the start
    await replay.apply(settings, idle, moves)
    assert await replay.remaining(settings, idle, (topic,)) == sum(m.messages for m in moves)

    later = await replay.plan(settings, idle, (topic,), since=datetime.now(UTC) + timedelta(hours=1))
    await replay.apply(settings, idle, later)
    assert await replay.remaining(settings, idle, (topic,)) == 0  # nothing at or after that time


async def test_ready_fails_when_a_consumer_task_the_relay_or_a_background_loop_dies(watched: Watched) -> None:
    response = await watched.ready()
    checks = response.json()["checks"]
    assert checks[f"consumer:{watched.consumer.name}"] and checks["relay"] and checks["loop:forever"]

    for task in watched.consumer.subscriber.tasks:
        task.cancel()
    await _until_check_fails(watched, f"consumer:{watched.consumer.name}")

    _task(watched.runtime, "relay").cancel()
    await _until_check_fails(watched, "relay")

    _task(watched.runtime, "forever").cancel()
    await _until_check_fails(watched, "loop:forever")

    health = await httpx.AsyncClient(
        transport=httpx.ASGITransport(app=watched.app), base_url="http://watched"
    ).get("/health")
    assert health.status_code == 200  # liveness stays simple: the process answers


def _task(runtime: ServiceRuntime, name: str) -> asyncio.Task[None]:
    return next(t for t in runtime._tasks if t.get_name() == f"{runtime.name}:{name}")


async def _until_check_fails(watched: Watched, check: str) -> None:
    async def failing() -> bool:
        response = await watched.ready()
        return response.status_code == 503 and response.json()["checks"][check] is False

    await eventually(failing, timeout=10)


async def _at_least(read: Any, expected: float) -> bool:
    return bool(read() >= expected)
