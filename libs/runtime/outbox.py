"""Transactional outbox: messages to publish are rows written in the same transaction as the
events that caused them.

A row is either claimed by a live publisher process (libs/runtime/publisher.py: the process
that commits it publishes it right after the commit) or left to the relay (`publisher` NULL;
NOTIFY wakes the relay as soon as the transaction commits). See the publisher module for why
a row is claimed only when no earlier row of its key waits under someone else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import Envelope, encode

NOTIFY_CHANNEL = "ordermesh_outbox"


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    envelope: Envelope
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxRow:
    """A written row, as the publisher sends it."""

    id: int
    topic: str
    key: str
    value: bytes
    headers: Mapping[str, str]


# One statement for the whole batch. Ids are drawn in the messages' order (the ordered
# subquery), so the n-th smallest id returned is the n-th message. A row is claimed by
# $5 only if no row of its key is still in the outbox under anyone else: the statement's
# snapshot shows every committed row, and a later writer of a key can only act on an
# earlier one after it committed.
_INSERT = (
    "INSERT INTO outbox (id, topic, key, value, headers, publisher)"
    " SELECT nextval('outbox_id_seq'), m.topic, m.key, m.value, m.headers::jsonb,"
    "  CASE WHEN $5::integer IS NOT NULL AND NOT EXISTS ("
    "    SELECT 1 FROM outbox o WHERE o.key = m.key AND o.publisher IS DISTINCT FROM $5::integer"
    "  ) THEN $5::integer END"
    " FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])"
    "       WITH ORDINALITY AS u(topic, key, value, headers, n) ORDER BY n) AS m"
    " RETURNING id, publisher"
)


async def put(
    db: asyncpg.Connection, messages: Sequence[OutgoingMessage], claim_as: int | None = None
) -> tuple[list[OutboxRow], bool]:
    """Write `messages`; returns the rows claimed by `claim_as` (for it to publish after the
    commit) and whether any row was left to the relay."""
    if not messages:
        return [], False
    topics = [m.topic for m in messages]
    keys = [m.envelope.aggregate_id for m in messages]
    values = [encode(m.envelope) for m in messages]
    headers = [{**m.headers, "event_type": m.envelope.event_type} for m in messages]
    written = sorted(
        await db.fetch(_INSERT, topics, keys, values, [json.dumps(h) for h in headers], claim_as),
        key=lambda r: r["id"],
    )
    claimed: list[OutboxRow] = []
    for n, row in enumerate(written):
        if claim_as is not None and row["publisher"] == claim_as:
            claimed.append(OutboxRow(row["id"], topics[n], keys[n], values[n], headers[n]))
    return claimed, len(claimed) < len(written)


async def wake_relay(db: asyncpg.Connection) -> None:
    """Tell the relay there is work. Delivered only when the transaction commits, so it never
    looks for rows it cannot see yet; one per transaction is enough."""
    await db.execute(f"NOTIFY {NOTIFY_CHANNEL}")


async def backlog(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())
