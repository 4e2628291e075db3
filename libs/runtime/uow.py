"""Unit of work: one database transaction in which a handler loads aggregates, appends their
new events, queues outgoing messages and (for consumers) records the inbox row."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.domain import AggregateKind
from libs.events import Command, DomainEvent, Envelope, make_envelope, registry
from libs.runtime import eventstore, outbox
from libs.runtime.db import ConcurrencyConflict
from libs.runtime.telemetry import trace_headers

State = TypeVar("State")

# Updates the service's query tables from one just-appended event, inside the same
# transaction, so read models never lag their events (and can be rebuilt by replaying).
Projector = Callable[[AsyncConnection, Envelope, DomainEvent], Awaitable[None]]


@dataclass(frozen=True)
class MessageContext:
    """Who and what caused the work: copied into every envelope the work produces."""

    correlation_id: str
    actor: str
    causation_id: str | None = None

    @classmethod
    def caused_by(cls, envelope: Envelope, actor: str) -> MessageContext:
        return cls(envelope.correlation_id, actor, str(envelope.event_id))


@dataclass
class UnitOfWork:
    conn: AsyncConnection
    context: MessageContext
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    appended: list[Envelope] = field(default_factory=list)
    projector: Projector | None = None

    async def load(self, kind: AggregateKind[State], aggregate_id: str) -> tuple[State, int]:
        """Rebuild an aggregate; returns its state and version (0 if it does not exist)."""
        envelopes = await eventstore.read_stream(self.conn, kind.stream_id(aggregate_id))
        events = [
            registry.load(e.event_type, e.event_version, e.payload) for e in envelopes
        ]
        return kind.replay(events), len(envelopes)  # type: ignore[arg-type]

    async def history(self, kind: AggregateKind[State], aggregate_id: str) -> list[Envelope]:
        return await eventstore.read_stream(self.conn, kind.stream_id(aggregate_id))

    async def record(
        self,
        kind: AggregateKind[State],
        aggregate_id: str,
        expected_version: int,
        events: Sequence[DomainEvent],
    ) -> int:
        """Append events after `expected_version` and queue them for publication.

        Raises ConcurrencyConflict if the stream moved on since it was loaded.
        """
        envelopes = [
            make_envelope(
                event,
                event_id=uuid4(),
                aggregate_id=aggregate_id,
                aggregate_version=expected_version + offset,
                occurred_at=self.now,
                correlation_id=self.context.correlation_id,
                causation_id=self.context.causation_id,
                actor=self.context.actor,
            )
            for offset, event in enumerate(events, start=1)
        ]
        await eventstore.append(self.conn, envelopes)
        if self.projector is not None:
            for event, envelope in zip(events, envelopes):
                await self.projector(self.conn, envelope, event)
        headers = trace_headers()
        await outbox.put(
            self.conn,
            [outbox.OutgoingMessage(e.topic, env, headers) for e, env in zip(events, envelopes)],
        )
        self.appended.extend(envelopes)
        return expected_version + len(envelopes)

    async def send(self, command: Command, key: str, command_id: UUID | None = None) -> Envelope:
        """Queue a command for a participant service. A deterministic command_id makes a
        re-sent command (a retried compensation, say) deduplicate at the receiver."""
        envelope = make_envelope(
            command,
            event_id=command_id or uuid4(),
            aggregate_id=key,
            aggregate_version=0,
            occurred_at=self.now,
            correlation_id=self.context.correlation_id,
            causation_id=self.context.causation_id,
            actor=self.context.actor,
        )
        await outbox.put(self.conn, [outbox.OutgoingMessage(command.topic, envelope, trace_headers())])
        return envelope


@asynccontextmanager
async def unit_of_work(
    engine: AsyncEngine,
    context: MessageContext,
    now: datetime | None = None,
    projector: Projector | None = None,
) -> AsyncIterator[UnitOfWork]:
    async with engine.begin() as conn:
        yield UnitOfWork(conn, context, now or datetime.now(UTC), projector=projector)


async def retry_on_conflict(
    work: Callable[[], Awaitable[State]], attempts: int = 20
) -> State:
    """Run a unit of work again when another writer changed the same aggregate first."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")
