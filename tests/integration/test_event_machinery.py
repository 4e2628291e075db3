"""Contract tests of the shared runtime on the real PostgreSQL and Kafka broker: event store,
outbox, inbox, relay and consumer, including the faults they exist to survive."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import AggregateKind
from libs.events import Envelope, decode, encode, make_envelope, registry
from libs.events.base import DomainEvent
from libs.events.registry import UnknownMessageType
from libs.events.topics import dead_letter_topic
from libs.runtime import eventstore, faults, inbox, outbox
from libs.runtime.consumer import EventConsumer
from libs.runtime.db import ConcurrencyConflict, Sql, create_engine, driver_connection, is_transient
from libs.runtime.eventstore import Position
from libs.runtime.group_commit import GroupCommitter
from libs.runtime.kafka import create_topics, durable_producer
from libs.runtime.relay import OutboxRelay
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, UnitOfWork, unit_of_work
from libs.runtime.writes import WriteBatch
from tests.conftest import RUN_ID, consumed_through, eventually
from tools.chaos import read_all

pytestmark = pytest.mark.integration

COUNTER_TOPIC = f"test.{RUN_ID}.counter.events"


@registry.register
class CounterIncremented(DomainEvent):
    message_type: ClassVar[str] = f"TestCounterIncremented{RUN_ID}"
    aggregate_type: ClassVar[str] = "counter"
    topic: ClassVar[str] = COUNTER_TOPIC
    counter_id: str
    by: int


@registry.register
class CounterStepped(DomainEvent):
    """Version 2: v1 called the amount `steps` (the upcaster below renames it)."""

    message_type: ClassVar[str] = f"TestCounterStepped{RUN_ID}"
    message_version: ClassVar[int] = 2
    aggregate_type: ClassVar[str] = "counter"
    topic: ClassVar[str] = COUNTER_TOPIC
    counter_id: str
    by: int


@registry.upcaster(CounterStepped.message_type, 1)
def _stepped_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"counter_id": payload["counter_id"], "by": payload["steps"]}


@registry.register
class CounterScaled(DomainEvent):
    """Version 2, and nobody wrote the upcaster from version 1."""

    message_type: ClassVar[str] = f"TestCounterScaled{RUN_ID}"
    message_version: ClassVar[int] = 2
    aggregate_type: ClassVar[str] = "counter"
    topic: ClassVar[str] = COUNTER_TOPIC
    counter_id: str
    by: int


@dataclass(frozen=True)
class Counter:
    total: int = 0


COUNTER = AggregateKind[Counter](
    "counter",
    Counter,
    lambda state, e: Counter(state.total + e.by),  # type: ignore[attr-defined]
)
CONTEXT = MessageContext(correlation_id="test", actor="test")


async def increment(engine: AsyncEngine, counter_id: str, by: int = 1) -> int:
    async with unit_of_work(engine, CONTEXT) as uow:
        _, version = await uow.load(COUNTER, counter_id)
        return await uow.record(
            COUNTER, counter_id, version, [CounterIncremented(counter_id=counter_id, by=by)]
        )


# --- event store ------------------------------------------------------------------------


async def test_appended_events_read_back_in_version_order(engine: AsyncEngine) -> None:
    for by in (1, 2, 3):
        await increment(engine, "c1", by)
    async with unit_of_work(engine, CONTEXT) as uow:
        state, version = await uow.load(COUNTER, "c1")
        history = await uow.history(COUNTER, "c1")
    assert (state.total, version) == (6, 3)
    assert [e.aggregate_version for e in history] == [1, 2, 3]
    assert {e.aggregate_id for e in history} == {"c1"}


async def test_concurrent_appends_to_one_stream_exactly_one_wins(engine: AsyncEngine) -> None:
    await increment(engine, "contended")
    writers = 10
    all_loaded = asyncio.Barrier(writers)  # no writer appends before every one has loaded

    async def writer(n: int) -> str:
        try:
            async with unit_of_work(engine, CONTEXT) as uow:
                _, version = await uow.load(COUNTER, "contended")
                assert version == 1
                await asyncio.wait_for(all_loaded.wait(), timeout=30)
                await uow.record(
                    COUNTER, "contended", version, [CounterIncremented(counter_id="contended", by=n)]
                )
            # The append, and so its concurrency check, runs as the unit of work commits.
        except ConcurrencyConflict:
            return "conflict"
        return "won"

    results = await asyncio.gather(*(writer(n) for n in range(1, writers + 1)), return_exceptions=True)
    assert results.count("won") == 1, results
    assert results.count("conflict") == writers - 1, results
    async with engine.connect() as conn:
        assert await eventstore.stream_version(conn, "counter-contended") == 2


async def test_catch_up_reader_never_skips_a_row_committed_late(engine: AsyncEngine) -> None:
    slow = await engine.connect()
    slow_tx = await slow.begin()
    try:
        # The slow transaction takes the smaller global position but commits last.
        await slow.execute(text("SELECT pg_current_xact_id()"))
        uow = UnitOfWork(slow, CONTEXT)
        await uow.record(COUNTER, "slow", 0, [CounterIncremented(counter_id="slow", by=1)])
        await uow.flush()
        await increment(engine, "fast")
        async with engine.connect() as reader:
            seen_while_open = await eventstore.read_all(reader, Position())
        assert seen_while_open == []  # the fast row waits behind the open transaction
        await slow_tx.commit()
    finally:
        await slow.close()
    async with engine.connect() as reader:
        seen = await eventstore.read_all(reader, Position())
        after = await eventstore.read_all(reader, seen[-1].position)
    assert [s.envelope.aggregate_id for s in seen] == ["slow", "fast"]
    assert after == []


async def test_preloaded_aggregates_match_what_loading_each_gives(engine: AsyncEngine) -> None:
    ids = [f"pre-{uuid4().hex[:8]}" for _ in range(3)]
    for _ in range(2):
        await increment(engine, ids[0])
    await increment(engine, ids[1])

    async with unit_of_work(engine, CONTEXT) as uow:
        await uow.preload(COUNTER, [*ids, ids[0]])  # ids[2] has no events yet
        preloaded = [await uow.load(COUNTER, i) for i in ids]
        await uow.record(COUNTER, ids[2], 0, [CounterIncremented(counter_id=ids[2], by=1)])
    async with unit_of_work(engine, CONTEXT) as uow:
        loaded_one_by_one = [await uow.load(COUNTER, i) for i in ids]

    assert preloaded == [(Counter(2), 2), (Counter(1), 1), (Counter(0), 0)]
    assert loaded_one_by_one == [(Counter(2), 2), (Counter(1), 1), (Counter(1), 1)]


async def test_rolled_back_work_leaves_no_event_and_no_outbox_row(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with unit_of_work(engine, CONTEXT) as uow:
            await uow.record(COUNTER, "ghost", 0, [CounterIncremented(counter_id="ghost", by=1)])
            raise RuntimeError("handler failed after recording")
    async with engine.connect() as conn:
        assert await eventstore.stream_version(conn, "counter-ghost") == 0
        assert await outbox.backlog(conn) == 0


async def test_events_and_their_outbox_rows_commit_together(engine: AsyncEngine) -> None:
    await increment(engine, "c2")
    await increment(engine, "c2")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT topic, key, value FROM outbox ORDER BY id"))).all()
    assert [(r.topic, r.key) for r in rows] == [(COUNTER_TOPIC, "c2")] * 2
    assert [decode(r.value).envelope.aggregate_version for r in rows] == [1, 2]


async def test_inbox_accepts_a_message_once_per_consumer(engine: AsyncEngine) -> None:
    event_id = uuid4()
    async with engine.begin() as conn:
        assert await inbox.claim(conn, "billing", event_id) is True
        assert await inbox.claim(conn, "billing", event_id) is False
        assert await inbox.claim(conn, "reporting", event_id) is True


async def test_inbox_claims_a_batch_once_even_with_repeats_inside_it(engine: AsyncEngine) -> None:
    seen_before, new, repeated = uuid4(), uuid4(), uuid4()
    async with engine.begin() as conn:
        await inbox.claim(conn, "order-saga", seen_before)
        claimed = await inbox.claim_all(
            await driver_connection(conn), "order-saga", [seen_before, new, repeated, repeated]
        )
    assert claimed == {new, repeated}


async def test_a_pooled_connection_the_server_killed_is_retired_not_reused(
    engine: AsyncEngine, settings: RuntimeSettings
) -> None:
    await increment(engine, "before-restart")
    # What a database restart does to the pool's idle connections.
    admin = await asyncpg.connect(settings.dsn("store"))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()

    outcomes = []
    for _ in range(2 * settings.db_pool_size + 3):
        try:
            await increment(engine, "after-restart")
            outcomes.append("ok")
        except Exception as error:
            assert is_transient(error), repr(error)  # retried by every caller, never dead-lettered
            outcomes.append("transient")

    # The first dead connection found retires the pool's idle ones with it: one failed
    # attempt, not one per pooled connection.
    assert outcomes.count("transient") <= 1, outcomes
    assert outcomes[-3:] == ["ok", "ok", "ok"], outcomes


# --- group commit ------------------------------------------------------------------------


def committer(engine: AsyncEngine) -> GroupCommitter:
    return GroupCommitter(lambda context: unit_of_work(engine, context))


async def add_to(uow: UnitOfWork, counter_id: str, by: int) -> int:
    _, version = await uow.load(COUNTER, counter_id)
    return await uow.record(COUNTER, counter_id, version, [CounterIncremented(counter_id=counter_id, by=by)])


async def transactions_of(engine: AsyncEngine, stream_ids: list[str]) -> set[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT DISTINCT transaction_id::text::bigint FROM events WHERE stream_id = ANY(:s)"),
            {"s": stream_ids},
        )
        return {row[0] for row in rows}


async def test_concurrent_commands_commit_together_and_each_gets_its_own_result(
    engine: AsyncEngine,
) -> None:
    group = committer(engine)
    counters = [f"grouped-{uuid4().hex[:8]}" for _ in range(20)]

    results = await asyncio.gather(
        *(group.execute(CONTEXT, lambda uow, c=c: add_to(uow, c, 1)) for c in counters)
    )

    assert results == [1] * 20
    # All twenty were queued before the committer ran: one transaction for all of them.
    assert len(await transactions_of(engine, [f"counter-{c}" for c in counters])) == 1


async def test_a_failing_command_fails_alone_and_the_rest_of_its_group_commits(engine: AsyncEngine) -> None:
    group = committer(engine)
    counters = [f"mixed-{uuid4().hex[:8]}" for _ in range(6)]

    async def refuse(uow: UnitOfWork) -> int:
        await add_to(uow, "never-" + counters[0], 1)  # recorded, then abandoned with the error
        raise ValueError("this command is invalid")

    outcomes = await asyncio.gather(
        *(group.execute(CONTEXT, lambda uow, c=c: add_to(uow, c, 1)) for c in counters[:3]),
        group.execute(CONTEXT, refuse),
        *(group.execute(CONTEXT, lambda uow, c=c: add_to(uow, c, 1)) for c in counters[3:]),
        return_exceptions=True,
    )

    assert outcomes[:3] == [1, 1, 1] and outcomes[4:] == [1, 1, 1]
    assert isinstance(outcomes[3], ValueError)
    async with engine.connect() as conn:
        for counter in counters:
            assert await eventstore.stream_version(conn, f"counter-{counter}") == 1
        assert await eventstore.stream_version(conn, f"counter-never-{counters[0]}") == 0


async def test_a_grouped_command_runs_in_its_callers_context(engine: AsyncEngine) -> None:
    group = committer(engine)
    caller = contextvars.ContextVar[str]("caller")

    async def call(name: str) -> str:
        caller.set(name)

        async def whose(uow: UnitOfWork) -> str:
            await add_to(uow, f"ctx-{name}-{RUN_ID}", 1)
            return caller.get()

        return await group.execute(CONTEXT, whose)

    assert await asyncio.gather(*(call(f"caller{n}") for n in range(5))) == [f"caller{n}" for n in range(5)]


# --- relay and consumer on the real broker ------------------------------------------------


@pytest.fixture
async def counter_topic(settings: RuntimeSettings) -> str:
    await create_topics(settings, [COUNTER_TOPIC])
    return COUNTER_TOPIC


@pytest.fixture
async def projection(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS test_counter_totals"
                " (counter_id text PRIMARY KEY, total int NOT NULL)"
            )
        )
        await conn.execute(text("TRUNCATE test_counter_totals"))
    return engine


async def add_to_projection(uow: UnitOfWork, decoded) -> None:  # type: ignore[no-untyped-def]
    event = decoded.message
    if event.by < 0:
        raise ValueError(f"cannot add {event.by}: counters only grow")
    await uow.conn.execute(
        text(
            "INSERT INTO test_counter_totals VALUES (:c, :b) ON CONFLICT (counter_id)"
            " DO UPDATE SET total = test_counter_totals.total + :b"
        ),
        {"c": event.counter_id, "b": event.by},
    )


async def totals(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT counter_id, total FROM test_counter_totals"))
        return {r.counter_id: r.total for r in rows}


@pytest.fixture
async def running_consumer(
    settings: RuntimeSettings, projection: AsyncEngine, counter_topic: str
) -> AsyncIterator[EventConsumer]:
    group = f"test-{RUN_ID}-{uuid4().hex[:6]}"
    consumer = EventConsumer(
        group,
        [counter_topic],
        {
            CounterIncremented: add_to_projection,
            CounterStepped: add_to_projection,
            CounterScaled: add_to_projection,
        },
        projection,
        settings,
        "service:test",
    )
    await create_topics(settings, [dead_letter_topic(group)])
    await start_at_the_end(settings, group, counter_topic)
    broker = KafkaBroker(settings.kafka_bootstrap, logger=None)
    consumer.attach(broker)
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()
        await consumer.close()


async def start_at_the_end(settings: RuntimeSettings, group: str, topic: str) -> None:
    """Commit the group's offsets at the topic's current end: the consumer sees only what its
    test sends, not the poison earlier tests left on the shared topic."""
    partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict(await consumer.end_offsets(partitions)))
    finally:
        await consumer.stop()


def relay_for(settings: RuntimeSettings) -> OutboxRelay:
    return OutboxRelay(settings.dsn("store"), lambda: durable_producer(settings, "test-relay"), "test")


async def test_relay_publishes_every_row_keyed_and_in_order_per_aggregate(
    engine: AsyncEngine, settings: RuntimeSettings, counter_topic: str
) -> None:
    for round_ in range(10):
        for counter in ("a", "b", "c", "d", "e"):
            await increment(engine, f"order-{counter}", round_ + 1)
    relay = relay_for(settings)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _backlog_empty(engine))
    finally:
        relay.stop()
        await task
    records = [r for r in await read_all(settings, counter_topic) if r.key.startswith(b"order-")]
    assert len(records) == 50
    by_key: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key, []).append(decode(record.value).envelope.aggregate_version)
    assert by_key == {f"order-{c}".encode(): list(range(1, 11)) for c in "abcde"}


async def _backlog_empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return await outbox.backlog(conn) == 0


async def test_relay_crash_after_publish_gives_a_duplicate_that_is_applied_once(
    engine: AsyncEngine,
    settings: RuntimeSettings,
    running_consumer: EventConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await increment(engine, "dup", 5)

    def crash(point: str) -> None:
        if point == faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK:
            raise SystemExit("relay killed between publish and outbox mark")

    monkeypatch.setattr(faults, "crash_point", crash)
    relay = relay_for(settings)
    producer = durable_producer(settings, "crashing-relay")
    await producer.start()
    conn = await __import__("asyncpg").connect(settings.dsn("store"))
    try:
        with pytest.raises(SystemExit):
            await relay.publish_pending(conn, producer)
    finally:
        await conn.close()
        await producer.stop()
    async with engine.connect() as c:
        assert await outbox.backlog(c) == 1  # published but not marked: it will go again
    monkeypatch.undo()

    restarted = relay_for(settings)
    task = asyncio.create_task(restarted.run())
    try:
        await eventually(lambda: _backlog_empty(engine))
        await eventually(lambda: _duplicates_seen(engine, running_consumer.name))
    finally:
        restarted.stop()
        await task
    assert (await totals(engine)).get("dup") == 5


async def _duplicates_seen(engine: AsyncEngine, group: str) -> bool:
    from libs.runtime.metrics import MESSAGES_HANDLED

    # The topic is shared with other tests, so count only this group's duplicates.
    duplicate = MESSAGES_HANDLED.labels(group, CounterIncremented.message_type, "duplicate")._value.get()
    return duplicate == 1 and (await totals(engine)).get("dup") == 5


def counter_message(message: DomainEvent, counter_id: str) -> bytes:
    return encode(
        make_envelope(
            message,
            event_id=uuid4(),
            aggregate_id=counter_id,
            aggregate_version=1,
            occurred_at=datetime.now(UTC),
            correlation_id=counter_id,
            causation_id=None,
            actor="test",
        )
    )


def as_an_older_release_wrote_it(
    event_type: str, version: int, payload: dict[str, Any], counter_id: str, position: int = 1
) -> Envelope:
    """An envelope of an older version, its payload as that version had it."""
    return Envelope(
        event_id=uuid4(),
        event_type=event_type,
        event_version=version,
        aggregate_type="counter",
        aggregate_id=counter_id,
        aggregate_version=position,
        occurred_at=datetime.now(UTC),
        correlation_id=counter_id,
        causation_id=None,
        actor="older-release",
        payload=payload,
    )


async def send_all(settings: RuntimeSettings, key: bytes, values: list[bytes]) -> RecordMetadata:
    """Send to the counter topic in order on one key (so one partition), with the event_type
    header the relay adds when there is a type to name; returns where the last one landed."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            try:
                headers = [("event_type", decode_type(value).encode())]
            except ValueError:
                headers = []
            last = await producer.send_and_wait(COUNTER_TOPIC, value, key=key, headers=headers)
    finally:
        await producer.stop()
    return last


def decode_type(value: bytes) -> str:
    return str(json.loads(value)["event_type"])


async def test_poison_messages_are_dead_lettered_and_the_partition_moves_on(
    engine: AsyncEngine, settings: RuntimeSettings, running_consumer: EventConsumer
) -> None:
    negative = counter_message(CounterIncremented(counter_id="p", by=-1), "p")
    garbage = b"{not json"
    last = await send_all(
        settings,
        b"p",
        [
            counter_message(CounterIncremented(counter_id="p", by=1), "p"),
            negative,
            garbage,
            counter_message(CounterIncremented(counter_id="p", by=2), "p"),
        ],
    )

    await eventually(lambda: _total_is(engine, "p", 3))
    await eventually(lambda: consumed_through(settings, running_consumer.name, last))
    dead = await read_all(settings, running_consumer.dead_letter_topic)

    reasons = {r.value: dict(r.headers) for r in dead}
    assert sorted(r.value for r in dead) == sorted([negative, garbage])  # nothing else, nothing twice
    assert b"counters only grow" in reasons[negative]["dlq.reason"]
    assert reasons[negative]["dlq.attempts"] == str(settings.consumer_max_attempts).encode()
    assert reasons[garbage]["dlq.reason"].startswith(b"undecodable: not JSON")


async def _total_is(engine: AsyncEngine, counter_id: str, expected: int) -> bool:
    return (await totals(engine)).get(counter_id) == expected


async def test_a_standby_relay_takes_over_when_the_active_one_stops(
    engine: AsyncEngine, settings: RuntimeSettings, counter_topic: str
) -> None:
    active, standby = relay_for(settings), relay_for(settings)
    active_task = asyncio.create_task(active.run())
    await increment(engine, "leader", 1)
    await eventually(lambda: _backlog_empty(engine))
    standby_task = asyncio.create_task(standby.run())
    await increment(engine, "leader", 2)
    await eventually(lambda: _backlog_empty(engine))
    assert (active.published, standby.published) == (2, 0)  # one publisher at a time

    active.stop()
    await active_task
    await increment(engine, "leader", 3)
    await eventually(lambda: _backlog_empty(engine))
    standby.stop()
    await standby_task
    assert standby.published == 1


# --- upcasting: old versions on the wire and in the store ----------------------------------


async def test_an_old_version_from_kafka_is_upcast_and_one_without_an_upcaster_is_dead_lettered(
    engine: AsyncEngine, settings: RuntimeSettings, running_consumer: EventConsumer
) -> None:
    counter_id = f"up-{uuid4().hex[:8]}"
    v1 = {"counter_id": counter_id, "steps": 4}
    old_stepped = encode(as_an_older_release_wrote_it(CounterStepped.message_type, 1, v1, counter_id))
    no_upcaster = encode(
        as_an_older_release_wrote_it(
            CounterScaled.message_type, 1, {"counter_id": counter_id, "factor": 2}, counter_id
        )
    )
    last = await send_all(
        settings,
        counter_id.encode(),
        [old_stepped, no_upcaster, counter_message(CounterStepped(counter_id=counter_id, by=3), counter_id)],
    )

    await eventually(lambda: _total_is(engine, counter_id, 7))  # 4 (upcast from v1) + 3 (v2)
    await eventually(lambda: consumed_through(settings, running_consumer.name, last))
    on_the_topic = [r.value for r in await read_all(settings, COUNTER_TOPIC) if r.key == counter_id.encode()]
    dead = await read_all(settings, running_consumer.dead_letter_topic)

    assert decode(on_the_topic[0]).envelope.payload == v1
    assert decode(on_the_topic[0]).message == CounterStepped(counter_id=counter_id, by=4)
    assert [r.value for r in dead] == [no_upcaster]
    assert dict(dead[0].headers)["dlq.reason"].decode() == (
        f"undecodable: no upcaster for {CounterScaled.message_type} v1"
    )


async def append_as_stored(
    engine: AsyncEngine, counter_id: str, events: list[tuple[str, int, dict[str, Any]]]
) -> None:
    """Write events as an older release of the code did: (type, version, payload) as is."""
    envelopes = [
        as_an_older_release_wrote_it(event_type, version, payload, counter_id, position)
        for position, (event_type, version, payload) in enumerate(events, start=1)
    ]
    async with engine.begin() as conn:
        await eventstore.append(await driver_connection(conn), envelopes)


async def test_replaying_a_stream_upcasts_the_old_events_in_the_store(engine: AsyncEngine) -> None:
    counter_id = f"replay-{uuid4().hex[:8]}"
    await append_as_stored(
        engine,
        counter_id,
        [
            (CounterIncremented.message_type, 1, {"counter_id": counter_id, "by": 1}),
            (CounterStepped.message_type, 1, {"counter_id": counter_id, "steps": 10}),
            (CounterStepped.message_type, 2, {"counter_id": counter_id, "by": 100}),
        ],
    )

    after = await increment(engine, counter_id, 1000)  # load (replay), decide, record
    async with unit_of_work(engine, CONTEXT) as uow:
        state, version = await uow.load(COUNTER, counter_id)
        stored = await uow.history(COUNTER, counter_id)

    assert (state.total, version, after) == (1111, 4, 4)
    # The store keeps what was written; upcasting happens on the way out.
    assert [e.event_version for e in stored] == [1, 1, 2, 1]
    assert stored[1].payload == {"counter_id": counter_id, "steps": 10}


async def test_replaying_a_stream_with_an_event_no_upcaster_reaches_fails_naming_it(
    engine: AsyncEngine,
) -> None:
    counter_id = f"stuck-{uuid4().hex[:8]}"
    await append_as_stored(
        engine,
        counter_id,
        [
            (CounterIncremented.message_type, 1, {"counter_id": counter_id, "by": 1}),
            (CounterScaled.message_type, 1, {"counter_id": counter_id, "factor": 2}),
        ],
    )

    with pytest.raises(UnknownMessageType, match=f"no upcaster for {CounterScaled.message_type} v1"):
        await increment(engine, counter_id, 1)

    async with engine.connect() as conn:  # nothing was appended on top of the unreadable stream
        assert await eventstore.stream_version(conn, f"counter-{counter_id}") == 2


# --- round trips of one consumed batch ------------------------------------------------------


class RoundTripCounter:
    """A TCP relay in front of PostgreSQL that counts the client's round trips: each simple
    query ('Q') and each Sync ('S', which ends an extended-protocol exchange: one statement,
    or one executemany) waits for the server's answer before the client goes on."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.round_trips = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(*self.upstream)
        directions = [
            asyncio.ensure_future(self._client_to_server(client_in, server_out)),
            asyncio.ensure_future(self._pipe(server_in, client_out)),
        ]
        # Either side hanging up ends both (a client closing waits for the server to).
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for direction in directions:
            direction.cancel()
        client_out.close()
        server_out.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()

    async def _client_to_server(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        # Untyped messages first: an SSL or GSS request (answered with one byte), then the
        # startup message; every message after that starts with its type byte.
        while True:
            header = await source.readexactly(8)
            body = await source.readexactly(int.from_bytes(header[:4], "big") - 8)
            sink.write(header + body)
            await sink.drain()
            if int.from_bytes(header[4:8], "big") not in (80877103, 80877104):
                break
        while True:
            header = await source.readexactly(5)
            body = await source.readexactly(int.from_bytes(header[1:5], "big") - 4)
            if header[:1] in (b"Q", b"S"):
                self.round_trips += 1
            sink.write(header + body)
            await sink.drain()


@pytest.fixture
async def counted_engine(
    settings: RuntimeSettings, engine: AsyncEngine, projection: AsyncEngine
) -> AsyncIterator[tuple[AsyncEngine, RoundTripCounter]]:
    counter = RoundTripCounter(settings.pg_host, settings.pg_port)
    port = await counter.start()
    counted = create_engine(settings.model_copy(update={"pg_port": port}), "store")
    try:
        yield counted, counter
    finally:
        await counted.dispose()
        await counter.stop()


# BEGIN, inbox claim, preload, event rows, read-model rows, outbox rows, NOTIFY, COMMIT (the
# NOTIFY goes when an after-commit publisher claims every outbox row of the transaction).
ROUND_TRIPS_PER_BATCH = 8

_ADD_TOTAL = Sql(
    "INSERT INTO test_counter_totals VALUES (:c, :b) ON CONFLICT (counter_id)"
    " DO UPDATE SET total = test_counter_totals.total + :b"
)


def project_total(batch: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, CounterIncremented):
        batch.add(_ADD_TOTAL, {"c": event.counter_id, "b": event.by}, row=event.counter_id)


async def record_step(uow: UnitOfWork, decoded) -> None:  # type: ignore[no-untyped-def]
    """A reaction as the services write them: load, decide, record (an event, its outbox row
    and its read-model row)."""
    step = decoded.message
    _, version = await uow.load(COUNTER, step.counter_id)
    await uow.record(
        COUNTER, step.counter_id, version, [CounterIncremented(counter_id=step.counter_id, by=step.by)]
    )


async def preload_counters(uow: UnitOfWork, batch) -> None:  # type: ignore[no-untyped-def]
    await uow.preload(COUNTER, [d.message.counter_id for d in batch])


def stepped_record(counter_id: str, offset: int) -> ConsumerRecord:  # type: ignore[type-arg]
    value = counter_message(CounterStepped(counter_id=counter_id, by=2), counter_id)
    return ConsumerRecord(
        COUNTER_TOPIC,
        0,
        offset,
        0,
        0,
        counter_id.encode(),
        value,
        None,
        0,
        len(value),
        [("event_type", CounterStepped.message_type.encode())],
    )


async def test_a_consumed_batch_costs_the_same_few_round_trips_whatever_its_size(
    settings: RuntimeSettings, counted_engine: tuple[AsyncEngine, RoundTripCounter]
) -> None:
    engine, counter = counted_engine
    consumer = EventConsumer(
        f"test-{RUN_ID}-round-trips",
        [COUNTER_TOPIC],
        {CounterStepped: record_step},
        engine,
        settings,
        "service:test",
        projector=project_total,
        preload=preload_counters,
    )
    await consumer.handle_records([stepped_record("warm-up", 0)])  # connects, prepares statements
    per_batch = {}
    for size in (1, 50):
        before = counter.round_trips
        await consumer.handle_records([stepped_record(f"rt-{size}-{n}", n) for n in range(size)])
        per_batch[size] = counter.round_trips - before

    assert (await totals(engine))["rt-50-49"] == 2
    assert per_batch[50] == per_batch[1] <= ROUND_TRIPS_PER_BATCH, per_batch
