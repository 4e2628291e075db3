"""Order file imports: record an upload, then place its orders in the background, a batch per
transaction, through the same `OrderHandlers.place` as POST /orders and the intake.

Nothing of an import lives only in memory. The upload records OrderImportStarted and keeps
the file's bytes in `order_import_files` in one transaction; each batch places its orders and
records how far the import got (OrderImportProgressed) in one transaction. A service that
stops mid-import finds the unfinished row on start and goes on after the last batch that
committed; a batch that did not commit placed nothing. Replicas share the work through a row
lock (SKIP LOCKED): one works an import at a time.

Each order is submitted with an idempotency key derived from the file's digest and its
external reference (domain/imports.py, import_key) and with the reference as its external id:
the same file uploaded again finds every order placed the first time, and a corrected file
finds the orders that did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import text

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.order_imports import (
    ImportFormat,
    OrderImportCompleted,
    OrderImportFailed,
    OrderImportProgressed,
    OrderImportRead,
    OrderImportStarted,
    RejectedRow,
)
from libs.runtime.db import is_transient
from libs.runtime.service import ServiceRuntime
from libs.runtime.uow import MessageContext, UnitOfWork, retry_on_conflict, unit_of_work
from services.order.adapters.import_files import UnreadableFile, read_file
from services.order.app.handlers import OrderHandlers
from services.order.domain.imports import ORDER_IMPORT, OrderImport, ReadFile, header_problems, read_orders

log = logging.getLogger(__name__)

ACTOR = "service:order-imports"
BatchOutcome = Literal["more", "done", "busy"]


def digest_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class OrderImports:
    handlers: OrderHandlers
    # Orders per transaction: large enough that the commit is not the cost, small enough that
    # progress shows and a conflict retries little (and place()'s look for a duplicate among
    # the orders placed earlier in the same transaction, which grows with it, stays short).
    batch_size: int = 50
    # Set when this process starts an import, so its loop begins at once instead of polling.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(
        self,
        uow: UnitOfWork,
        import_id: str,
        file_name: str,
        file_format: ImportFormat,
        content: bytes,
        channel: str,
        channel_only: bool,
    ) -> OrderImportStarted:
        started = OrderImportStarted(
            import_id=import_id,
            file_name=file_name[:255],
            file_format=file_format,
            file_digest=digest_of(content),
            file_size=len(content),
            channel=channel,
            channel_only=channel_only,
            uploaded_by=uow.context.actor[:200],
        )
        await uow.record(ORDER_IMPORT, import_id, 0, [started])
        await uow.conn.execute(
            text("INSERT INTO order_import_files (import_id, file_digest, content) VALUES (:i, :d, :c)"),
            {"i": import_id, "d": started.file_digest, "c": content},
        )
        uow.after_commit(self.wake.set)
        return started

    async def run(self, runtime: ServiceRuntime, poll_seconds: float) -> None:
        """The background loop: work every unfinished import, oldest first; then wait for an
        upload here or the next poll (an upload to another replica)."""
        pause = poll_seconds
        while True:
            self.wake.clear()
            failed = False
            try:
                unfinished = await self._unfinished(runtime)
            except Exception as error:
                unfinished, failed = [], True
                log.warning("order imports: listing them failed: %s", error, exc_info=not is_transient(error))
            for import_id in unfinished:
                try:
                    await self.work(runtime, import_id)
                except Exception as error:
                    # One import that fails (the database away, a bug its file meets) must
                    # not hold up the others: each is tried again after the pause.
                    failed = True
                    log.warning(
                        "order import %s failed; trying again later: %s",
                        import_id,
                        error,
                        exc_info=not is_transient(error),
                    )
            pause = min(pause * 2, 30.0) if failed else poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=pause)

    async def _unfinished(self, runtime: ServiceRuntime) -> list[str]:
        async with runtime.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT import_id FROM order_import_files WHERE finished_at IS NULL ORDER BY created_at")
            )
            return [row.import_id for row in rows]

    async def work(self, runtime: ServiceRuntime, import_id: str) -> None:
        """Place the import's orders from where it stands until it is done (or another replica
        holds it)."""
        state = await self._state(runtime, import_id)
        started = state.started
        if started is None or state.finished:
            return
        async with runtime.engine.connect() as conn:
            content = (
                await conn.execute(
                    text("SELECT content FROM order_import_files WHERE import_id = :i"), {"i": import_id}
                )
            ).scalar()
        if content is None:
            return
        try:
            # CPU-bound (openpyxl above all): off the event loop, so HTTP and consumers go on.
            parsed: ReadFile | str = await asyncio.to_thread(parse_upload, content, started)
        except UnreadableFile as error:
            parsed = str(error)
        while True:
            outcome = await retry_on_conflict(lambda: self.next_batch(runtime, import_id, parsed))
            if outcome != "more":
                return

    async def _state(self, runtime: ServiceRuntime, import_id: str) -> OrderImport:
        # From the store: a cached state another replica moved on would fail its check.
        async with unit_of_work(runtime.engine, MessageContext(import_id, ACTOR)) as uow:
            state, _ = await uow.load(ORDER_IMPORT, import_id)
        return state

    async def next_batch(
        self, runtime: ServiceRuntime, import_id: str, parsed: ReadFile | str
    ) -> BatchOutcome:
        async with runtime.unit_of_work(MessageContext(import_id, ACTOR)) as uow:
            locked = (
                await uow.conn.execute(
                    text(
                        "SELECT 1 FROM order_import_files WHERE import_id = :i AND finished_at IS NULL"
                        " FOR UPDATE SKIP LOCKED"
                    ),
                    {"i": import_id},
                )
            ).first()
            if locked is None:
                return "busy"  # finished, or another replica works it now
            state, version = await uow.load(ORDER_IMPORT, import_id)
            if state.started is None or state.finished:
                return "done"
            if isinstance(parsed, str):
                events: list[DomainEvent] = [OrderImportFailed(import_id=import_id, reason=parsed[:1000])]
            else:
                events = await self._place_batch(uow, state, parsed)
            done = isinstance(events[-1], OrderImportCompleted | OrderImportFailed)
            uow.context = MessageContext(import_id, ACTOR)
            await uow.record(ORDER_IMPORT, import_id, version, events)
            if done:
                # The bytes served their purpose; the report lives on in the events.
                await uow.conn.execute(
                    text(
                        "UPDATE order_import_files SET finished_at = now(), content = NULL"
                        " WHERE import_id = :i"
                    ),
                    {"i": import_id},
                )
        if done:
            log.info("order import %s finished", import_id)
        return "done" if done else "more"

    async def _place_batch(self, uow: UnitOfWork, state: OrderImport, parsed: ReadFile) -> list[DomainEvent]:
        started = state.started
        if started is None:
            raise ValueError(f"order import {state.import_id} was never started")
        import_id = state.import_id
        events: list[DomainEvent] = []
        if state.rows_read is None:
            events.append(
                OrderImportRead(
                    import_id=import_id,
                    rows_read=parsed.rows_read,
                    orders_found=len(parsed.orders),
                    rejected=parsed.ungrouped,
                )
            )
        batch = parsed.orders[state.orders_done : state.orders_done + self.batch_size]
        accepted = already = refused = 0
        rejected: list[RejectedRow] = []
        for draft in batch:
            submission = draft.submission
            if submission is None:
                refused += 1
                rejected += draft.rejected
                continue
            # Each order under its own correlation (as POST /orders), placed as the uploader.
            uow.context = MessageContext(submission.idempotency_key or import_id, started.uploaded_by)
            try:
                # No savepoint needed (it cost two round trips an order): place() refuses
                # (idempotency_conflict) before it writes anything.
                placement = await self.handlers.place(uow, submission)
            except DomainError as error:
                refused += 1
                rejected += [
                    RejectedRow(
                        row=row,
                        column="external_reference",
                        message=error.message[:500],
                        external_reference=draft.reference[:200],
                    )
                    for row in draft.rows
                ]
                continue
            if placement.created:
                accepted += 1
            else:
                already += 1
        if batch:
            events.append(
                OrderImportProgressed(
                    import_id=import_id,
                    orders_done=state.orders_done + len(batch),
                    rows_done=state.rows_done + sum(len(draft.rows) for draft in batch),
                    orders_accepted=accepted,
                    orders_already_imported=already,
                    orders_rejected=refused,
                    rejected=tuple(rejected),
                )
            )
        if state.orders_done + len(batch) >= len(parsed.orders):
            events.append(OrderImportCompleted(import_id=import_id))
        return events


def parse_upload(content: bytes, started: OrderImportStarted) -> ReadFile:
    header, rows = read_file(content, started.file_format)
    problems = header_problems(header)
    if problems:  # the upload checks the header; this is for a file stored before a rule changed
        raise UnreadableFile("; ".join(f"{p.column}: {p.message}" for p in problems))
    return read_orders(
        header,
        rows,
        file_digest=started.file_digest,
        channel=started.channel,
        channel_only=started.channel_only,
    )


# An upload to this process starts at once (wake); one to another replica within this.
IMPORT_POLL_SECONDS = 2.0


def install(runtime: ServiceRuntime, handlers: OrderHandlers) -> OrderImports:
    """The imports of a service, with their background loop registered on its runtime."""
    imports = OrderImports(handlers)

    async def order_imports() -> None:
        await imports.run(runtime, IMPORT_POLL_SECONDS)

    runtime.background.append(order_imports)
    return imports
