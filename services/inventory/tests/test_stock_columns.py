"""The inventory read model on the real PostgreSQL: its quantity columns hold whatever the
events can add up to, so a busy SKU's receipts never stop fitting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events.values import MAX_QUANTITY
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, unit_of_work
from services.inventory.adapters import queries
from services.inventory.adapters.projections import project
from services.inventory.app import handlers
from services.inventory.tests.database import inventory_database

pytestmark = pytest.mark.integration

INT32_MAX = 2**31 - 1
CONTEXT = MessageContext(correlation_id="test", actor="test")


@pytest.fixture(scope="module")
async def engine(settings: RuntimeSettings) -> AsyncIterator[AsyncEngine]:
    """A database of its own with the inventory migrations applied."""
    async with inventory_database(settings, "inventorycolumns", ("NORTH",)) as engine:
        yield engine


async def test_on_hand_past_two_billion_units_is_kept(engine: AsyncEngine) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    receipts = INT32_MAX // MAX_QUANTITY + 1

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        for number in range(receipts):
            await handlers.receive_stock(uow, sku, "NORTH", MAX_QUANTITY, f"{sku}-{number}")

    async with engine.connect() as conn:
        stock = await queries.stock_of(conn, sku)
    assert stock["on_hand"] == receipts * MAX_QUANTITY > INT32_MAX


async def test_every_stock_quantity_column_is_64_bit(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name IN ('stock_levels', 'backorders')"
                " AND column_name IN ('on_hand', 'reserved', 'quantity')"
            )
        )
        types = {f"{r.table_name}.{r.column_name}": r.data_type for r in rows}
    assert types == {
        "stock_levels.on_hand": "bigint",
        "stock_levels.reserved": "bigint",
        "backorders.quantity": "bigint",
    }
