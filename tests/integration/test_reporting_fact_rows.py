"""The reporting flush that writes a layer of fact rows in one statement (adapters/fact_rows.py)
leaves the database exactly as running each row's own INSERT does, duplicates included."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs.events import make_envelope
from libs.runtime.db import admin_connection, create_engine, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import WriteBatch
from services.reporting.adapters import fact_rows
from services.reporting.adapters.projections import project
from services.reporting.bootstrap import MIGRATIONS
from services.reporting.rebuild import READ_MODELS
from tools.bench_replay import order_history

pytestmark = pytest.mark.integration

DATABASE = "reporting_facts"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def db(settings: RuntimeSettings) -> AsyncIterator[asyncpg.Connection]:
    await ensure_database(settings, DATABASE)
    engine = create_engine(settings, DATABASE)
    await migrate(engine, MIGRATIONS)
    await engine.dispose()
    connection = await asyncpg.connect(settings.dsn(DATABASE))
    yield connection
    await connection.close()
    admin = await admin_connection(settings)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database_name(DATABASE)}" WITH (FORCE)')
    finally:
        await admin.close()


def _history(orders: int) -> WriteBatch:
    """The public events of `orders` orders, every one delivered twice (a redelivered batch
    the inbox did not catch), projected into one batch as a consumed batch is."""
    writes = WriteBatch()
    for n in range(orders):
        at = T0 + timedelta(minutes=n)
        for offset, (message, key, version) in enumerate(order_history(n, at)):
            envelope = make_envelope(
                message,
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"fact-rows:{n}:{offset}"),
                aggregate_id=key,
                aggregate_version=version,
                occurred_at=at + timedelta(seconds=offset),
                correlation_id=f"order-{n}",
                causation_id=None,
                actor="test",
            )
            project(writes, envelope, message)
            project(writes, envelope, message)
    return writes


async def _tables(db: asyncpg.Connection) -> dict[str, list[Any]]:
    """Every read-model table's rows, in a stable order (less when each was written)."""
    found = {}
    for table in READ_MODELS:
        row = f"to_jsonb({table}) - 'last_applied_at'"
        found[table] = [r[0] for r in await db.fetch(f"SELECT ({row})::text FROM {table} ORDER BY 1")]  # noqa: S608
    return found


async def test_fact_rows_in_one_statement_leave_the_tables_as_row_by_row_inserts(
    db: asyncpg.Connection,
) -> None:
    await db.execute(f"TRUNCATE {', '.join(READ_MODELS)}")
    await _history(40).flush(db)
    row_by_row = await _tables(db)

    await db.execute(f"TRUNCATE {', '.join(READ_MODELS)}")
    await fact_rows.flush(_history(40), db)
    in_one_statement = await _tables(db)

    assert len(row_by_row["orders"]) == 40
    assert len(row_by_row["stock_movements"]) == 40 * 4
    assert in_one_statement == row_by_row
