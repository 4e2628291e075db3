"""Re-driving a dead letter on the real broker and database: once the cause is fixed, the message
goes back through the normal path and is applied exactly once, however often it is re-driven
(it keeps its event id, so the consumer's inbox drops a second copy); the DLQ depth then counts
it as dealt with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events import encode, make_envelope, registry
from libs.events.base import DomainEvent
from libs.runtime.consumer import EventConsumer, GroupOffsets, sample_consumer_metrics
from libs.runtime.kafka import create_topics
from libs.runtime.metrics import DLQ_DEPTH, MESSAGES_HANDLED
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import UnitOfWork
from tests.conftest import RUN_ID, eventually
from tools import dlq

pytestmark = pytest.mark.integration

TOPIC = f"test.{RUN_ID}.priced.events"


@registry.register
class LinePriced(DomainEvent):
    message_type: ClassVar[str] = f"TestLinePriced{RUN_ID}"
    aggregate_type: ClassVar[str] = "line"
    topic: ClassVar[str] = TOPIC
    line_id: str
    sku: str


class PriceList:
    """What the handler needs, missing until the operator adds it (the cause of the dead letter)."""

    def __init__(self) -> None:
        self.skus: set[str] = set()


@pytest.fixture
async def priced(store_engine: AsyncEngine) -> AsyncEngine:
    async with store_engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE IF NOT EXISTS test_priced_lines (line_id text NOT NULL, sku text NOT NULL)")
        )
    return store_engine


@pytest.fixture
async def consumer(
    settings: RuntimeSettings, priced: AsyncEngine
) -> AsyncIterator[tuple[EventConsumer, PriceList]]:
    prices = PriceList()

    async def price_line(uow: UnitOfWork, decoded: Any) -> None:
        event = decoded.message
        if event.sku not in prices.skus:
            raise LookupError(f"no price for {event.sku}")
        await uow.conn.execute(
            text("INSERT INTO test_priced_lines VALUES (:l, :s)"), {"l": event.line_id, "s": event.sku}
        )

    group = f"test-{RUN_ID}-redrive-{uuid4().hex[:6]}"
    running = EventConsumer(group, [TOPIC], {LinePriced: price_line}, priced, settings, "service:test")
    await create_topics(settings, [TOPIC, running.dead_letter_topic])
    await _start_at_the_end(settings, group)
    broker = KafkaBroker(settings.kafka_bootstrap, logger=None)
    running.attach(broker)
    await broker.start()
    try:
        yield running, prices
    finally:
        await broker.stop()
        await running.close()


async def _start_at_the_end(settings: RuntimeSettings, group: str) -> None:
    """The group starts at the topic's end: earlier runs' messages on it are not this test's."""
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        partitions = await offsets.partitions([TOPIC])
        _, ends = await offsets.ends(partitions)
    finally:
        await offsets.close()
    committer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await committer.start()
    try:
        committer.assign(partitions)
        await committer.commit(dict(ends))
    finally:
        await committer.stop()


async def _send(settings: RuntimeSettings, event: LinePriced) -> str:
    envelope = make_envelope(
        event,
        event_id=uuid4(),
        aggregate_id=event.line_id,
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id=event.line_id,
        causation_id=None,
        actor="test",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            TOPIC,
            encode(envelope),
            key=event.line_id.encode(),
            headers=[("event_type", LinePriced.message_type.encode())],
        )
    finally:
        await producer.stop()
    return str(envelope.event_id)


async def _priced(engine: AsyncEngine, line_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM test_priced_lines WHERE line_id = :l"), {"l": line_id}
        )
        return int(found.scalar_one())


async def _depth(settings: RuntimeSettings, consumer: EventConsumer) -> float:
    """ordermesh_dlq_depth of the group, as the service's sampler sets it."""
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        await sample_consumer_metrics(offsets, [consumer])
    finally:
        await offsets.close()
    return float(DLQ_DEPTH.labels(consumer.name)._value.get())


async def test_a_fixed_dead_letter_is_redriven_through_the_normal_path_exactly_once(
    settings: RuntimeSettings, priced: AsyncEngine, consumer: tuple[EventConsumer, PriceList]
) -> None:
    running, prices = consumer
    line_id = f"line-{uuid4().hex[:8]}"
    event_id = await _send(settings, LinePriced(line_id=line_id, sku="SKU-UNPRICED"))

    letters = await eventually(lambda: dlq.read_dead_letters(settings, running.name))
    assert [letter.identity() for letter in letters] == [(LinePriced.message_type, event_id)]
    assert "no price for SKU-UNPRICED" in letters[0].reason
    assert letters[0].source_topic == TOPIC
    assert await _depth(settings, running) == 1
    assert await _priced(priced, line_id) == 0

    prices.skus.add("SKU-UNPRICED")  # the operator fixes the cause
    done = await dlq.redrive(settings, running.name, letters)

    assert done.sent == [letters[0].position]
    await eventually(lambda: _is(_priced(priced, line_id), 1))
    assert await dlq.read_dead_letters(settings, running.name) == []  # nothing left to deal with
    assert await _depth(settings, running) == 0

    # The same dead letter re-driven again (an operator's second run, a retried script): the
    # inbox recognises the message by its id and nothing is applied twice.
    duplicates = MESSAGES_HANDLED.labels(running.name, LinePriced.message_type, "duplicate")
    before = duplicates._value.get()
    again = await dlq.read_dead_letters(settings, running.name, include_handled=True)
    await dlq.redrive(settings, running.name, again)
    await eventually(lambda: _is_now(lambda: duplicates._value.get(), before + 1))
    assert await _priced(priced, line_id) == 1


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _is_now(read: Any, expected: float) -> bool:
    return bool(read() == expected)


def test_a_fixed_message_must_keep_the_event_id_of_the_dead_letter() -> None:
    original = make_envelope(
        LinePriced(line_id="l1", sku="S"),
        event_id=uuid4(),
        aggregate_id="l1",
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="l1",
        causation_id=None,
        actor="test",
    )
    letter = dlq.DeadLetter(0, 7, b"l1", encode(original), ())
    fixed = encode(original.model_copy(update={"payload": {"line_id": "l1", "sku": "S-FIXED"}}))
    assert dlq.fixed_value(letter, fixed) == fixed
    renumbered = encode(original.model_copy(update={"event_id": uuid4()}))
    with pytest.raises(dlq.RedriveRefused, match="keep the id"):
        dlq.fixed_value(letter, renumbered)
    with pytest.raises(dlq.RedriveRefused, match="does not decode"):
        dlq.fixed_value(letter, b"{broken")
