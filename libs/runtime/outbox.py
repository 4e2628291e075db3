"""Transactional outbox: messages to publish are rows written in the same transaction as the
events that caused them. NOTIFY wakes the relay as soon as that transaction commits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import Envelope, encode
from libs.runtime.db import Sql

NOTIFY_CHANNEL = "ordermesh_outbox"


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    envelope: Envelope
    headers: Mapping[str, str] = field(default_factory=dict)


_INSERT = Sql(
    "INSERT INTO outbox (topic, key, value, headers) VALUES (:topic, :key, :value, CAST(:headers AS jsonb))"
)


async def put(db: asyncpg.Connection, messages: Sequence[OutgoingMessage]) -> None:
    if not messages:
        return
    await _INSERT.execute_many(
        db,
        [
            {
                "topic": m.topic,
                "key": m.envelope.aggregate_id,
                "value": encode(m.envelope),
                "headers": json.dumps({**m.headers, "event_type": m.envelope.event_type}),
            }
            for m in messages
        ],
    )


async def wake_relay(db: asyncpg.Connection) -> None:
    """Tell the relay there is work. Delivered only when the transaction commits, so it never
    looks for rows it cannot see yet; one per transaction is enough."""
    await db.execute(f"NOTIFY {NOTIFY_CHANNEL}")


async def backlog(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())
