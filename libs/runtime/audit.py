"""The audit trail of a service: who did what and when, read from its event store.

Every event row carries the envelope's actor and correlation id and, for work an authenticated
caller asked for, that caller's audit metadata (AuditMetadata: subject, role, API key id,
request id, source address). `GET /audit` filters them by actor, aggregate and time.

Answers are newest first (what an operator investigating asks for first), ordered by
(occurred_at, global_position): occurred_at is when the unit of work that recorded the event
began, global_position breaks ties between events recorded together. `from` is inclusive,
`to` exclusive. Pages follow an opaque cursor; a transaction that commits after a reader has
paged past its time is not shown to that reader (it is to the next query).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from libs.events import DomainEvent, registry
from libs.runtime.db import driver_connection, sql
from libs.runtime.eventstore import AuditMetadata

MAX_LIMIT = 500


class AuditEntry(BaseModel):
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    version: int
    occurred_at: datetime
    actor: str = Field(description="user:<subject>, key:<api key id>, channel:<name> or service:<name>")
    subject: str | None = Field(
        description="The authenticated caller's subject; null for work a service did by itself"
    )
    role: str | None
    api_key_id: str | None
    request_id: str | None
    source_address: str | None
    correlation_id: str
    causation_id: str | None = Field(description="The message this event reacted to, if any")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last"
    )


@dataclass(frozen=True)
class Cursor:
    """The (occurred_at, global_position) of the last entry of a page."""

    occurred_at: datetime
    global_position: int

    def encode(self) -> str:
        raw = f"{self.occurred_at.isoformat()}|{self.global_position}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError for anything `encode` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            occurred_at, position = raw.split("|")
            when = datetime.fromisoformat(occurred_at)
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise ValueError("not a cursor this service gave out") from error
        if when.tzinfo is None or when.utcoffset() or not position.isdigit() or len(position) > 18:
            raise ValueError("not a cursor this service gave out")
        return cls(when, int(position))


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    aggregate_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after: Cursor | None = None
    limit: int = 100


def _aggregate_types() -> list[str]:
    """Every kind of stream an event can belong to. A stream id is "<type>-<id>", so an
    aggregate id alone becomes one stream id per type, each a primary-key lookup: no index
    on the plain id (and no cost on the append path) is needed."""
    return sorted({m.aggregate_type for m in registry.all() if issubclass(m, DomainEvent)})


async def audit_trail(db: asyncpg.Connection, query: AuditQuery) -> AuditPage:
    conditions: list[str] = []
    params: dict[str, Any] = {"limit": query.limit + 1}  # one more: is there a next page?
    if query.actor is not None:
        conditions.append("actor = :actor")
        params["actor"] = query.actor
        if not query.actor.startswith("service:"):
            # A caller's events always carry metadata: this lets the partial index
            # events_by_caller answer (events recorded before audit metadata existed are
            # found by aggregate).
            conditions.append("metadata IS NOT NULL")
    if query.aggregate_id is not None:
        conditions.append("stream_id = ANY(CAST(:streams AS text[]))")
        params["streams"] = [f"{kind}-{query.aggregate_id}" for kind in _aggregate_types()]
    if query.since is not None:
        conditions.append("occurred_at >= :since")
        params["since"] = query.since
    if query.until is not None:
        conditions.append("occurred_at < :until")
        params["until"] = query.until
    if query.after is not None:
        conditions.append("(occurred_at, global_position) < (:after_at, :after_position)")
        params["after_at"] = query.after.occurred_at
        params["after_position"] = query.after.global_position
    # Only the filters given appear in the statement, so each combination gets a plan that
    # uses its index (events_by_caller, events_by_time_brin or the primary key).
    statement = sql(
        "SELECT global_position, event_id, event_type, stream_type, stream_id, version,"
        " occurred_at, actor, correlation_id, causation_id, metadata FROM events"
        + (" WHERE " + " AND ".join(conditions) if conditions else "")
        + " ORDER BY occurred_at DESC, global_position DESC LIMIT :limit"
    )
    rows = await statement.fetch(db, params)
    page, more = rows[: query.limit], len(rows) > query.limit
    return AuditPage(
        items=[_entry(row) for row in page],
        next_cursor=Cursor(page[-1]["occurred_at"], page[-1]["global_position"]).encode() if more else None,
    )


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    audit = AuditMetadata.from_json(row["metadata"]) or AuditMetadata()
    return AuditEntry(
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        aggregate_type=row["stream_type"],
        aggregate_id=row["stream_id"][len(row["stream_type"]) + 1 :],
        version=row["version"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        subject=audit.subject,
        role=audit.role,
        api_key_id=audit.api_key_id,
        request_id=audit.request_id,
        source_address=audit.source_address,
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
    )


def _invalid(field: str, message: str) -> RequestValidationError:
    """The same 422 problem FastAPI gives for a malformed parameter, naming the field."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": message, "input": None}]
    )


def _utc(field: str, moment: datetime | None) -> datetime | None:
    """The moment in UTC; one without an offset is taken as UTC already."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable moment
        raise _invalid(field, "is out of range") from None


def _text(field: str, value: str | None) -> str | None:
    if value is not None and "\x00" in value:  # no stored text can hold one
        raise _invalid(field, "must not contain NUL characters")
    return value


def audit_router() -> APIRouter:
    """`GET /audit`; the app that includes it decides who may call it."""
    router = APIRouter(tags=["audit"])

    @router.get("/audit")
    async def audit(
        request: Request,
        actor: Annotated[str | None, Query(max_length=200, description="e.g. user:alice or key:<id>")] = None,
        aggregate_id: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[
            datetime | None, Query(alias="from", description="ISO 8601; inclusive; UTC if no offset")
        ] = None,
        until: Annotated[
            datetime | None, Query(alias="to", description="ISO 8601; exclusive; UTC if no offset")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> AuditPage:
        """Who did what and when in this service, newest first."""
        actor, aggregate_id = _text("actor", actor), _text("aggregate_id", aggregate_id)
        since, until = _utc("from", since), _utc("to", until)
        if since is not None and until is not None and until <= since:
            raise _invalid("to", "must be after from")
        try:
            after = Cursor.decode(cursor) if cursor is not None else None
        except ValueError as error:
            raise _invalid("cursor", str(error)) from None
        query = AuditQuery(actor, aggregate_id, since, until, after, limit)
        async with request.app.state.runtime.engine.connect() as conn:
            return await audit_trail(await driver_connection(conn), query)

    return router
