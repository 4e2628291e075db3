"""An import survives its process (docs/imports.md, "How it runs"): the order service's import
loop, on the real PostgreSQL, goes on after the last batch that committed and places nothing
twice; while another replica holds an import, a second one leaves it alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from sqlalchemy import text

from libs.events.order_imports import OrderImportProgressed
from libs.runtime.db import drop_databases, ensure_database, migrate
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext
from services.order import bootstrap
from services.order.app.imports import OrderImports, parse_upload
from services.order.domain.imports import ORDER_IMPORT
from tests.conftest import RUN_ID
from tests.integration.test_imports import _row, as_csv

pytestmark = pytest.mark.integration

ORDERS = 250


@pytest.fixture(scope="module")
async def order_service() -> AsyncIterator[tuple[ServiceRuntime, OrderImports]]:
    """The order service's runtime and imports on a database of their own, without its loops:
    the test drives the import loop's steps itself."""
    settings = RuntimeSettings(db_prefix=f"omimp_{RUN_ID}", log_json=False)
    app = bootstrap.build_app(settings)
    runtime: ServiceRuntime = app.state.runtime
    await ensure_database(settings, bootstrap.NAME)
    await migrate(runtime.engine, bootstrap.MIGRATIONS)
    try:
        yield runtime, app.state.imports
    finally:
        await runtime.engine.dispose()
        await drop_databases(settings)


async def uploaded(runtime: ServiceRuntime, imports: OrderImports, content: bytes) -> str:
    import_id = str(uuid4())
    async with runtime.unit_of_work(MessageContext(import_id, "user:test-import")) as uow:
        await imports.start(uow, import_id, "orders.csv", "csv", content, f"resume-{uuid4().hex[:6]}", False)
    return import_id


def order_rows(prefix: str) -> list[dict[str, str]]:
    return [_row(f"{prefix}-{n}", n, "SKU-R") for n in range(ORDERS)] + [
        _row(f"{prefix}-BAD", 0, "SKU-R", quantity="0")
    ]


async def test_an_import_goes_on_after_the_last_batch_that_committed(
    order_service: tuple[ServiceRuntime, OrderImports],
) -> None:
    runtime, first_process = order_service
    content = as_csv(order_rows(uuid4().hex[:6]))
    import_id = await uploaded(runtime, first_process, content)
    async with runtime.unit_of_work(MessageContext(import_id, "test")) as uow:
        state, _ = await uow.load(ORDER_IMPORT, import_id)
    assert state.started is not None
    first_process.batch_size = 100
    # One batch commits; then the process is gone (nothing of it is used again).
    assert await first_process.next_batch(runtime, import_id, parse_upload(content, state.started)) == "more"

    restarted = OrderImports(first_process.handlers, batch_size=100)
    await restarted.work(runtime, import_id)

    async with runtime.unit_of_work(MessageContext(import_id, "test")) as uow:
        state, _ = await uow.load(ORDER_IMPORT, import_id)
        history = await uow.history(ORDER_IMPORT, import_id)
    assert (state.status, state.orders_accepted, state.orders_already_imported, state.orders_rejected) == (
        "completed",
        ORDERS,
        0,
        1,
    )
    assert [
        e.payload["orders_done"] for e in history if e.event_type == OrderImportProgressed.message_type
    ] == [
        100,
        200,
        ORDERS + 1,
    ]
    async with runtime.engine.connect() as conn:
        left = (
            await conn.execute(
                text(
                    "SELECT finished_at IS NOT NULL, content IS NULL FROM order_import_files"
                    " WHERE import_id = :i"
                ),
                {"i": import_id},
            )
        ).one()
    assert tuple(left) == (True, True)  # done, and the file's bytes dropped


async def test_an_import_another_replica_holds_is_left_alone(
    order_service: tuple[ServiceRuntime, OrderImports],
) -> None:
    runtime, imports = order_service
    import_id = await uploaded(runtime, imports, as_csv(order_rows(uuid4().hex[:6])[:3]))
    other = OrderImports(imports.handlers)

    async with runtime.engine.connect() as holder:
        await holder.execute(
            text("SELECT 1 FROM order_import_files WHERE import_id = :i FOR UPDATE"), {"i": import_id}
        )
        await other.work(runtime, import_id)  # returns at once: the row is locked
        async with runtime.unit_of_work(MessageContext(import_id, "test")) as uow:
            held, _ = await uow.load(ORDER_IMPORT, import_id)
        await holder.rollback()
    await other.work(runtime, import_id)
    async with runtime.unit_of_work(MessageContext(import_id, "test")) as uow:
        done, _ = await uow.load(ORDER_IMPORT, import_id)

    assert (held.status, held.orders_done) == ("queued", 0)
    assert (done.status, done.orders_accepted) == ("completed", 3)
