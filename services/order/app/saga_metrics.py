"""Saga metrics the order service samples on a timer from what has committed (ServiceRuntime's
sampler): orders placed per channel, how long each order spent in each stage of its saga and
how long sagas took to their outcome, and which open orders have not moved for a while, by the
stage they wait in.

Read from the database rather than counted in the handlers: an order that is stuck has, by
definition, no handler running for it, and what committed is known only once it has. One
replica samples at a time (a session advisory lock, as the relay holds), so an order placed, a
stage left or an outcome reached is observed once however many replicas run and however often
a command was retried; the others export none of these. A replica that takes the lead over
starts from the store's tail: what committed while nobody led is not observed.

The stage an order is in follows its own events (`stage_after`, the stage rule of
services/order/domain/order.py's evolve; tests/unit/test_metrics_saga_stages.py folds the
saga's histories both ways). The sampler remembers each open order's stage and since when,
reading an order's earlier events only the first time it meets one (an order placed before
it led, or forgotten to keep memory bounded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events.order import (
    InvoiceRequested,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompensationStarted,
    OrderCompleted,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    OrderStockAllocated,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.runtime.metrics import (
    ORDERS_NEEDING_ATTENTION,
    ORDERS_PLACED,
    ORDERS_STUCK,
    SAGA_SECONDS,
    SAGA_STAGE_SECONDS,
)
from services.order.app.handlers import OUTCOME_EVENTS
from services.order.domain.order import TERMINAL, Stage, Status

log = logging.getLogger(__name__)

SAGA_METRICS_LOCK_KEY = 7463010
# An open order unchanged for longer than each of these is counted under that `older_than`.
STUCK_AFTER_SECONDS = (60, 300, 3600)
OPEN_STATUSES = [s for s in Status.__args__ if s not in TERMINAL]  # type: ignore[attr-defined]
# Open orders whose stage the sampler remembers; past this the longest unseen are forgotten
# (and their history read again should they move).
MAX_TRACKED_ORDERS = 100_000
# Channels are named by whoever submits; past this many, further ones are counted as "other".
MAX_CHANNELS = 50


def _to(stage: Stage) -> Callable[[Stage], Stage]:
    return lambda _before: stage


# event type -> the stage after it, given the stage before (evolve's rule for `stage`).
STAGE_AFTER: dict[str, Callable[[Stage], Stage]] = {
    OrderPlaced.message_type: _to("review"),
    StockReservationRequested.message_type: _to("reserving"),
    # Reserved: the group's other step (the invoice) is what the saga waits for next.
    OrderStockAllocated.message_type: lambda before: "invoicing" if before == "reserving" else before,
    # Beside a reservation still open (a parallel group) the stage stays reserving.
    InvoiceRequested.message_type: lambda before: before if before == "reserving" else "invoicing",
    OrderAwaitingPayment.message_type: _to("awaiting_payment"),
    OrderConfirmed.message_type: _to("done"),
    ShipmentsRequested.message_type: _to("fulfilling"),
    OrderCompensationStarted.message_type: _to("compensating"),
    OrderCancelled.message_type: _to("ended"),
    OrderRejected.message_type: _to("ended"),
    OrderCompleted.message_type: _to("ended"),
}


@dataclass(frozen=True)
class TrackedOrder:
    """Where one open order's saga stands, as far as its events have been read."""

    stage: Stage
    since: datetime
    placed_at: datetime | None
    version: int


def advance(order: TrackedOrder | None, event_type: str, at: datetime, version: int) -> TrackedOrder:
    """The order after one of its events (of a type in STAGE_AFTER), recorded at `at`."""
    before: Stage = order.stage if order is not None else "none"
    stage = STAGE_AFTER[event_type](before)
    placed_at = at if event_type == OrderPlaced.message_type else (order.placed_at if order else None)
    since = order.since if order is not None and stage == before else at
    return TrackedOrder(stage, since, placed_at, version)


_STUCK = """
SELECT stage,
       count(*) FILTER (WHERE updated_at < now() - make_interval(secs => $2::float8)) AS a,
       count(*) FILTER (WHERE updated_at < now() - make_interval(secs => $3::float8)) AS b,
       count(*) FILTER (WHERE updated_at < now() - make_interval(secs => $4::float8)) AS c,
       count(*) FILTER (WHERE status = 'needs_attention') AS attention
FROM orders WHERE status = ANY($1::text[]) GROUP BY stage
"""
# Events that move a saga's stage, committed after a position in the store's commit order (the
# catch-up rule of libs/runtime/eventstore.read_all: never past a transaction still open); an
# OrderPlaced brings its channel.
_COMMITTED = """
SELECT transaction_id::text::bigint AS tx, global_position, stream_id, version, event_type,
       occurred_at, CASE WHEN event_type = $5 THEN payload->>'channel' END AS channel
FROM events
WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND event_type = ANY($3::text[])
ORDER BY transaction_id, global_position LIMIT $4
"""
# The stage-moving events of orders met for the first time, before the version first met.
_HISTORY = """
SELECT e.stream_id, e.version, e.event_type, e.occurred_at
FROM unnest($1::text[], $2::int[]) AS m(stream_id, below)
JOIN events e ON e.stream_id = m.stream_id AND e.version < m.below
WHERE e.event_type = ANY($3::text[])
ORDER BY e.stream_id, e.version
"""
_TAIL = """
SELECT coalesce(max(transaction_id::text::bigint), 0) AS tx, coalesce(max(global_position), 0) AS gp
FROM events WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
"""


class SagaMetrics:
    """The order service's sampler (`runtime.samplers`)."""

    def __init__(
        self,
        dsn: str,
        stuck_after: Sequence[float] = STUCK_AFTER_SECONDS,
        lock_key: int = SAGA_METRICS_LOCK_KEY,
        max_tracked: int = MAX_TRACKED_ORDERS,
    ) -> None:
        self._dsn = dsn
        self._lock_key = lock_key
        self._stuck_after = tuple(stuck_after)
        self._max_tracked = max_tracked
        self._conn: asyncpg.Connection | None = None
        self._leading = False
        self._position: tuple[int, int] | None = None
        # Open orders by stream id, the least recently moved first.
        self._orders: dict[str, TrackedOrder] = {}
        self._channels: set[str] = set()
        # Children of the labelled histograms by label, each looked up once: labels() costs
        # more than observe(), and a series appears only once something is observed in it.
        self._children: dict[tuple[Histogram, str], Any] = {}

    async def __call__(self, _engine: AsyncEngine) -> None:
        try:
            await self._sample()
        except Exception:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._leading, self._position = False, None
            self._orders.clear()
            await conn.close()

    async def _sample(self) -> None:
        if self._conn is None:
            self._conn = await asyncpg.connect(self._dsn)
        conn = self._conn
        if not self._leading:
            self._leading = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key))
            if not self._leading:
                ORDERS_STUCK.clear()  # another replica reports them
                return
        await self._sample_stuck(conn)
        await self._observe_committed(conn)

    async def _sample_stuck(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(_STUCK, OPEN_STATUSES, *self._stuck_after)
        ORDERS_STUCK.clear()  # a stage with no open order left reads as absent, not as its last count
        for row in rows:
            for column, seconds in zip(("a", "b", "c"), self._stuck_after, strict=True):
                ORDERS_STUCK.labels(row["stage"], f"{seconds:g}s").set(row[column])
        ORDERS_NEEDING_ATTENTION.set(sum(row["attention"] for row in rows))

    async def _observe_committed(self, conn: asyncpg.Connection, batch: int = 1000) -> None:
        if self._position is None:
            # From now on: what committed before this process led was observed by whoever led then.
            tail = await conn.fetchrow(_TAIL)
            self._position = (int(tail["tx"]), int(tail["gp"]))
            return
        while True:
            rows = await conn.fetch(
                _COMMITTED,
                str(self._position[0]),
                self._position[1],
                list(STAGE_AFTER),
                batch,
                OrderPlaced.message_type,
            )
            if rows:
                self._position = (int(rows[-1]["tx"]), int(rows[-1]["global_position"]))
                # Per order in version order: a transaction's id is taken at its first write,
                # so commit order and id order can differ for two commands of one order.
                ordered = sorted(rows, key=lambda row: (row["stream_id"], row["version"]))
                await self._recall(conn, ordered)
                for row in ordered:
                    self._observe(row)
            if len(rows) < batch:
                return

    async def _recall(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> None:
        """Where the orders not remembered stood before the first of these rows of each."""
        first_seen: dict[str, int] = {}
        for row in rows:
            first_seen.setdefault(row["stream_id"], row["version"])
        first_seen = {s: v for s, v in first_seen.items() if v > 1 and s not in self._orders}
        if not first_seen:
            return
        history = await conn.fetch(_HISTORY, list(first_seen), list(first_seen.values()), list(STAGE_AFTER))
        for row in history:
            order = advance(
                self._orders.get(row["stream_id"]), row["event_type"], row["occurred_at"], row["version"]
            )
            self._remember(row["stream_id"], order)

    def _observe(self, row: asyncpg.Record) -> None:
        stream_id, event_type, at = row["stream_id"], row["event_type"], row["occurred_at"]
        before = self._orders.pop(stream_id, None)
        if before is not None and row["version"] <= before.version:
            self._remember(stream_id, before)  # already folded (read with the order's history)
            return
        after = advance(before, event_type, at, row["version"])
        if event_type == OrderPlaced.message_type:
            ORDERS_PLACED.labels(self._channel(row["channel"])).inc()
        if before is not None and after.stage != before.stage and before.stage != "none":
            self._child(SAGA_STAGE_SECONDS, before.stage).observe(
                max((at - before.since).total_seconds(), 0.0)
            )
        if (outcome := OUTCOME_EVENTS.get(event_type)) is not None and after.placed_at is not None:
            self._child(SAGA_SECONDS, outcome).observe(max((at - after.placed_at).total_seconds(), 0.0))
        if after.stage != "ended":
            self._remember(stream_id, after)

    def _remember(self, stream_id: str, order: TrackedOrder) -> None:
        self._orders.pop(stream_id, None)
        if order.stage == "ended":
            return
        self._orders[stream_id] = order
        while len(self._orders) > self._max_tracked:
            del self._orders[next(iter(self._orders))]

    def _child(self, histogram: Histogram, label: str) -> Any:
        child = self._children.get((histogram, label))
        if child is None:
            child = self._children[histogram, label] = histogram.labels(label)
        return child

    def _channel(self, channel: str | None) -> str:
        channel = channel or "unknown"
        if channel not in self._channels and len(self._channels) < MAX_CHANNELS:
            self._channels.add(channel)
        return channel if channel in self._channels else "other"
