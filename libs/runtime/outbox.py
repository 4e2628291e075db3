"""Transactional outbox: messages to publish are rows written in the same transaction as the
events that caused them. NOTIFY wakes the relay as soon as that transaction commits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import Envelope, encode

NOTIFY_CHANNEL = "ordermesh_outbox"


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    envelope: Envelope
    headers: Mapping[str, str] = field(default_factory=dict)


async def put(conn: AsyncConnection, messages: Sequence[OutgoingMessage]) -> None:
    if not messages:
        return
    await conn.execute(
        text(
            "INSERT INTO outbox (topic, key, value, headers)"
            " VALUES (:topic, :key, :value, CAST(:headers AS jsonb))"
        ),
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


async def wake_relay(conn: AsyncConnection) -> None:
    """Tell the relay there is work. Delivered only when the transaction commits, so it never
    looks for rows it cannot see yet; one per transaction is enough."""
    await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


async def backlog(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())
