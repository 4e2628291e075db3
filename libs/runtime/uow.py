"""Unit of work: one database transaction in which a handler loads aggregates, appends their
new events, queues outgoing messages and (for consumers) records the inbox row.

Writes are deferred: recording an event, sending a command and projecting into the read model
only queue rows in memory, and `flush` (run just before the commit) writes them with one
statement per kind: events, read-model layers (libs.runtime.writes), outbox, NOTIFY. A consumed
batch of many messages thus costs a handful of round trips instead of a dozen per message. The
concurrency check is unchanged, only later: the event rows' (stream_id, version) key rejects a
stale append at flush, and the whole unit of work is retried.

Outbox rows the process's after-commit publisher claimed (libs/runtime/publisher.py) are
handed to it around the COMMIT: a place in line just before, the go just after.

What goes to the outbox of the events recorded is the service's Publication: by default its
published domain events (a private one, `published = False`, stays in the store); with an
integration translator, what the translator derives from each aggregate's change in the unit
of work (called once per aggregate at flush, with the state before and after); with
OM_PUBLIC_EVENTS_ONLY=false, every event, as before private events existed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.domain import AggregateKind, DomainError
from libs.events import DomainEvent, Envelope, Message, make_envelope, registry
from libs.events.codec import encode_payload
from libs.runtime import eventstore, faults, outbox
from libs.runtime.db import ConcurrencyConflict, driver_connection, retire_connection
from libs.runtime.eventstore import AuditMetadata as AuditMetadata  # what handlers build contexts from
from libs.runtime.publisher import AfterCommitPublisher, Reservation
from libs.runtime.telemetry import trace_headers
from libs.runtime.writes import WriteBatch

log = logging.getLogger(__name__)
State = TypeVar("State")
T = TypeVar("T")

# Queues the changes one just-recorded event makes to the service's query tables; they are
# written in the same transaction, so read models never lag their events (and can be rebuilt
# by replaying).
Projector = Callable[[WriteBatch, Envelope, DomainEvent], None]


@dataclass(frozen=True)
class AggregateChange(Generic[State]):
    """What one unit of work did to one aggregate: the events it recorded (with their stored
    envelopes) and the aggregate's state before the first of them and after the last."""

    kind: AggregateKind[State]
    aggregate_id: str
    events: tuple[DomainEvent, ...]
    envelopes: tuple[Envelope, ...]
    before: State
    after: State


# The public messages of one aggregate's change, in the order they are published: any of the
# change's own events (sent in the envelope they were stored in) and integration events derived
# from it (sent in a new envelope at the stream position the change reached). Pure: no I/O.
IntegrationTranslator = Callable[[AggregateChange[Any]], Sequence[Message]]


def published_events(change: AggregateChange[Any]) -> list[Message]:
    """The change's events that are public as they are: a translator's answer for aggregates
    it has nothing to derive from."""
    return [event for event in change.events if event.published]


@dataclass(frozen=True)
class Publication:
    """What a service publishes of the events it records. `public_only` false: every event
    (no translator), as before private events existed; to measure what they cost."""

    public_only: bool = True
    translator: IntegrationTranslator | None = None


@dataclass
class _PendingChange:
    """One aggregate's events recorded since the last flush, waiting for the translator; the
    context and headers of the last record call go on the messages derived from them."""

    kind: AggregateKind[Any]
    aggregate_id: str
    expected_version: int
    before: Any | None  # None: recorded without a load at expected_version (read at flush)
    events: list[DomainEvent]
    envelopes: list[Envelope]
    context: MessageContext
    headers: dict[str, str]


@dataclass(frozen=True)
class MessageContext:
    """Who and what caused the work: copied into every envelope the work produces. `audit`
    (an authenticated caller's details) goes into the rows of the events it records only."""

    correlation_id: str
    actor: str
    causation_id: str | None = None
    audit: AuditMetadata | None = None

    @classmethod
    def caused_by(cls, envelope: Envelope, actor: str) -> MessageContext:
        """The context of a reaction to `envelope`: the service acts by itself (no audit
        metadata) within the causing message's correlation."""
        return cls(envelope.correlation_id, actor, str(envelope.event_id))


class AggregateCache:
    """Aggregate states this process has loaded or written, by stream, with their version.

    Never trusted blindly: a unit of work that served a state from here checks, before it
    commits, that the stream is still at that version (one query for all such streams; none
    when it appends to them, because the append's (stream_id, version) key is the check).
    Another replica may have moved the stream on meanwhile: after a partition moved away and
    back, or when an HTTP command or a deadline ran there. Then the entry is marked behind and
    the work retried: a stale copy can never decide anything, not even to do nothing. Only
    committed states enter it.

    An entry that is behind is still the true state at its version (streams are append-only),
    so the retry reads only the events after it and folds them on. Without that, a hot stream
    written by several replicas at once (one scarce SKU that every order of a flash sale asks
    for) is reloaded whole after every conflict: the reload takes longer as the stream grows,
    the longer window makes the next conflict likelier, and the writers stall each other
    (measured in `make chaos`, scarce-stock after rebalance-ping-pong: a receipt that never got
    through while a SKU's stream grew past 5,000 events).

    Bounded by memory, not entries: each entry is weighed by the JSON size of its events
    times OBJECT_OVERHEAD, and the least recently used go first.
    """

    # Python objects of an aggregate's state take several times the bytes of the JSON they
    # were built from (measured with tracemalloc on Orders of 3 to 200 lines: ~10x).
    OBJECT_OVERHEAD = 10

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[Any, int, int]] = OrderedDict()
        self._behind: set[str] = set()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, stream_id: str) -> tuple[Any, int] | None:
        """A state believed current (still checked before commit), or None."""
        if stream_id in self._behind:
            return None
        entry = self._entries.get(stream_id)
        if entry is None:
            return None
        self._entries.move_to_end(stream_id)
        return entry[0], entry[1]

    def behind(self, stream_id: str) -> tuple[Any, int, int] | None:
        """A state known to be behind the store: (state, version, JSON bytes of its events),
        to catch up by reading only the events after `version`."""
        if stream_id not in self._behind:
            return None
        state, version, weight = self._entries[stream_id]
        return state, version, max(weight - 256, 0) // self.OBJECT_OVERHEAD

    def weight(self, stream_id: str) -> int:
        entry = self._entries.get(stream_id)
        return entry[2] if entry is not None else 0

    def put(self, stream_id: str, state: Any, version: int, json_bytes: int) -> None:
        weight = 256 + json_bytes * self.OBJECT_OVERHEAD
        self._remove(stream_id)
        if weight > self._max_bytes:
            return  # larger than the whole cache: always read from the store
        self._entries[stream_id] = (state, version, weight)
        self._bytes += weight
        while self._bytes > self._max_bytes:
            dropped_id, (_, _, dropped) = self._entries.popitem(last=False)
            self._behind.discard(dropped_id)
            self._bytes -= dropped

    def mark_behind(self, stream_ids: Iterable[str]) -> None:
        """These streams may have moved on since their entry was made: read what followed
        before using them again."""
        self._behind.update(s for s in stream_ids if s in self._entries)

    def _remove(self, stream_id: str) -> None:
        entry = self._entries.pop(stream_id, None)
        self._behind.discard(stream_id)
        if entry is not None:
            self._bytes -= entry[2]

    def clear(self) -> None:
        self._entries.clear()
        self._behind.clear()
        self._bytes = 0


@dataclass
class UnitOfWork:
    conn: AsyncConnection
    context: MessageContext
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    appended: list[Envelope] = field(default_factory=list)
    # The events recorded so far, in order: read-your-writes for handlers, since the query
    # tables only show them after `flush`.
    recorded: list[DomainEvent] = field(default_factory=list)
    projector: Projector | None = None
    cache: AggregateCache | None = None
    # States as this unit of work sees them (loaded, then advanced by what it recorded);
    # they enter the shared cache only if the transaction commits.
    _seen: dict[str, tuple[Any, int]] = field(default_factory=dict)
    _unknown: set[str] = field(default_factory=set)
    # Streams served from the shared cache and not yet checked against the store, with the
    # version trusted; and the JSON size of each seen stream's events (the cache's weight).
    _unverified: dict[str, int] = field(default_factory=dict)
    _json_bytes: dict[str, int] = field(default_factory=dict)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)
    _before_flush: dict[Hashable, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    wrote_outbox: bool = False
    # Whether rows were left to the relay (it is woken at commit), and the rows the publisher
    # claimed with the oldest epoch they were claimed in.
    wrote_relay_rows: bool = False
    publisher: AfterCommitPublisher | None = None
    claimed: list[outbox.OutboxRow] = field(default_factory=list)
    claim_epoch: int = 0
    _claimed_in_savepoint: bool = False
    _driver: asyncpg.Connection | None = None
    _pending_events: list[Envelope] = field(default_factory=list)
    # Who asked for each pending event (the context it was recorded in), index for index.
    _pending_audit: list[AuditMetadata | None] = field(default_factory=list)
    _pending_outbox: list[outbox.OutgoingMessage] = field(default_factory=list)
    _pending_writes: WriteBatch = field(default_factory=WriteBatch)
    publication: Publication = field(default_factory=Publication)
    _pending_changes: dict[str, _PendingChange] = field(default_factory=dict)
    _memo: dict[Any, Any] = field(default_factory=dict)

    async def db(self) -> asyncpg.Connection:
        """The driver connection of this transaction, for the per-message write path."""
        if self._driver is None:
            self._driver = await driver_connection(self.conn)
        return self._driver

    async def load(self, kind: AggregateKind[State], aggregate_id: str) -> tuple[State, int]:
        """Rebuild an aggregate; returns its state and version (0 if it does not exist)."""
        stream_id = kind.stream_id(aggregate_id)
        known = self._seen.get(stream_id)
        if known is not None:
            return known
        cached = self.cache.get(stream_id) if self.cache else None
        if cached is not None:
            self._seen[stream_id] = cached
            self._unverified[stream_id] = cached[1]
            return cached
        start = self.cache.behind(stream_id) if self.cache else None
        after = start[1] if start is not None else 0
        tail = await eventstore.read_stream(await self.db(), stream_id, after_version=after)
        return self._rebuilt(kind, stream_id, start, tail)

    def _rebuilt(
        self,
        kind: AggregateKind[State],
        stream_id: str,
        start: tuple[State, int, int] | None,
        envelopes: list[Envelope],
    ) -> tuple[State, int]:
        """The state after `envelopes`, folded onto `start` (state, version, JSON bytes of
        its events: a cached state that fell behind) or onto the initial state."""
        state, version, json_bytes = start if start is not None else (kind.initial(), 0, 0)
        for e in envelopes:
            state = kind.evolve(state, registry.load(e.event_type, e.event_version, e.payload))  # type: ignore[arg-type]
        version += len(envelopes)
        self._seen[stream_id] = (state, version)
        self._json_bytes[stream_id] = json_bytes + sum(len(encode_payload(e.payload)) for e in envelopes)
        return state, version

    async def preload(self, kind: AggregateKind[State], aggregate_ids: Iterable[str]) -> None:
        """Load, in one round trip, the aggregates a batch is about to ask for one by one: the
        later load() calls then cost nothing. Most are new streams (the invoice of a new order),
        for which a load is a query that finds nothing; a cached state that fell behind reads
        only the events after it."""
        wanted = [s for s in dict.fromkeys(kind.stream_id(a) for a in aggregate_ids) if s not in self._seen]
        missing: dict[str, tuple[State, int, int] | None] = {}
        for stream_id in wanted:
            cached = self.cache.get(stream_id) if self.cache is not None else None
            if cached is None:
                missing[stream_id] = self.cache.behind(stream_id) if self.cache is not None else None
            else:  # checked at flush, with every other cached read, if nothing appends to it
                self._seen[stream_id] = cached
                self._unverified[stream_id] = cached[1]
        if not missing:
            return
        after = {s: start[1] for s, start in missing.items() if start is not None}
        found = await eventstore.read_streams(await self.db(), list(missing), after)
        for stream_id, start in missing.items():
            self._rebuilt(kind, stream_id, start, found.get(stream_id, []))

    async def _stale(self, trusted: dict[str, int]) -> set[str]:
        """Which of these streams have moved past the version we trust (one query). Those
        are marked behind in the shared cache."""
        if not trusted:
            return set()
        current = await eventstore.stream_versions(await self.db(), list(trusted))
        stale = {s for s, version in trusted.items() if current.get(s, 0) != version}
        if stale and self.cache is not None:
            self.cache.mark_behind(stale)
        return stale

    async def verify_cached_reads(self) -> None:
        """Raise ConcurrencyConflict if a state served from the cache was stale: the decision
        taken on it is void, and the work is retried on fresh state."""
        appended = {_stream_of(e) for e in self._pending_events}
        trusted = {s: v for s, v in self._unverified.items() if s not in appended}
        self._unverified = {}
        stale = await self._stale(trusted)
        if stale:
            if self.cache is not None:
                self.cache.mark_behind([*self._seen, *self._unknown])
            raise ConcurrencyConflict(f"cached state of {sorted(stale)} was stale")

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run `effect` once the transaction has committed: metrics and logs that describe an
        outcome, which must not count a rolled-back attempt (a conflict retry, a group
        commit re-run) a second time."""
        self._after_commit.append(effect)

    def before_flush(self, key: Hashable, check: Callable[[], Awaitable[None]]) -> None:
        """Run `check` once before this unit of work writes, after everything recorded up to
        then: a rule on the state an aggregate is left in, not on each step on the way (whether
        a SKU's stock is below its reorder point, say). A key registered again runs once."""
        self._before_flush.setdefault(key, check)

    def committed(self) -> None:
        if self.cache is not None:
            for stream_id, (state, version) in self._seen.items():
                self.cache.put(stream_id, state, version, self._json_bytes.get(stream_id, 0))
            self.cache.mark_behind(self._unknown)
        for effect in self._after_commit:
            try:
                effect()
            except Exception:
                log.exception("an after-commit effect failed")

    def _advance(
        self, kind: AggregateKind[State], stream_id: str, expected: int, events: Sequence[DomainEvent]
    ) -> tuple[State] | None:
        """Fold `events` onto the state seen at `expected`; returns that state before them
        (in a 1-tuple, as a state may be None), or None when it is not known here."""
        seen = self._seen.get(stream_id)
        if seen is None and self.cache is not None:
            seen = self.cache.get(stream_id)
            if seen is not None and seen[1] == expected:
                self._json_bytes.setdefault(
                    stream_id, self.cache.weight(stream_id) // AggregateCache.OBJECT_OVERHEAD
                )
        if seen is None and expected == 0:
            seen = (kind.initial(), 0)  # a new stream: its state before is the initial one
        if seen is None or seen[1] != expected:
            # Recorded without a load at that version: the new state is not known here.
            self._seen.pop(stream_id, None)
            self._unknown.add(stream_id)
            return None
        before = state = seen[0]
        for event in events:
            state = kind.evolve(state, event)
        self._seen[stream_id] = (state, expected + len(events))
        return (before,)

    async def history(self, kind: AggregateKind[State], aggregate_id: str) -> list[Envelope]:
        return await eventstore.read_stream(await self.db(), kind.stream_id(aggregate_id))

    async def record(
        self,
        kind: AggregateKind[State],
        aggregate_id: str,
        expected_version: int,
        events: Sequence[DomainEvent],
    ) -> int:
        """Append events after `expected_version` and queue them for publication.

        The append happens at `flush`: that raises ConcurrencyConflict if the stream moved on
        since it was loaded.
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
        stream_id = kind.stream_id(aggregate_id)
        before = self._advance(kind, stream_id, expected_version, events)
        self._pending_events.extend(envelopes)
        self._pending_audit.extend([self.context.audit] * len(envelopes))
        if self.projector is not None:
            for event, envelope in zip(events, envelopes, strict=True):
                self.projector(self._pending_writes, envelope, event)
        headers = self._message_headers()
        if self.publication.translator is not None and self.publication.public_only:
            pending = self._pending_changes.get(stream_id)
            if pending is None:
                self._pending_changes[stream_id] = _PendingChange(
                    kind, aggregate_id, expected_version, before[0] if before else None,
                    list(events), envelopes, self.context, headers,
                )  # fmt: skip
            else:
                pending.events.extend(events)
                pending.envelopes.extend(envelopes)
                pending.context, pending.headers = self.context, headers
        else:
            everything = not self.publication.public_only
            self._pending_outbox.extend(
                outbox.OutgoingMessage(e.topic, env, headers)
                for e, env in zip(events, envelopes, strict=True)
                if everything or e.published
            )
        self.appended.extend(envelopes)
        self.recorded.extend(events)
        return expected_version + len(envelopes)

    async def send(self, command: Message, key: str, command_id: UUID | None = None) -> Envelope:
        """Queue a command for a participant service (or another message that is not an
        event of an aggregate here: the answer to a channel's intake message). A deterministic
        command_id makes a re-sent command (a retried compensation, say) deduplicate at the
        receiver."""
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
        self._pending_outbox.append(outbox.OutgoingMessage(command.topic, envelope, self._message_headers()))
        return envelope

    def _message_headers(self) -> dict[str, str]:
        """Kafka headers of what this context publishes: the trace, and the request id of the
        HTTP request behind it, so a message can be matched with that request's logs (the
        rest of the audit metadata stays in the database)."""
        headers = trace_headers()
        if self.context.audit is not None and self.context.audit.request_id is not None:
            headers["request_id"] = self.context.audit.request_id
        return headers

    async def memo(self, key: Any, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()` once per unit of work: a query many messages of a batch ask alike."""
        if key not in self._memo:
            self._memo[key] = await compute()
        return self._memo[key]  # type: ignore[no-any-return]

    async def flush(self) -> None:
        """Write what was recorded and sent so far. Runs before the commit; a handler that
        must read its own writes back from the query tables calls it first. What it takes is
        gone from the queue even if a write fails: the transaction (or savepoint) that failed
        is rolled back with it."""
        while self._before_flush:  # a check may record events, and so register checks
            checks, self._before_flush = self._before_flush, {}
            for check in checks.values():
                await check()
        if self._unverified:
            # Before anything is written, and even when nothing is: a decision to do nothing
            # taken on a stale cached state is as wrong as a stale append.
            await self.verify_cached_reads()
        if not (self._pending_events or self._pending_writes or self._pending_outbox):
            return
        db = await self.db()
        translator = self.publication.translator
        translated = await self._translate(db, translator) if translator and self._pending_changes else []
        events, self._pending_events = self._pending_events, []
        audit, self._pending_audit = self._pending_audit, []
        writes, self._pending_writes = self._pending_writes, WriteBatch()
        messages, self._pending_outbox = [*translated, *self._pending_outbox], []
        if events:
            try:
                written = await eventstore.append(db, events, audit)
            except ConcurrencyConflict:
                if self.cache is not None:
                    # Another replica writes these streams too: distrust everything this unit
                    # of work relied on, so the retry catches it all up at once, not one stale
                    # stream per attempt.
                    self.cache.mark_behind([*self._seen, *self._unknown, *(_stream_of(e) for e in events)])
                raise
            for stream_id, size in written.items():
                self._json_bytes[stream_id] = self._json_bytes.get(stream_id, 0) + size
        await writes.flush(db)
        if messages:
            claim = self.publisher.claim() if self.publisher is not None else None
            claimed, for_relay = await outbox.put(db, messages, claim.owner if claim else None)
            self.wrote_outbox = True
            self.wrote_relay_rows |= for_relay
            if claim is not None and claimed:
                self.claim_epoch = claim.epoch if not self.claimed else min(self.claim_epoch, claim.epoch)
                self.claimed.extend(claimed)
                # A savepoint rolled back later takes its rows with it (the order service's
                # deadline loop flushes inside one): those are checked before the commit.
                self._claimed_in_savepoint |= self.conn.in_nested_transaction()

    async def _translate(
        self, db: asyncpg.Connection, translate: IntegrationTranslator
    ) -> list[outbox.OutgoingMessage]:
        """The public messages of each aggregate recorded since the last flush, from the
        service's translator: once per aggregate, however many record calls it took."""
        changes, self._pending_changes = self._pending_changes, {}
        unknown = [s for s, c in changes.items() if c.before is None and c.expected_version > 0]
        stored = await eventstore.read_streams(db, unknown) if unknown else {}
        messages: list[outbox.OutgoingMessage] = []
        for stream_id, pending in changes.items():
            kind = pending.kind
            before = pending.before
            if before is None:  # rare: recorded without a load here; the store has the rest
                before = kind.initial()
                for e in stored.get(stream_id, []):
                    if e.aggregate_version <= pending.expected_version:
                        before = kind.evolve(before, registry.load(e.event_type, e.event_version, e.payload))  # type: ignore[arg-type]
            last_version = pending.envelopes[-1].aggregate_version
            seen = self._seen.get(stream_id)
            if seen is not None and seen[1] == last_version:
                after = seen[0]  # folded at record already
            else:
                after = before
                for event in pending.events:
                    after = kind.evolve(after, event)
            change = AggregateChange(
                kind, pending.aggregate_id, tuple(pending.events), tuple(pending.envelopes), before, after
            )
            stored_as = {
                id(event): envelope for event, envelope in zip(change.events, change.envelopes, strict=True)
            }
            for message in translate(change):
                envelope = stored_as.get(id(message)) or make_envelope(
                    message,
                    event_id=uuid4(),
                    aggregate_id=pending.aggregate_id,
                    aggregate_version=last_version,
                    occurred_at=self.now,
                    correlation_id=pending.context.correlation_id,
                    causation_id=pending.context.causation_id,
                    actor=pending.context.actor,
                )
                messages.append(outbox.OutgoingMessage(message.topic, envelope, pending.headers))
        return messages

    async def claimed_rows(self) -> list[outbox.OutboxRow]:
        """The claimed rows that will commit (one query, only after a savepoint)."""
        if not self._claimed_in_savepoint or not self.claimed:
            return self.claimed
        present = {
            r["id"]
            for r in await (await self.db()).fetch(
                "SELECT id FROM outbox WHERE id = ANY($1::bigint[])", [row.id for row in self.claimed]
            )
        }
        return [row for row in self.claimed if row.id in present]


def _stream_of(envelope: Envelope) -> str:
    return f"{envelope.aggregate_type}-{envelope.aggregate_id}"


# The after-commit publisher of each engine's process (ServiceRuntime registers it), so every
# unit of work on that database (HTTP commands, consumers, loops) hands its rows to it.
_publishers: weakref.WeakKeyDictionary[AsyncEngine, AfterCommitPublisher] = weakref.WeakKeyDictionary()


# What each engine's service publishes of the events it records (ServiceRuntime registers
# it); a unit of work on an engine without one publishes its published events.
_publications: weakref.WeakKeyDictionary[AsyncEngine, Publication] = weakref.WeakKeyDictionary()
_PUBLISHED_EVENTS = Publication()


def publish_events(engine: AsyncEngine, publication: Publication) -> None:
    """Make every unit of work on `engine` publish what `publication` says."""
    _publications[engine] = publication


def publication_of(engine: AsyncEngine) -> Publication:
    """What units of work on `engine` publish."""
    return _publications.get(engine, _PUBLISHED_EVENTS)


def publish_after_commit(engine: AsyncEngine, publisher: AfterCommitPublisher | None) -> None:
    """Make `publisher` publish the rows of every unit of work on `engine` (None: the relay)."""
    if publisher is None:
        _publishers.pop(engine, None)
    else:
        _publishers[engine] = publisher


@asynccontextmanager
async def unit_of_work(
    engine: AsyncEngine,
    context: MessageContext,
    now: datetime | None = None,
    projector: Projector | None = None,
    cache: AggregateCache | None = None,
) -> AsyncIterator[UnitOfWork]:
    publisher = _publishers.get(engine)
    reservation: Reservation | None = None
    try:
        async with engine.begin() as conn:
            uow = UnitOfWork(
                conn,
                context,
                now or datetime.now(UTC),
                projector=projector,
                cache=cache,
                publisher=publisher,
                publication=publication_of(engine),
            )
            try:
                try:
                    yield uow
                except DomainError as refusal:
                    # A refusal decided on a cached state may be wrong (the order was approved on
                    # another replica meanwhile): only a refusal on current state stands.
                    if uow._unverified:
                        await uow.verify_cached_reads()
                    raise refusal
                await uow.flush()
                if uow.wrote_relay_rows:
                    await outbox.wake_relay(await uow.db())
                if publisher is not None and uow.claimed:
                    claimed = await uow.claimed_rows()
                    if claimed:
                        # In line before the COMMIT: a later writer of these keys can only see
                        # this transaction after it, so its rows queue behind these.
                        reservation = publisher.reserve(claimed, uow.claim_epoch)
            except BaseException:
                if uow._driver is not None and uow._driver.is_closed():
                    # Lost mid-transaction on the driver path: never hand it back to the pool.
                    await retire_connection(conn)
                raise
    except BaseException:
        if reservation is not None and publisher is not None:
            publisher.commit_failed(reservation)
        raise
    if reservation is not None and publisher is not None:
        faults.crash_point(faults.AFTER_COMMIT_BEFORE_PUBLISH)
        publisher.committed(reservation)
    uow.committed()


async def retry_on_conflict(work: Callable[[], Awaitable[State]], attempts: int = 20) -> State:
    """Run a unit of work again when another writer changed the same aggregate first."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")
