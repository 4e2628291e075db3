"""Publish after commit (issue 12) on the real PostgreSQL and broker: the process that commits
outbox rows publishes them itself, the relay takes what a crash or a failed delivery leaves,
and the rows of one key reach Kafka in commit order whichever path carries them.

A "process" here is an AfterCommitPublisher with its own engine, database session and
liveness lock; it "dies" when its session ends and its tasks stop, as a killed process's do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import AggregateKind
from libs.events import decode, registry
from libs.events.base import DomainEvent
from libs.runtime import faults
from libs.runtime.db import create_engine
from libs.runtime.kafka import create_topics, durable_producer
from libs.runtime.outbox import OutboxRow
from libs.runtime.publisher import AfterCommitPublisher
from libs.runtime.relay import OutboxRelay
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, publish_after_commit, unit_of_work
from tests.conftest import RUN_ID, eventually
from tools.chaos import read_all

pytestmark = pytest.mark.integration

TICK_TOPIC = f"test.{RUN_ID}.ticks.events"


@registry.register
class TickRecorded(DomainEvent):
    message_type: ClassVar[str] = f"TestTickRecorded{RUN_ID}"
    aggregate_type: ClassVar[str] = "tick"
    topic: ClassVar[str] = TICK_TOPIC
    clock_id: str
    n: int


@dataclass(frozen=True)
class Clock:
    ticks: int = 0


CLOCK = AggregateKind[Clock]("tick", Clock, lambda state, _e: Clock(state.ticks + 1))
CONTEXT = MessageContext(correlation_id="test", actor="test")


async def tick(engine: AsyncEngine, clock_id: str, events: int = 1) -> int:
    """One transaction appending `events` ticks to the clock; returns its new version."""
    async with unit_of_work(engine, CONTEXT) as uow:
        _, version = await uow.load(CLOCK, clock_id)
        return await uow.record(
            CLOCK,
            clock_id,
            version,
            [TickRecorded(clock_id=clock_id, n=version + i) for i in range(1, events + 1)],
        )


class FlakyProducer:
    """The real producer behind a gate: while `held`, sends wait (a slow publisher); while
    `down`, deliveries fail as they do when the broker is away."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self.real = real
        self.open = asyncio.Event()
        self.open.set()
        self.down = False

    async def start(self) -> None:
        await self.real.start()

    async def stop(self) -> None:
        await self.real.stop()

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[object]:
        await self.open.wait()
        if self.down:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaConnectionError("broker away (test)"))
            return failed
        return await self.real.send(topic, **kwargs)


@dataclass
class Process:
    engine: AsyncEngine
    publisher: AfterCommitPublisher
    producer: FlakyProducer


@pytest.fixture
async def processes(engine: AsyncEngine, settings: RuntimeSettings) -> AsyncIterator[Callable[[], Any]]:
    """Starts "processes" on the store database; stops whatever is still running at the end."""
    await create_topics(settings, [TICK_TOPIC])
    started: list[Process] = []

    async def start() -> Process:
        producer = FlakyProducer(durable_producer(settings, "test-publisher"))
        publisher = AfterCommitPublisher(
            settings.dsn("store"),
            lambda: producer,  # type: ignore[arg-type,return-value]
            "test",
        )
        await publisher.start()
        process_engine = create_engine(settings, "store")
        publish_after_commit(process_engine, publisher)
        process = Process(process_engine, publisher, producer)
        started.append(process)
        return process

    yield start
    for process in started:
        process.producer.open.set()
        await process.publisher.stop(drain_seconds=1)
        await process.engine.dispose()


def relay_for(settings: RuntimeSettings) -> OutboxRelay:
    return OutboxRelay(
        settings.dsn("store"),
        lambda: durable_producer(settings, "test-relay"),
        "test",
        takeover_seconds=settings.outbox_takeover_seconds,
    )


async def die(process: Process) -> None:
    """What a SIGKILL does to a process: its tasks stop mid-way and its database session ends
    (the server then releases its liveness lock)."""
    publisher = process.publisher
    for task in publisher._tasks:  # noqa: SLF001 - the test plays the kernel
        task.cancel()
    assert publisher._conn is not None  # noqa: SLF001
    publisher._conn.terminate()  # noqa: SLF001
    await process.producer.stop()
    await process.engine.dispose()


async def outbox_rows(settings: RuntimeSettings, key: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.dsn("store"))
    try:
        return list(await conn.fetch("SELECT id, publisher FROM outbox WHERE key = $1 ORDER BY id", key))
    finally:
        await conn.close()


async def published(settings: RuntimeSettings, key: str) -> list[int]:
    """The tick numbers on the topic for this clock, in partition order (duplicates kept)."""
    records = [r for r in await read_all(settings, TICK_TOPIC) if r.key == key.encode()]
    return [decode(r.value).message.n for r in sorted(records, key=lambda r: r.offset)]  # type: ignore[attr-defined]


def first_copies(ticks: list[int]) -> list[int]:
    """What consumers apply: each message once, at its first copy (the inbox drops the rest)."""
    return list(dict.fromkeys(ticks))


async def until_published(settings: RuntimeSettings, key: str, count: int) -> list[int]:
    async def enough() -> list[int] | None:
        found = await published(settings, key)
        return found if len(set(found)) >= count else None

    result: list[int] = await eventually(enough)
    return result


async def test_the_committing_process_publishes_its_rows_without_the_relay_and_deletes_them(
    settings: RuntimeSettings, processes: Callable[[], Any]
) -> None:
    process: Process = await processes()
    clock = f"alone-{uuid4().hex[:8]}"
    published_before = _published_total(process)
    for _ in range(5):
        await tick(process.engine, clock, events=3)

    # No relay runs in this test: only the publisher can have sent them.
    assert await until_published(settings, clock, 15) == list(range(1, 16))
    await eventually(lambda: _outbox_empty(settings, clock))
    assert process.publisher.published == 15
    # The total of published rows counts them too: dashboards and the bench read it.
    assert _published_total(process) - published_before == 15


def _published_total(process: Process) -> float:
    labels = {"service": process.publisher._service}  # noqa: SLF001 - the label it publishes under
    return REGISTRY.get_sample_value("ordermesh_outbox_published_total", labels) or 0.0


async def _outbox_empty(settings: RuntimeSettings, key: str) -> bool:
    return not await outbox_rows(settings, key)


async def test_a_crash_between_commit_and_publish_leaves_the_rows_to_the_relay_once_the_process_is_gone(
    settings: RuntimeSettings, processes: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    process: Process = await processes()
    clock = f"crash-{uuid4().hex[:8]}"
    await tick(process.engine, clock)

    def crash(point: str) -> None:
        if point == faults.AFTER_COMMIT_BEFORE_PUBLISH:
            raise SystemExit("killed between commit and publish")

    monkeypatch.setattr(faults, "crash_point", crash)
    with pytest.raises(SystemExit):
        await tick(process.engine, clock, events=2)
    monkeypatch.undo()
    await until_published(settings, clock, 1)
    held = await outbox_rows(settings, clock)
    assert [r["publisher"] for r in held] == [process.publisher.owner] * 2  # committed, claimed

    relay = relay_for(settings)
    producer = durable_producer(settings, "test-relay-round")
    await producer.start()
    conn = await asyncpg.connect(settings.dsn("store"))
    try:
        # While the process lives, its rows are its own: the relay leaves them.
        assert await relay.publish_pending(conn, producer) == 0
        await die(process)
        await eventually(lambda: _relay_round_publishes(relay, conn, producer))
    finally:
        await conn.close()
        await producer.stop()

    assert await published(settings, clock) == [1, 2, 3]
    assert await outbox_rows(settings, clock) == []


async def _relay_round_publishes(relay: OutboxRelay, conn: asyncpg.Connection, producer: Any) -> bool:
    return await relay.publish_pending(conn, producer) > 0


async def test_two_processes_writing_one_key_one_after_the_other_publish_in_commit_order(
    settings: RuntimeSettings, processes: Callable[[], Any]
) -> None:
    first: Process = await processes()
    second: Process = await processes()
    clock = f"two-{uuid4().hex[:8]}"
    first.producer.open.clear()  # the first process is slow to publish
    await tick(first.engine, clock, events=2)
    await tick(second.engine, clock, events=2)  # written after the first committed

    rows = await outbox_rows(settings, clock)
    # The second process's rows must not overtake the first's, still waiting: the relay's.
    assert [r["publisher"] for r in rows] == [first.publisher.owner] * 2 + [None] * 2
    relay = relay_for(settings)
    relay_task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _relay_is_waiting(relay))
        assert await published(settings, clock) == []  # the relay waits behind the first's rows
        first.producer.open.set()
        ticks = await until_published(settings, clock, 4)
    finally:
        relay.stop()
        await relay_task
    assert ticks == [1, 2, 3, 4]
    await eventually(lambda: _outbox_empty(settings, clock))


async def _relay_is_waiting(relay: OutboxRelay) -> bool:
    return relay.waiting_behind_publisher


async def test_a_failed_delivery_hands_the_rows_back_and_every_path_keeps_the_key_in_order(
    settings: RuntimeSettings, processes: Callable[[], Any]
) -> None:
    process: Process = await processes()
    clock = f"down-{uuid4().hex[:8]}"
    await tick(process.engine, clock)
    await until_published(settings, clock, 1)
    process.producer.down = True  # the broker goes away
    await tick(process.engine, clock, events=2)
    await eventually(lambda: _handed_back(process.publisher))
    await tick(process.engine, clock)  # while the publisher pauses: the relay's at once
    assert [r["publisher"] for r in await outbox_rows(settings, clock)] == [None] * 3

    process.producer.down = False  # the broker is back
    relay = relay_for(settings)
    relay_task = asyncio.create_task(relay.run())
    try:
        for _ in range(3):
            await tick(process.engine, clock, events=2)
        ticks = await until_published(settings, clock, 10)
        await eventually(lambda: _outbox_empty(settings, clock))
    finally:
        relay.stop()
        await relay_task
    assert first_copies(ticks) == list(range(1, 11))
    assert ticks == list(range(1, 11))  # a failed delivery is not a crash: nothing twice


async def _handed_back(publisher: AfterCommitPublisher) -> bool:
    return publisher.handed_back > 0 and publisher.claim() is None


async def test_in_one_process_a_later_transaction_of_a_key_waits_for_the_earlier_one_to_commit() -> None:
    """Two transactions of one key in one process: the later one can only have read the
    earlier one after it committed, but its own COMMIT may return first. Sending follows the
    order of the places taken before each COMMIT, not the order the COMMITs return in."""
    publisher = AfterCommitPublisher("postgresql://unused", lambda: None, "test")  # type: ignore[arg-type,return-value]
    earlier = publisher.reserve([_row(1, "k"), _row(2, "other")], epoch=0)
    later = publisher.reserve([_row(3, "k")], epoch=0)
    unrelated = publisher.reserve([_row(4, "elsewhere")], epoch=0)

    publisher.committed(later)
    publisher.committed(unrelated)
    assert _queued(publisher) == [[4]]  # another key goes at once; "k" waits for the earlier
    publisher.committed(earlier)
    assert _queued(publisher) == [[1, 2], [3]]


def _row(row_id: int, key: str) -> OutboxRow:
    return OutboxRow(row_id, "t", key, b"", {})


def _queued(publisher: AfterCommitPublisher) -> list[list[int]]:
    ready = publisher._ready  # noqa: SLF001 - what the sender task would take, in order
    taken = []
    while not ready.empty():
        taken.append([r.id for r in ready.get_nowait().rows])
    return taken
