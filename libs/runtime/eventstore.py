"""Event store on PostgreSQL: append with expected version, read a stream, read all in commit order."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.events import Envelope
from libs.events.codec import encode_payload, parse_json
from libs.runtime.db import ConcurrencyConflict, Sql

_COLUMNS = (
    "event_id, event_type, event_version, stream_type, stream_id, version, occurred_at,"
    " correlation_id, causation_id, actor, payload"
)


@dataclass(frozen=True)
class AuditMetadata:
    """Who asked for the work that recorded an event, beyond the envelope's `actor`: kept in
    the event's row (the `metadata` column) for the audit trail, never published on Kafka,
    whose envelope is a public contract. Work a service does by itself (consuming, deadlines)
    has none."""

    subject: str | None = None
    # The role(s) the caller acted under; several are joined with ",".
    role: str | None = None
    api_key_id: str | None = None
    request_id: str | None = None
    source_address: str | None = None

    @cached_property
    def as_json(self) -> str:
        """The row's `metadata` document; built once, since every event a command records
        carries the same one."""
        document = {name: getattr(self, name) for name in _AUDIT_FIELDS}
        return json.dumps({k: v for k, v in document.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | str | None) -> AuditMetadata | None:
        if document is None:
            return None
        fields = json.loads(document) if isinstance(document, str) else document
        return cls(**{name: fields.get(name) for name in _AUDIT_FIELDS})


_AUDIT_FIELDS = ("subject", "role", "api_key_id", "request_id", "source_address")


@dataclass(frozen=True, order=True)
class Position:
    """Where a catch-up reader is in the store's commit order."""

    transaction_id: int = 0
    global_position: int = 0


@dataclass(frozen=True)
class StoredEvent:
    position: Position
    envelope: Envelope


def _to_envelope(row: Mapping[str, Any]) -> Envelope:
    payload = row["payload"] if isinstance(row["payload"], dict) else parse_json(row["payload"])
    return Envelope(
        event_id=row["event_id"],
        event_type=row["event_type"],
        event_version=row["event_version"],
        aggregate_type=row["stream_type"],
        # Stream ids are "<aggregate type>-<aggregate id>"; the envelope carries the plain id.
        aggregate_id=row["stream_id"][len(row["stream_type"]) + 1 :],
        aggregate_version=row["version"],
        occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        actor=row["actor"],
        payload=payload,
    )


_INSERT = Sql(
    f"INSERT INTO events ({_COLUMNS}, metadata) VALUES (:event_id, :event_type, :event_version,"
    " :stream_type, :stream_id, :version, :occurred_at, :correlation_id, :causation_id,"
    " :actor, CAST(:payload AS jsonb), CAST(:metadata AS jsonb))"
)
_READ_STREAM = Sql(
    f"SELECT {_COLUMNS} FROM events WHERE stream_id = :stream AND version > :after ORDER BY version"
)


async def append(
    db: asyncpg.Connection,
    envelopes: Sequence[Envelope],
    audit: Sequence[AuditMetadata | None] | None = None,
) -> dict[str, int]:
    """Append events; each envelope's aggregate_version is the version it creates, and
    `audit[i]` (if given) is who asked for envelope i. Returns the JSON size of what each
    stream got (what the aggregate cache weighs entries by).

    Versions of one stream must follow on from what the writer loaded. If another writer got
    there first the primary key (stream_id, version) rejects the row and we raise
    ConcurrencyConflict; the caller's transaction is then unusable and must be retried.
    """
    if not envelopes:
        return {}
    if audit is None:
        audit = [None] * len(envelopes)
    elif len(audit) != len(envelopes):
        raise ValueError(f"{len(audit)} audit entries for {len(envelopes)} events")
    rows = [
        {
            "event_id": e.event_id,
            "event_type": e.event_type,
            "event_version": e.event_version,
            "stream_type": e.aggregate_type,
            "stream_id": f"{e.aggregate_type}-{e.aggregate_id}",
            "version": e.aggregate_version,
            "occurred_at": e.occurred_at,
            "correlation_id": e.correlation_id,
            "causation_id": e.causation_id,
            "actor": e.actor,
            "payload": encode_payload(e.payload),
            "metadata": a.as_json if a is not None else None,
        }
        for e, a in zip(envelopes, audit, strict=True)
    ]
    try:
        await _INSERT.execute_many(db, rows)
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "events_pkey":
            streams = sorted({f"{e.aggregate_type}-{e.aggregate_id}" for e in envelopes})
            raise ConcurrencyConflict(f"stream(s) {streams} were changed concurrently") from error
        raise
    sizes: dict[str, int] = {}
    for row in rows:
        stream_id, payload = str(row["stream_id"]), str(row["payload"])
        sizes[stream_id] = sizes.get(stream_id, 0) + len(payload)
    return sizes


_STREAM_VERSIONS = Sql(
    "SELECT stream_id, max(version) AS version FROM events"
    " WHERE stream_id = ANY(CAST(:streams AS text[])) GROUP BY stream_id"
)


async def stream_versions(db: asyncpg.Connection, stream_ids: Sequence[str]) -> dict[str, int]:
    """The current version of several streams in one round trip (an index-only lookup on the
    primary key); a stream without events is absent."""
    return {
        row["stream_id"]: row["version"]
        for row in await _STREAM_VERSIONS.fetch(db, {"streams": list(stream_ids)})
    }


async def read_stream(db: asyncpg.Connection, stream_id: str, after_version: int = 0) -> list[Envelope]:
    return [
        _to_envelope(row)
        for row in await _READ_STREAM.fetch(db, {"stream": stream_id, "after": after_version})
    ]


_READ_STREAMS = Sql(
    f"SELECT {_COLUMNS} FROM events WHERE stream_id = ANY(CAST(:streams AS text[]))"
    " ORDER BY stream_id, version"
)


# Only the events after a version per stream: catching up cached states that fell behind.
_READ_STREAMS_AFTER = Sql(
    f"SELECT {_COLUMNS} FROM events JOIN unnest(CAST(:streams AS text[]), CAST(:afters AS int[]))"
    " AS wanted(wanted_stream, after_version)"
    " ON stream_id = wanted_stream AND version > after_version ORDER BY stream_id, version"
)


async def read_streams(
    db: asyncpg.Connection, stream_ids: Sequence[str], after: Mapping[str, int] | None = None
) -> dict[str, list[Envelope]]:
    """Several streams in one round trip, each from the start or from after its version in
    `after`; a stream without (such) events is absent."""
    if after:
        afters = [after.get(s, 0) for s in stream_ids]
        rows = await _READ_STREAMS_AFTER.fetch(db, {"streams": list(stream_ids), "afters": afters})
    else:
        rows = await _READ_STREAMS.fetch(db, {"streams": list(stream_ids)})
    found: dict[str, list[Envelope]] = {}
    for row in rows:
        found.setdefault(row["stream_id"], []).append(_to_envelope(row))
    return found


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    result = await conn.execute(
        text("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = :s"), {"s": stream_id}
    )
    return int(result.scalar_one())


async def read_all(
    conn: AsyncConnection, after: Position = Position(), limit: int = 1000
) -> list[StoredEvent]:
    """Events in commit order after `after`, stopping short of any transaction still open.

    Rows of a transaction that is still running (or any younger one) are not returned yet:
    pg_snapshot_xmin is the oldest transaction still in progress, and everything below it has
    either committed or rolled back, so nothing can appear behind the reader later.
    """
    result = await conn.execute(
        text(
            f"SELECT transaction_id::text::bigint AS tx, global_position, {_COLUMNS} FROM events"
            " WHERE (transaction_id, global_position) > (CAST(:tx AS text)::xid8, :gp)"
            " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
            " ORDER BY transaction_id, global_position LIMIT :limit"
        ),
        {"tx": str(after.transaction_id), "gp": after.global_position, "limit": limit},
    )
    return [
        StoredEvent(Position(int(row.tx), int(row.global_position)), _to_envelope(dict(row._mapping)))
        for row in result
    ]
