"""Inbox: a consumer records each message it handled in the same transaction as its effects."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.runtime.db import Sql


async def claim(conn: AsyncConnection, consumer: str, event_id: UUID) -> bool:
    """Mark the message handled by `consumer`; False if it was handled before (a duplicate).

    The row only persists if the caller's transaction commits, so a crash before commit leaves
    the message unclaimed and its redelivery is handled normally.
    """
    result = await conn.execute(
        text("INSERT INTO inbox (consumer, event_id) VALUES (:c, :e) ON CONFLICT DO NOTHING"),
        {"c": consumer, "e": event_id},
    )
    return bool(result.rowcount)


_CLAIM_ALL = Sql(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[]))"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim_all(db: asyncpg.Connection, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """claim() for a whole consumed batch in one statement: the ids not handled before."""
    rows = await _CLAIM_ALL.fetch(db, {"consumer": consumer, "ids": event_ids})
    return {row["event_id"] for row in rows}
