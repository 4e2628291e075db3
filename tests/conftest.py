"""Fixtures for tests that need the real Kafka broker and PostgreSQL.

`make test` (python -m tools.infra test) starts both when they are not reachable. Each test
session uses its own database prefix and topic names, so it never meets another run's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.runtime.db import create_engine, drop_databases, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def settings() -> RuntimeSettings:
    return RuntimeSettings(
        db_prefix=f"omtest_{RUN_ID}",
        topic_partitions=4,
        consumer_max_attempts=3,
        consumer_retry_backoff_ms=10,
        log_json=False,
    )


@pytest.fixture(scope="session")
async def store_engine(settings: RuntimeSettings) -> AsyncIterator[AsyncEngine]:
    """A database with the shared event store, outbox and inbox tables."""
    await ensure_database(settings, "store")
    engine = create_engine(settings, "store")
    await migrate(engine)
    yield engine
    await engine.dispose()
    await drop_databases(settings)


@pytest.fixture
async def engine(store_engine: AsyncEngine) -> AsyncEngine:
    async with store_engine.begin() as conn:
        await conn.execute(text("TRUNCATE events, outbox, inbox"))
    return store_engine


def unique_topic(name: str) -> str:
    return f"test.{RUN_ID}.{name}.{uuid.uuid4().hex[:6]}"


async def eventually(check, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Await until check() returns a truthy value (no fixed sleeps in tests)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def consumed_through(settings: RuntimeSettings, group: str, record: RecordMetadata) -> bool:
    """Whether the consumer group has committed an offset past `record`. Offsets are committed
    after the batch is handled, so whatever the record caused (a dead letter, say) is done."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = offsets.get(TopicPartition(record.topic, record.partition))
    return committed is not None and committed.offset > record.offset


os.environ.setdefault("OM_LOG_JSON", "false")
