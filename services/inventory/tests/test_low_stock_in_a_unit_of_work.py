"""Low-stock alerts through the real handlers and database: they follow the stock a unit of
work leaves behind, not each step on the way (a receipt that fills a backorder and leaves
stock as low as before neither closes nor reopens the alert)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events import Decoded, make_envelope
from libs.events.inventory import ReserveStock
from libs.events.values import SkuQuantity
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, unit_of_work
from services.inventory.app import handlers, warehouse_ops
from services.inventory.bootstrap import project
from services.inventory.tests.database import inventory_database

pytestmark = pytest.mark.integration

CONTEXT = MessageContext(correlation_id="test", actor="user:test")
ALERTS = ("LowStockDetected", "LowStockCleared")


@pytest.fixture(scope="module")
async def engine(settings: RuntimeSettings) -> AsyncIterator[AsyncEngine]:
    async with inventory_database(settings, "inventorylowstock", ("NORTH",)) as engine:
        yield engine


def reserve(order_id: str, sku: str, quantity: int) -> Decoded:
    command = ReserveStock(
        order_id=order_id, lines=(SkuQuantity(sku=sku, quantity=quantity),), region="north"
    )
    envelope = make_envelope(
        command,
        event_id=uuid4(),
        aggregate_id=order_id,
        aggregate_version=0,
        occurred_at=datetime.now(UTC),
        correlation_id=order_id,
        causation_id=None,
        actor="service:order",
    )
    return Decoded(envelope, command)


async def alerts_of(engine: AsyncEngine, sku: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT event_type FROM events WHERE stream_id = :s ORDER BY version"), {"s": f"sku-{sku}"}
        )
        return [row.event_type for row in rows if row.event_type in ALERTS]


async def test_a_receipt_that_fills_a_backorder_and_leaves_stock_low_keeps_the_one_alert(
    engine: AsyncEngine,
) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 3, f"{sku}-1")
        await warehouse_ops.set_reorder_point(uow, sku, "NORTH", 5, 20)
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.reserve_stock(uow, reserve("o-1", sku, 8))  # short: waits for stock
    assert await alerts_of(engine, sku) == ["LowStockDetected"]

    # 13 on hand for a moment, then 8 of them reserved for the waiting order: 5 available
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 10, f"{sku}-2")
    assert await alerts_of(engine, sku) == ["LowStockDetected"]

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 1, f"{sku}-3")
    assert await alerts_of(engine, sku) == ["LowStockDetected", "LowStockCleared"]
