"""An inventory database of a test module's own: migrated, with warehouses registered through
the real handler, and dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.runtime.db import admin_connection, create_engine, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, unit_of_work
from services.inventory.app import handlers
from services.inventory.bootstrap import MIGRATIONS, project

SETUP = MessageContext(correlation_id="test-setup", actor="user:test")


@asynccontextmanager
async def inventory_database(
    settings: RuntimeSettings, service: str, warehouses: tuple[str, ...] = ("NORTH",)
) -> AsyncIterator[AsyncEngine]:
    await ensure_database(settings, service)
    engine = create_engine(settings, service)
    try:
        await migrate(engine, MIGRATIONS)
        async with unit_of_work(engine, SETUP, projector=project) as uow:
            for code in warehouses:
                await handlers.register_warehouse(uow, code, f"{code.title()} DC", code.lower())
        yield engine
    finally:
        await engine.dispose()
        admin = await admin_connection(settings)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database_name(service)}" WITH (FORCE)')
        finally:
            await admin.close()
