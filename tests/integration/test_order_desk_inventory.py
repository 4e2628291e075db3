"""The inventory side of the order desk (issue 15) on the real broker and database: the
AdjustReservation and MoveReservations commands arrive on the inventory commands topic as the
order saga sends them, through the running inventory service of the session's platform (their
order ids are unknown to its order service, which ignores the answers). The answers are read
from the reservation's events and the topic, the stock from GET /stock/{sku}."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from libs.events import encode, make_envelope
from libs.events.inventory import (
    AdjustReservation,
    CreateShipments,
    InventoryCommand,
    MoveReservations,
    ReservationMove,
    ReserveStock,
)
from libs.events.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS
from libs.events.values import Shipping, SkuQuantity
from libs.runtime.settings import RuntimeSettings
from tests.conftest import consumed_through, eventually
from tests.integration.conftest import Oms
from tools import invariants
from tools.processes import eventually_value

pytestmark = pytest.mark.integration


def lines(**quantities: int) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())


class Saga:
    """Sends inventory commands as the order saga does, and reads what inventory answered."""

    def __init__(self, oms: Oms, settings: RuntimeSettings) -> None:
        self.oms = oms
        self.settings = settings
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)

    async def send(self, command: InventoryCommand) -> RecordMetadata:
        envelope = make_envelope(
            command,
            event_id=uuid4(),  # every send a new message: a repeat is not deduplicated by the inbox
            aggregate_id=command.order_id,
            aggregate_version=0,
            occurred_at=datetime.now(UTC),
            correlation_id=command.order_id,
            causation_id=None,
            actor="service:order",
        )
        topic = self.settings.topic(INVENTORY_COMMANDS)
        return await self.producer.send_and_wait(topic, encode(envelope), key=command.order_id.encode())

    async def handled(self, record: RecordMetadata) -> None:
        """The inventory consumer committed past `record`: it is applied."""
        group = self.settings.topic("inventory-commands")
        await eventually(lambda: consumed_through(self.settings, group, record), timeout=60)

    async def events(self, order_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The order's reservation events, as stored."""
        db = await asyncpg.connect(self.settings.dsn("inventory"))
        try:
            rows = await db.fetch(
                "SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY version",
                f"reservation-{order_id}",
            )
        finally:
            await db.close()
        return [(row["event_type"], json.loads(row["payload"])) for row in rows]

    async def answer(self, order_id: str, event_type: str, count: int = 1) -> dict[str, Any]:
        """The `count`-th `event_type` of the order's reservation, once it is there."""

        async def answers() -> list[dict[str, Any]]:
            return [payload for kind, payload in await self.events(order_id) if kind == event_type]

        found = await eventually_value(answers, lambda found: len(found) >= count, timeout=60)
        return found[count - 1]

    async def invariant_violations(self, *names: str) -> list[str]:
        """What the invariant checker finds wrong with inventory's stock, reservations and
        shipments, as far as it names one of `names` (the session's other tests have theirs)."""
        db = await asyncpg.connect(self.settings.dsn("inventory"))
        try:
            report = invariants.Report()
            await db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await invariants._stock(db, report)
        finally:
            await db.close()
        return [v for v in report.violations if any(name in v for name in names)]

    async def reserve(self, order_id: str, **quantities: int) -> None:
        await self.send(ReserveStock(order_id=order_id, lines=lines(**quantities)))
        await eventually_value(lambda: self.events(order_id), lambda found: len(found) >= 2, timeout=60)

    async def reservation(self, order_id: str) -> dict[str, Any]:
        response = await self.oms.inventory.get(f"/reservations/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def stock(self, sku: str) -> dict[str, Any]:
        return await self.oms.stock(sku)

    async def shipments(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.oms.inventory.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return list(response.json())

    async def topic_ends(self) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await consumer.start()
        try:
            topic = self.settings.topic(INVENTORY_EVENTS)
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if not partitions:
                partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            return dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()

    async def published_since(self, since: dict[TopicPartition, int], order_id: str) -> list[dict[str, Any]]:
        """The inventory events published for `order_id` after the offsets `since`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(since))
            for partition, offset in since.items():
                consumer.seek(partition, offset)
            ends = await consumer.end_offsets(list(since))
            found: list[dict[str, Any]] = []
            while [p for p in since if await consumer.position(p) < ends[p]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    found += [json.loads(record.value) for record in batch if record.key == order_id.encode()]
            return found
        finally:
            await consumer.stop()


@pytest.fixture
async def saga(oms: Oms, e2e_settings: RuntimeSettings) -> AsyncIterator[Saga]:
    client = Saga(oms, e2e_settings)
    await client.producer.start()
    try:
        yield client
    finally:
        await client.producer.stop()


def new_id(name: str) -> str:
    return f"desk-{name}-{uuid4().hex[:10]}"


def levels(stock: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """warehouse -> (on hand, reserved)."""
    return {row["warehouse"]: (row["on_hand"], row["reserved"]) for row in stock["warehouses"]}


# -- amendments -------------------------------------------------------------------------------


async def test_an_amended_order_reserves_only_the_difference_and_is_shipped_again(saga: Saga) -> None:
    a, b = new_id("A"), new_id("B")
    await saga.oms.receive(a, 10, "NORTH")
    await saga.oms.receive(b, 5, "NORTH")
    order_id = new_id("order")
    await saga.reserve(order_id, **{a: 2, b: 1})
    await saga.send(CreateShipments(order_id=order_id, shipping=Shipping(method="standard")))
    [first] = await eventually_value(lambda: saga.shipments(order_id), lambda found: len(found) == 1)

    await saga.send(AdjustReservation(order_id=order_id, amendment_id="am-up", lines=lines(**{a: 5, b: 1})))

    up = await saga.answer(order_id, "ReservationAdjusted")
    assert up["added"] == [{"sku": a, "quantity": 3}] and up["released"] == [] and not up["waiting"]
    assert up["shipments_cancelled"] == [first["shipment_id"]]
    assert levels(await saga.stock(a)) == {"NORTH": (10, 5)}
    assert levels(await saga.stock(b)) == {"NORTH": (5, 1)}
    stock_events = [t for t, _ in await saga.events(order_id)]
    assert stock_events == ["ReservationRequested", "StockReserved", "ReservationAdjusted"]

    # The saga asks for shipments again (a new message): the allocation as it now is, once.
    await saga.send(CreateShipments(order_id=order_id, shipping=Shipping(method="standard")))
    again = await saga.send(CreateShipments(order_id=order_id, shipping=Shipping(method="standard")))
    await saga.handled(again)
    shipments = {s["shipment_id"]: s for s in await saga.shipments(order_id)}
    assert shipments.pop(first["shipment_id"])["status"] == "cancelled"
    [second] = shipments.values()
    assert second["status"] == "pending" and second["warehouse"] == "NORTH"
    assert sorted((line["sku"], line["quantity"]) for line in second["lines"]) == sorted([(a, 5), (b, 1)])

    await saga.send(AdjustReservation(order_id=order_id, amendment_id="am-down", lines=lines(**{a: 1})))

    down = await saga.answer(order_id, "ReservationAdjusted", count=2)
    assert sorted((r["sku"], r["quantity"]) for r in down["released"]) == sorted([(a, 4), (b, 1)])
    assert levels(await saga.stock(a)) == {"NORTH": (10, 1)}
    assert levels(await saga.stock(b)) == {"NORTH": (5, 0)}
    assert down["shipments_cancelled"] == [second["shipment_id"]]
    reservation = await saga.reservation(order_id)
    assert reservation["status"] == "reserved"
    assert [(r["sku"], r["warehouse"], r["quantity"]) for r in reservation["allocations"]] == [
        (a, "NORTH", 1)
    ]

    # The same amendment again (a new message id): answered again, nothing changes.
    since = await saga.topic_ends()
    repeat = await saga.send(
        AdjustReservation(order_id=order_id, amendment_id="am-down", lines=lines(**{a: 1}))
    )
    await saga.handled(repeat)

    answered = await eventually_value(
        lambda: saga.published_since(since, order_id), lambda found: len(found) >= 1, timeout=30
    )
    assert [(m["event_type"], m["payload"]["amendment_id"]) for m in answered] == [
        ("ReservationAdjusted", "am-down")
    ]
    assert answered[0]["payload"]["released"] == down["released"]
    assert len(await saga.events(order_id)) == 4
    assert levels(await saga.stock(a)) == {"NORTH": (10, 1)}
    assert await saga.invariant_violations(a, b, order_id) == []


async def test_an_amendment_whose_extra_units_are_missing_is_refused_and_changes_nothing(saga: Saga) -> None:
    a = new_id("A")
    await saga.oms.receive(a, 3, "NORTH")
    order_id = new_id("order")
    await saga.reserve(order_id, **{a: 2})

    await saga.send(AdjustReservation(order_id=order_id, amendment_id="am-1", lines=lines(**{a: 6})))

    refused = await saga.answer(order_id, "ReservationAdjustmentRefused")
    assert refused["missing"] == [{"sku": a, "quantity": 3}]
    assert levels(await saga.stock(a)) == {"NORTH": (3, 2)}
    assert (await saga.reservation(order_id))["status"] == "reserved"


# -- splits and merges ------------------------------------------------------------------------


async def test_a_split_ships_the_in_stock_part_now_and_the_rest_waits_in_the_orders_place(saga: Saga) -> None:
    a, b = new_id("A"), new_id("B")
    await saga.oms.receive(a, 2, "NORTH")
    early, order_id, late = new_id("early"), new_id("order"), new_id("late")
    await saga.reserve(early, **{b: 1})
    await saga.reserve(order_id, **{a: 2, b: 3})  # waits for b, behind `early`
    await saga.reserve(late, **{b: 1})
    split = new_id("split")

    move = ReservationMove(from_order_id=order_id, lines=lines(**{b: 3}))
    await saga.send(MoveReservations(order_id=split, move_id="mv-1", sources=(move,)))

    source = await saga.answer(order_id, "ReservationAdjusted")
    assert not source["waiting"] and source["moved_to"] == split
    assert source["lines"] == [{"sku": a, "quantity": 2}]
    assert source["allocations"] == [{"sku": a, "warehouse": "NORTH", "quantity": 2}]
    target = await saga.answer(split, "StockShortage")
    assert target["backordered"] and target["missing"] == [{"sku": b, "quantity": 3}]
    assert (await saga.reservation(order_id))["status"] == "reserved"
    assert levels(await saga.stock(a)) == {"NORTH": (2, 2)}
    queue = [(w["order_id"], w["quantity"]) for w in (await saga.stock(b))["backorders"]]
    assert queue == [(early, 1), (split, 3), (late, 1)]

    await saga.oms.receive(b, 4, "SOUTH")  # enough for the first two in line

    await saga.answer(split, "StockReserved")
    assert (await saga.reservation(early))["status"] == "reserved"
    assert (await saga.reservation(late))["status"] == "backordered"
    assert await saga.invariant_violations(a, b, early, order_id, late, split) == []


async def test_two_reserved_orders_merge_into_one_and_a_second_merge_of_them_is_refused(saga: Saga) -> None:
    a = new_id("A")
    await saga.oms.receive(a, 2, "NORTH")
    await saga.oms.receive(a, 1, "SOUTH")
    first, second, merged = new_id("first"), new_id("second"), new_id("merged")
    await saga.reserve(first, **{a: 2})
    await saga.reserve(second, **{a: 1})
    sources = (
        ReservationMove(from_order_id=first, lines=lines(**{a: 2})),
        ReservationMove(from_order_id=second, lines=lines(**{a: 1})),
    )

    await saga.send(MoveReservations(order_id=merged, move_id="mv-merge", sources=sources))

    reserved = await saga.answer(merged, "StockReserved")
    assert sorted((r["warehouse"], r["quantity"]) for r in reserved["allocations"]) == [
        ("NORTH", 2),
        ("SOUTH", 1),
    ]
    for order_id in (first, second):
        answer = await saga.answer(order_id, "ReservationAdjusted")
        assert answer["lines"] == [] and answer["moved_to"] == merged
        assert (await saga.reservation(order_id))["status"] == "released"
    assert levels(await saga.stock(a)) == {"NORTH": (2, 2), "SOUTH": (1, 1)}

    again = new_id("again")
    await saga.send(MoveReservations(order_id=again, move_id="mv-again", sources=sources))

    refused = await saga.answer(again, "ReservationAdjustmentRefused")
    assert first in refused["reason"]
    assert levels(await saga.stock(a)) == {"NORTH": (2, 2), "SOUTH": (1, 1)}
    assert await saga.invariant_violations(a, first, second, merged, again) == []
