"""One order's saga as an operator needs it when the order is stuck: where it waits (status and
stage, since when), what each step has done (folded from the order's own events, as the
service folds them), the deadlines still pending, its timeline, and the traces its messages
belong to, to open in the trace viewer.

Reads the order service's database (its event stream, read model and deadlines) and the tail
of the order's partition of the order events topic (the trace context its messages carry):
nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from libs.events import registry
from libs.events.topics import ORDER_EVENTS
from libs.runtime.consumer import GroupOffsets
from libs.runtime.kafka import client_security
from libs.runtime.settings import RuntimeSettings

# How far back in the order's partition to look for its messages' trace context.
TRACE_SCAN_MESSAGES = 5000


@dataclass
class SagaView:
    order_id: str
    status: str
    stage: str
    placed_at: datetime
    updated_at: datetime
    steps: dict[str, Any]
    deadlines: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    trace_ids: list[str] = field(default_factory=list)

    def waiting_seconds(self, now: datetime) -> float:
        return (now - self.updated_at).total_seconds()

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "order_id": self.order_id,
            "status": self.status,
            "stage": self.stage,
            "placed_at": self.placed_at.isoformat(),
            "last_change_at": self.updated_at.isoformat(),
            "waiting_seconds": round(self.waiting_seconds(now), 1),
            "steps": self.steps,
            "deadlines": self.deadlines,
            "timeline": self.timeline,
            "trace_ids": self.trace_ids,
        }


class UnknownOrder(LookupError):
    pass


async def inspect(settings: RuntimeSettings, order_id: str, with_traces: bool = True) -> SagaView:
    from services.order.domain.order import ORDER  # the service's own fold of its events

    db = await asyncpg.connect(settings.dsn("order"))
    try:
        row = await db.fetchrow(
            "SELECT status, stage, placed_at, updated_at FROM orders WHERE order_id = $1", order_id
        )
        if row is None:
            raise UnknownOrder(f"order {order_id} is not in the order service's database")
        events = await db.fetch(
            "SELECT version, event_type, event_version, occurred_at, actor, payload::text AS payload"
            " FROM events WHERE stream_id = $1 ORDER BY version",
            ORDER.stream_id(order_id),
        )
        deadlines = await db.fetch(
            "SELECT kind, due_at FROM saga_deadlines WHERE order_id = $1 ORDER BY due_at", order_id
        )
    finally:
        await db.close()
    state = ORDER.replay(
        [registry.load(e["event_type"], e["event_version"], json.loads(e["payload"])) for e in events]  # type: ignore[misc]
    )
    view = SagaView(
        order_id,
        row["status"],
        row["stage"],
        row["placed_at"],
        row["updated_at"],
        steps=_steps(state),
        deadlines=[{"kind": d["kind"], "due_at": d["due_at"].isoformat()} for d in deadlines],
        timeline=[
            {
                "version": e["version"],
                "at": e["occurred_at"].isoformat(),
                "event": e["event_type"],
                "actor": e["actor"],
            }
            for e in events
        ],
    )
    if with_traces:
        view.trace_ids = await trace_ids(settings, order_id)
    return view


def _steps(order: Any) -> dict[str, Any]:
    """What each step of the saga has done, from the folded order."""
    compensation = order.compensation
    return {
        "review": {"held_at": order.held_at, "hold_reasons": list(order.hold_reasons)},
        "stock": {"requested": order.stock_requested, "allocated": order.stock_allocated},
        "invoice": {"requested": order.invoice_requested, "invoice_id": order.invoice_id},
        "payment": {
            "amount_due": str(order.amount_due),
            "amount_paid": str(order.amount_paid),
            "deadline": order.payment_deadline.isoformat() if order.payment_deadline else None,
            "failed_attempts": order.payment_failures,
        },
        "attempts": dict(order.step_attempts),
        "compensation": None
        if compensation is None
        else {
            "reason": compensation.reason,
            "final_status": compensation.final_status,
            "pending": sorted(compensation.pending),
            "attempts": dict(compensation.attempts),
        },
        "last_reason": order.last_reason,
    }


async def trace_ids(settings: RuntimeSettings, order_id: str) -> list[str]:
    """Trace ids of the order's messages on the order events topic, oldest first: they are
    keyed by the order id, so they all lie in one partition, near its end for a recent order.
    Empty when tracing is off (the messages then carry no trace context)."""
    topic = settings.topic(ORDER_EVENTS)
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        partitions = sorted(tp.partition for tp in await offsets.partitions([topic]))
    finally:
        await offsets.close()
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    found: list[str] = []
    try:
        key = order_id.encode()
        tp = TopicPartition(topic, DefaultPartitioner()(key, partitions, partitions))
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, max(start, end - TRACE_SCAN_MESSAGES))
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            if not batch:
                break
            for record in batch.get(tp, []):
                if record.key != key:
                    continue
                for name, value in record.headers or ():
                    if name == "traceparent":
                        trace_id = value.decode(errors="replace").split("-")[1:2]
                        if trace_id and trace_id[0] not in found:
                            found.append(trace_id[0])
    finally:
        await consumer.stop()
    return found


def render(view: SagaView, trace_url: str = "") -> str:
    """The view as an operator reads it in a terminal."""
    now = datetime.now(UTC)
    lines = [
        f"order {view.order_id}: {view.status} (stage {view.stage}),"
        f" unchanged for {view.waiting_seconds(now):.0f}s since {view.updated_at.isoformat()}",
        f"placed at {view.placed_at.isoformat()}",
        "steps:",
    ]
    lines += [f"  {name}: {value}" for name, value in view.steps.items()]
    lines.append("deadlines:" if view.deadlines else "deadlines: none pending")
    lines += [f"  {d['kind']} due {d['due_at']}" for d in view.deadlines]
    lines.append("timeline:")
    lines += [f"  {t['version']:>3} {t['at']} {t['event']} ({t['actor']})" for t in view.timeline]
    if view.trace_ids:
        lines.append("traces (oldest first):")
        lines += [f"  {t}  {trace_url.format(trace_id=t)}" if trace_url else f"  {t}" for t in view.trace_ids]
    else:
        lines.append(
            "traces: none found (tracing off, or the order's messages are older than the scanned tail);"
            f" search the trace viewer for the tag ordermesh.aggregate_id={view.order_id}"
        )
    return "\n".join(lines)
