"""The order service's saga metrics from committed events (services/order/app/saga_metrics.py):
the stage rule agrees with the order's own evolve along the saga's paths, and the sampler
observes each stage left, each outcome and each order placed once, remembering where open
orders stand and reading an order's history only when it meets one it does not know."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from libs.events.base import DomainEvent
from libs.events.order import (
    InvoiceRequested,
    OrderApproved,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompleted,
    OrderInvoiced,
    OrderNeedsAttention,
    OrderRejected,
    OrderStockAllocated,
    StockReservationRequested,
)
from libs.runtime.metrics import ORDERS_PLACED, SAGA_SECONDS, SAGA_STAGE_SECONDS
from services.order.app import saga_metrics
from services.order.app.handlers import OUTCOME_EVENTS
from services.order.app.saga_metrics import STAGE_AFTER, SagaMetrics, TrackedOrder, advance
from services.order.domain.order import Order, evolve
from services.order.tests.test_saga import (
    ALLOCATIONS,
    DEADLINE,
    INVOICE_ID,
    NOW,
    ORDER_ID,
    REQUESTED_LINES,
    TOTAL,
    awaiting_payment,
    compensating,
    confirmed,
    invoicing,
    on_hold,
    placed,
)

AWAITING_PAYMENT = OrderAwaitingPayment(
    order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_due=TOTAL, payment_deadline=DEADLINE
)
# The parallel group: the invoice is asked for while the reservation is still open.
PARALLEL = (
    placed(),
    OrderApproved(order_id=ORDER_ID, approved_by="rules"),
    StockReservationRequested(order_id=ORDER_ID, lines=REQUESTED_LINES),
    InvoiceRequested(order_id=ORDER_ID),
    OrderInvoiced(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_due=TOTAL),
    OrderStockAllocated(order_id=ORDER_ID, allocations=ALLOCATIONS),
    AWAITING_PAYMENT,
)
HISTORIES: dict[str, tuple[DomainEvent, ...]] = {
    "held": on_hold(),
    "invoicing": invoicing(),
    "parallel": PARALLEL,
    "confirmed and completed": (
        *confirmed(),
        OrderCompleted(order_id=ORDER_ID, total=TOTAL, amount_paid=TOTAL),
    ),
    "compensated": (
        *compensating(*awaiting_payment(), steps=("invoice", "reserve_stock")),
        OrderNeedsAttention(order_id=ORDER_ID, step="invoice", reason="void refused"),
        OrderCancelled(order_id=ORDER_ID, reason="why", cancelled_by="rules"),
    ),
    "rejected": (*on_hold(), OrderRejected(order_id=ORDER_ID, reason="no", rejected_by="ops")),
}


@pytest.mark.parametrize("history", HISTORIES.values(), ids=HISTORIES.keys())
def test_the_stage_rule_follows_the_orders_evolve_event_by_event(history: tuple[DomainEvent, ...]) -> None:
    order, tracked = Order(), None
    for version, event in enumerate(history, start=1):
        order = evolve(order, event)
        if event.message_type in STAGE_AFTER:
            tracked = advance(tracked, event.message_type, NOW, version)
        assert (tracked.stage if tracked else "none") == order.stage, f"after {event.message_type}"


def test_every_outcome_is_read_by_the_stage_rule() -> None:
    assert set(OUTCOME_EVENTS) <= set(STAGE_AFTER)


# --- the sampler over a store of committed events ------------------------------------------------


@dataclass
class StoredEvent:
    tx: int
    global_position: int
    stream_id: str
    version: int
    event_type: str
    occurred_at: datetime
    channel: str | None

    def __getitem__(self, column: str) -> Any:
        return getattr(self, column)


class FakeStore:
    """The events table as the sampler's queries read it (a committed-only tail in commit order,
    and an order's earlier events), counting the history reads."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.history_reads = 0

    def append(
        self, stream_id: str, event_type: str, at: datetime, channel: str | None = None, tx: int | None = None
    ) -> None:
        version = 1 + sum(1 for e in self.events if e.stream_id == stream_id)
        position = len(self.events) + 1
        self.events.append(StoredEvent(tx or position, position, stream_id, version, event_type, at, channel))
        self.events.sort(key=lambda e: (e.tx, e.global_position))  # the store's commit order

    async def fetchval(self, query: str, *args: Any) -> Any:
        return True  # the advisory lock: this sampler leads

    async def fetchrow(self, query: str, *args: Any) -> dict[str, int]:
        return {"tx": len(self.events), "gp": len(self.events)}

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]:
        if query == saga_metrics._STUCK:
            return []
        if query == saga_metrics._COMMITTED:
            tx, gp, types, limit = int(args[0]), args[1], args[2], args[3]
            after = [e for e in self.events if (e.tx, e.global_position) > (tx, gp) and e.event_type in types]
            return after[:limit]
        assert query == saga_metrics._HISTORY
        self.history_reads += 1
        below = dict(zip(args[0], args[1], strict=True))
        return [e for e in self.events if e.version < below.get(e.stream_id, 0) and e.event_type in args[2]]


def sampler_on(store: FakeStore, **kwargs: Any) -> SagaMetrics:
    sampler = SagaMetrics("postgresql://unused", **kwargs)
    sampler._conn = store
    return sampler


def stage_count(stage: str) -> float:
    return sum(s.value for m in SAGA_STAGE_SECONDS.collect() for s in m.samples
               if s.name.endswith("_count") and s.labels["stage"] == stage)  # fmt: skip


def stage_sum(stage: str) -> float:
    return sum(s.value for m in SAGA_STAGE_SECONDS.collect() for s in m.samples
               if s.name.endswith("_sum") and s.labels["stage"] == stage)  # fmt: skip


def saga_count(outcome: str) -> float:
    return sum(s.value for m in SAGA_SECONDS.collect() for s in m.samples
               if s.name.endswith("_count") and s.labels["outcome"] == outcome)  # fmt: skip


def placed_count(channel: str) -> float:
    value: float = ORDERS_PLACED.labels(channel)._value.get()
    return value


def place_and_confirm(store: FakeStore, stream_id: str, channel: str, start: datetime) -> None:
    """review 1 s, reserving 2 s, invoicing 3 s, awaiting_payment 4 s, done until shipped 5 s."""
    store.append(stream_id, "OrderPlaced", start, channel)
    store.append(stream_id, "OrderApproved", start)  # moves no stage: not even read
    store.append(stream_id, "StockReservationRequested", start + timedelta(seconds=1))
    store.append(stream_id, "OrderStockAllocated", start + timedelta(seconds=3))
    store.append(stream_id, "InvoiceRequested", start + timedelta(seconds=3))
    store.append(stream_id, "OrderAwaitingPayment", start + timedelta(seconds=6))
    store.append(stream_id, "OrderConfirmed", start + timedelta(seconds=10))
    store.append(stream_id, "ShipmentsRequested", start + timedelta(seconds=15))


async def test_each_stage_left_and_each_outcome_is_observed_once_with_its_time() -> None:
    store, channel = FakeStore(), f"web-{uuid4().hex[:6]}"
    sampler = sampler_on(store)
    await sampler(None)  # type: ignore[arg-type] # takes the lead at the tail
    before = {stage: (stage_count(stage), stage_sum(stage)) for stage in ("review", "reserving", "invoicing",
              "awaiting_payment", "done", "fulfilling")}  # fmt: skip
    confirmed_before = saga_count("confirmed")

    place_and_confirm(store, "order-a", channel, NOW)
    await sampler(None)  # type: ignore[arg-type]
    await sampler(None)  # type: ignore[arg-type] # nothing new: nothing observed again

    spent = {"review": 1, "reserving": 2, "invoicing": 3, "awaiting_payment": 4, "done": 5}
    for stage, seconds in spent.items():
        assert stage_count(stage) - before[stage][0] == 1, stage
        assert stage_sum(stage) - before[stage][1] == pytest.approx(seconds), stage
    assert stage_count("fulfilling") == before["fulfilling"][0]  # still in it
    assert saga_count("confirmed") - confirmed_before == 1
    assert placed_count(channel) == 1
    assert store.history_reads == 0  # every event of the order was met in order


async def test_an_order_met_mid_saga_is_read_back_once_and_its_stage_time_is_whole() -> None:
    store, channel = FakeStore(), f"web-{uuid4().hex[:6]}"
    store.append("order-b", "OrderPlaced", NOW, channel)
    store.append("order-b", "StockReservationRequested", NOW)
    store.append("order-b", "OrderStockAllocated", NOW + timedelta(seconds=1))
    sampler = sampler_on(store)
    await sampler(None)  # type: ignore[arg-type] # leads from here: order-b was placed before
    invoicing_before = (stage_count("invoicing"), stage_sum("invoicing"))

    store.append("order-b", "InvoiceRequested", NOW + timedelta(seconds=1))
    store.append("order-b", "OrderAwaitingPayment", NOW + timedelta(seconds=8))
    await sampler(None)  # type: ignore[arg-type]

    assert store.history_reads == 1
    assert stage_count("invoicing") - invoicing_before[0] == 1
    assert stage_sum("invoicing") - invoicing_before[1] == pytest.approx(7)  # since the allocation
    assert placed_count(channel) == 0  # placed before this sampler led: its leader counted it


async def test_two_commands_of_one_order_read_out_of_version_order_are_folded_in_version_order() -> None:
    # A transaction's id is taken at its first write: the command that wrote version 3 may
    # hold the smaller id, so the store's commit order reads it before version 2.
    store = FakeStore()
    sampler = sampler_on(store)
    await sampler(None)  # type: ignore[arg-type]
    reserving_before = (stage_count("reserving"), stage_sum("reserving"))
    store.append("order-f", "OrderPlaced", NOW, "web", tx=100)
    store.append("order-f", "StockReservationRequested", NOW + timedelta(seconds=1), tx=102)
    store.append("order-f", "OrderStockAllocated", NOW + timedelta(seconds=4), tx=101)

    await sampler(None)  # type: ignore[arg-type]

    assert stage_count("reserving") - reserving_before[0] == 1
    assert stage_sum("reserving") - reserving_before[1] == pytest.approx(3)
    assert sampler._orders["order-f"].stage == "invoicing"


async def test_memory_is_bounded_and_a_forgotten_order_is_read_back_when_it_moves() -> None:
    store = FakeStore()
    sampler = sampler_on(store, max_tracked=2)
    await sampler(None)  # type: ignore[arg-type]
    for name in ("c", "d", "e"):
        store.append(f"order-{name}", "OrderPlaced", NOW, "web")
    await sampler(None)  # type: ignore[arg-type]
    assert set(sampler._orders) == {"order-d", "order-e"}
    review_before = stage_count("review")

    store.append("order-c", "StockReservationRequested", NOW + timedelta(seconds=2))
    await sampler(None)  # type: ignore[arg-type]

    assert store.history_reads == 1
    assert stage_count("review") - review_before == 1
    assert sampler._orders["order-c"] == TrackedOrder("reserving", NOW + timedelta(seconds=2), NOW, 2)


async def test_channels_past_the_limit_are_counted_as_other() -> None:
    store = FakeStore()
    sampler = sampler_on(store)
    await sampler(None)  # type: ignore[arg-type]
    other_before = placed_count("other")
    for i in range(saga_metrics.MAX_CHANNELS + 3):
        store.append(f"order-ch{i}", "OrderPlaced", NOW, f"channel-{uuid4().hex[:6]}-{i}")
    await sampler(None)  # type: ignore[arg-type]
    assert placed_count("other") - other_before == 3
