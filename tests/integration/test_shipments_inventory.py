"""Products and pick/pack/ship on the inventory service (issue 9), on the real broker and
database: CreateShipments and ReleaseStock arrive on the inventory commands topic as the order
saga sends them; the warehouse and the carrier drive shipments over HTTP; the goods leave stock
on dispatch (on hand and reserved fall together) and never twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from libs.events import encode, make_envelope
from libs.events.inventory import CreateShipments, InventoryCommand, ReleaseStock, ReserveStock
from libs.events.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS
from libs.events.values import Shipping, ShippingMethod, SkuQuantity
from libs.runtime.db import drop_databases
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from services.inventory.domain.shipment import shipment_id_for
from tests.conftest import RUN_ID, consumed_through, eventually
from tests.integration.conftest import HARNESS_ENV
from tools import invariants
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration

RUN = f"{RUN_ID}ship"
PARTITIONS = 4
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def ship_settings() -> RuntimeSettings:
    return RuntimeSettings(db_prefix=f"ome2e_{RUN}", topic_namespace=f"t{RUN}.", topic_partitions=PARTITIONS)


@pytest.fixture(scope="module")
async def inventory_platform(ship_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    """Inventory alone: the commands the order saga would send are published by the tests."""
    platform = Platform(
        RUN,
        {
            "OM_DB_PREFIX": ship_settings.db_prefix,
            "OM_TOPIC_NAMESPACE": ship_settings.topic_namespace,
            "OM_TOPIC_PARTITIONS": str(PARTITIONS),
            "OM_LOG_JSON": "false",
            **HARNESS_ENV,
        },
        services=("inventory",),
    )
    await asyncio.to_thread(platform.start)
    try:
        async with httpx.AsyncClient(
            base_url=platform.url("inventory"), headers=bearer("admin")
        ) as inventory:
            for code in ("NORTH", "SOUTH"):
                body = {"code": code, "name": f"{code} DC", "region": code.lower()}
                response = await inventory.post("/warehouses", json=body)
                assert response.status_code in (200, 201), response.text
        yield platform
    finally:
        platform.stop()
        await drop_databases(ship_settings)


class Warehouse:
    """The inventory API as a warehouse clerk and a carrier use it, and the saga's commands."""

    def __init__(self, platform: Platform, settings: RuntimeSettings) -> None:
        self.http = httpx.AsyncClient(base_url=platform.url("inventory"), timeout=30, headers=bearer("admin"))
        self.settings = settings

    async def close(self) -> None:
        await self.http.aclose()

    async def receive(self, sku: str, quantity: int, warehouse: str) -> None:
        body = {"sku": sku, "warehouse": warehouse, "quantity": quantity}
        response = await self.http.post("/stock/receipts", json=body)
        assert response.status_code == 201, response.text

    async def stock(self, sku: str) -> dict[tuple[str, str], int]:
        """(warehouse, on_hand|reserved|available) -> quantity."""
        response = await self.http.get(f"/stock/{sku}")
        assert response.status_code == 200, response.text
        return {
            (row["warehouse"], column): row[column]
            for row in response.json()["warehouses"]
            for column in ("on_hand", "reserved", "available")
        }

    async def send(self, command: InventoryCommand) -> RecordMetadata:
        envelope = make_envelope(
            command,
            event_id=uuid4(),
            aggregate_id=command.order_id,
            aggregate_version=0,
            occurred_at=datetime.now(UTC),
            correlation_id=command.order_id,
            causation_id=None,
            actor="service:order-saga",
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        try:
            return await producer.send_and_wait(
                self.settings.topic(INVENTORY_COMMANDS), encode(envelope), key=command.order_id.encode()
            )
        finally:
            await producer.stop()

    async def handled(self, record: RecordMetadata) -> None:
        """Wait until the inventory consumer has committed past `record` (so it is applied)."""
        group = self.settings.topic("inventory-commands")
        await eventually(lambda: consumed_through(self.settings, group, record), timeout=60)

    async def reserve(self, order_id: str, **quantities: int) -> list[dict[str, Any]]:
        lines = tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())
        await self.send(ReserveStock(order_id=order_id, lines=lines))

        async def reservation() -> dict[str, Any] | None:
            response = await self.http.get(f"/reservations/{order_id}")
            return dict(response.json()) if response.status_code == 200 else None

        found = await eventually_value(reservation, lambda r: r is not None and r["status"] == "reserved")
        return list(found["allocations"])

    async def shipments(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.http.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return list(response.json())

    async def ship(self, order_id: str, method: ShippingMethod, expected: int = 1) -> list[dict[str, Any]]:
        await self.send(CreateShipments(order_id=order_id, shipping=Shipping(method=method)))
        return list(await eventually_value(lambda: self.shipments(order_id), lambda s: len(s) == expected))

    async def step(self, shipment_id: str, step: str, body: Any = None, status: int = 200) -> dict[str, Any]:
        # A clerk of her own: the actor on the shipment's history is the token's subject.
        response = await self.http.post(
            f"/shipments/{shipment_id}/{step}", json=body, headers=bearer("warehouse", subject="clerk-7")
        )
        assert response.status_code == status, response.text
        return dict(response.json())

    async def track(self, tracking_number: str, status: str, location: str, at: str) -> httpx.Response:
        body = {"tracking_number": tracking_number, "status": status, "location": location, "occurred_at": at}
        return await self.http.post("/carrier-events", json=body)


@pytest.fixture
async def wh(inventory_platform: Platform, ship_settings: RuntimeSettings) -> AsyncIterator[Warehouse]:
    client = Warehouse(inventory_platform, ship_settings)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def sku() -> str:
    return f"SKU-{uuid4().hex[:10]}"


@pytest.fixture
def order_id() -> str:
    return f"order-{uuid4().hex[:12]}"


async def events_of(settings: RuntimeSettings, stream_id: str) -> list[tuple[str, dict[str, Any]]]:
    db = await asyncpg.connect(settings.dsn("inventory"))
    try:
        rows = await db.fetch(
            "SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY version", stream_id
        )
    finally:
        await db.close()
    return [(row["event_type"], json.loads(row["payload"])) for row in rows]


async def published(settings: RuntimeSettings, aggregate_id: str) -> list[str]:
    """Types of the inventory events published for an aggregate, read to the topic's end."""
    topic = settings.topic(INVENTORY_EVENTS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[str] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    if record.key == aggregate_id.encode():
                        found.append(json.loads(record.value)["event_type"])
        return found
    finally:
        await consumer.stop()


def statuses(shipment: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in shipment["history"]]


# -- creating shipments -------------------------------------------------------------------------


async def test_an_order_reserved_across_north_and_south_ships_as_two_parcels_once(
    wh: Warehouse, sku: str, order_id: str, ship_settings: RuntimeSettings
) -> None:
    await wh.receive(sku, 3, "NORTH")
    await wh.receive(sku, 2, "SOUTH")
    product = {
        "name": "Chair",
        "category": "seating",
        "unit": "piece",
        "weight_kg": "6.250",
        "manufactured": True,
    }
    assert (await wh.http.put(f"/products/{sku}", json=product)).status_code == 201
    allocations = await wh.reserve(order_id, **{sku: 5})
    assert {(a["warehouse"], a["quantity"]) for a in allocations} == {("NORTH", 3), ("SOUTH", 2)}

    shipments = await wh.ship(order_id, "standard", expected=2)

    assert [(s["warehouse"], s["lines"], s["status"], s["method"], s["weight_kg"]) for s in shipments] == [
        ("NORTH", [{"sku": sku, "quantity": 3}], "pending", "standard", "18.750"),
        ("SOUTH", [{"sku": sku, "quantity": 2}], "pending", "standard", "12.500"),
    ]
    assert [s["shipment_id"] for s in shipments] == [
        shipment_id_for(order_id, "NORTH"),
        shipment_id_for(order_id, "SOUTH"),
    ]
    assert all(s["carrier"] is None and s["tracking_number"] is None for s in shipments)
    assert [statuses(s) for s in shipments] == [["pending"], ["pending"]]
    single = await wh.http.get(f"/shipments/{shipments[0]['shipment_id']}")
    assert single.status_code == 200 and single.json() == shipments[0]

    again = await wh.send(CreateShipments(order_id=order_id, shipping=Shipping(method="express")))
    await wh.handled(again)

    assert await wh.shipments(order_id) == shipments
    for shipment in shipments:
        assert [t for t, _ in await events_of(ship_settings, f"shipment-{shipment['shipment_id']}")] == [
            "ShipmentCreated"
        ]
    published_types = await eventually_value(
        lambda: published(ship_settings, shipments[0]["shipment_id"]), lambda found: len(found) == 1
    )
    assert published_types == ["ShipmentCreated"]


async def test_an_unknown_sku_leaves_the_weight_unknown_and_an_unreserved_order_ships_nothing(
    wh: Warehouse, sku: str, order_id: str
) -> None:
    await wh.receive(sku, 2, "NORTH")
    await wh.reserve(order_id, **{sku: 2})

    [shipment] = await wh.ship(order_id, "express")
    nothing = await wh.send(
        CreateShipments(order_id=f"{order_id}-never-reserved", shipping=Shipping(method="express"))
    )
    await wh.handled(nothing)

    assert shipment["weight_kg"] is None and shipment["method"] == "express"
    assert await wh.shipments(f"{order_id}-never-reserved") == []


# -- through the warehouse -------------------------------------------------------------------------


async def test_pick_pack_dispatch_deliver_takes_the_goods_out_on_dispatch(
    wh: Warehouse, sku: str, order_id: str
) -> None:
    await wh.receive(sku, 10, "NORTH")
    await wh.reserve(order_id, **{sku: 4})
    [shipment] = await wh.ship(order_id, "standard")
    shipment_id = shipment["shipment_id"]
    before = await wh.stock(sku)

    picked = await wh.step(shipment_id, "pick")
    packed = await wh.step(shipment_id, "pack", {"weight_kg": "3.2", "parcels": 2})
    packed_stock = await wh.stock(sku)
    missing = await wh.http.post(f"/shipments/{shipment_id}/dispatch", json={"tracking_number": "T-1"})
    tracking = f"TRK-{uuid4().hex[:8]}"
    dispatched = await wh.step(shipment_id, "dispatch", {"carrier": "DHL", "tracking_number": tracking})
    after_dispatch = await wh.stock(sku)
    again = await wh.step(shipment_id, "dispatch", {"carrier": "DHL", "tracking_number": tracking})
    other = await wh.http.post(
        f"/shipments/{shipment_id}/dispatch", json={"carrier": "DHL", "tracking_number": "X"}
    )
    delivered = await wh.step(shipment_id, "deliver")

    assert (before[("NORTH", "on_hand")], before[("NORTH", "reserved")]) == (10, 4)
    assert (picked["status"], packed["status"], packed["weight_kg"], packed["parcels"]) == (
        "picking",
        "packed",
        "3.200",
        2,
    )
    assert packed_stock == before
    assert missing.status_code == 422
    assert missing.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in missing.json()["errors"]] == ["carrier"]
    assert (dispatched["status"], dispatched["carrier"], dispatched["tracking_number"]) == (
        "dispatched",
        "DHL",
        tracking,
    )
    assert (after_dispatch[("NORTH", "on_hand")], after_dispatch[("NORTH", "reserved")]) == (6, 0)
    assert after_dispatch[("NORTH", "available")] == before[("NORTH", "available")] == 6
    assert again == dispatched
    assert await wh.stock(sku) == after_dispatch  # nothing leaves twice
    assert other.status_code == 409 and tracking in other.json()["detail"]
    assert delivered["status"] == "delivered"
    assert statuses(delivered) == ["pending", "picking", "packed", "dispatched", "delivered"]
    assert {entry["actor"] for entry in delivered["history"][1:]} == {"user:clerk-7"}
    assert all(entry["at"] for entry in delivered["history"])


async def test_a_pickup_order_is_packed_made_ready_and_collected(
    wh: Warehouse, sku: str, order_id: str
) -> None:
    await wh.receive(sku, 5, "SOUTH")
    await wh.reserve(order_id, **{sku: 2})
    [shipment] = await wh.ship(order_id, "pickup")
    shipment_id = shipment["shipment_id"]
    for step in ("pick", "pack"):
        await wh.step(shipment_id, step)

    dispatch = await wh.http.post(
        f"/shipments/{shipment_id}/dispatch", json={"carrier": "DHL", "tracking_number": "T"}
    )
    ready = await wh.step(shipment_id, "ready-for-pickup")
    ready_stock = await wh.stock(sku)
    collected = await wh.step(shipment_id, "collect")
    collected_again = await wh.step(shipment_id, "collect")

    assert ready["status"] == "ready_for_pickup"
    assert (ready_stock[("SOUTH", "on_hand")], ready_stock[("SOUTH", "reserved")]) == (5, 2)
    assert dispatch.status_code == 409
    assert dispatch.json()["detail"].startswith(f"shipment {shipment_id} is packed and ships by pickup")
    assert collected["status"] == "collected" and collected_again == collected
    assert statuses(collected) == ["pending", "picking", "packed", "ready_for_pickup", "collected"]
    assert await wh.stock(sku) == {
        ("SOUTH", "on_hand"): 3,
        ("SOUTH", "reserved"): 0,
        ("SOUTH", "available"): 3,
    }


async def test_every_step_that_does_not_follow_is_refused_naming_both_statuses(
    wh: Warehouse, sku: str, order_id: str
) -> None:
    await wh.receive(sku, 2, "NORTH")
    await wh.reserve(order_id, **{sku: 1})
    [shipment] = await wh.ship(order_id, "standard")
    shipment_id = shipment["shipment_id"]
    carried = {"carrier": "UPS", "tracking_number": f"TRK-{uuid4().hex[:8]}"}
    refused: dict[str, list[str]] = {
        "pending": ["pack", "dispatch", "deliver", "ready-for-pickup", "collect"],
        "picking": ["dispatch", "deliver", "ready-for-pickup", "collect"],
        "packed": ["pick", "deliver", "ready-for-pickup", "collect"],
        "dispatched": ["pick", "pack", "ready-for-pickup", "collect"],
        "delivered": ["pick", "pack", "dispatch", "ready-for-pickup", "collect"],
    }
    target = {
        "pick": "picking",
        "pack": "packed",
        "dispatch": "dispatched",
        "deliver": "delivered",
        "ready-for-pickup": "ready_for_pickup",
        "collect": "collected",
    }
    forward = {"pending": "pick", "picking": "pack", "packed": "dispatch", "dispatched": "deliver"}

    for status, steps in refused.items():
        for step in steps:
            body = carried if step == "dispatch" else None
            response = await wh.http.post(f"/shipments/{shipment_id}/{step}", json=body)
            assert response.status_code == 409, (status, step, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            detail = response.json()["detail"]
            assert f"is {status}" in detail and f"become {target[step]}" in detail, detail
        if status in forward:
            body = carried if forward[status] == "dispatch" else None
            await wh.step(shipment_id, forward[status], body)
    unknown = await wh.http.post(f"/shipments/{uuid4()}/pick")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM_JSON
    assert (await wh.http.get(f"/shipments/{uuid4()}")).status_code == 404


# -- the carrier ------------------------------------------------------------------------------------


async def test_carrier_reports_join_the_history_once_and_delivered_delivers(
    wh: Warehouse, sku: str, order_id: str, ship_settings: RuntimeSettings
) -> None:
    await wh.receive(sku, 1, "NORTH")
    await wh.reserve(order_id, **{sku: 1})
    [shipment] = await wh.ship(order_id, "express")
    shipment_id, tracking = shipment["shipment_id"], f"TRK-{uuid4().hex[:8]}"
    await wh.step(shipment_id, "pick")
    await wh.step(shipment_id, "pack")
    await wh.step(shipment_id, "dispatch", {"carrier": "GLS", "tracking_number": tracking})
    unknown_number = f"NOPE-{uuid4().hex[:8]}"
    other_order = f"{order_id}-2"
    await wh.receive(sku, 1, "NORTH")
    await wh.reserve(other_order, **{sku: 1})
    [other] = await wh.ship(other_order, "express")
    await wh.step(other["shipment_id"], "pick")
    await wh.step(other["shipment_id"], "pack")

    reused = await wh.http.post(
        f"/shipments/{other['shipment_id']}/dispatch", json={"carrier": "GLS", "tracking_number": tracking}
    )
    unknown = await wh.track(unknown_number, "in_transit", "Hub", "2026-03-01T08:00:00Z")
    first = await wh.track(tracking, "in_transit", "Leipzig hub", "2026-03-01T08:00:00Z")
    repeated = await wh.track(tracking, "in_transit", "Leipzig hub", "2026-03-01T08:00:00Z")
    delivered = await wh.track(tracking, "delivered", "Front door", "2026-03-02T10:30:00+01:00")

    assert reused.status_code == 409
    assert reused.json()["detail"] == f"tracking number {tracking} already names shipment {shipment_id}"
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM_JSON
    db = await asyncpg.connect(ship_settings.dsn("inventory"))
    try:
        mentions = await db.fetchval(
            "SELECT count(*) FROM events WHERE payload::text LIKE $1", f"%{unknown_number}%"
        )
    finally:
        await db.close()
    assert mentions == 0
    assert (first.status_code, repeated.status_code, delivered.status_code) == (201, 200, 201)
    assert repeated.json() == first.json()
    assert statuses(first.json()) == ["pending", "picking", "packed", "dispatched", "in_transit"]
    final = delivered.json()
    assert final["status"] == "delivered"
    assert statuses(final) == [
        "pending",
        "picking",
        "packed",
        "dispatched",
        "in_transit",
        "delivered",
        "delivered",
    ]
    assert final["history"][4]["location"] == "Leipzig hub"
    assert [t for t, _ in await events_of(ship_settings, f"shipment-{shipment_id}")][-3:] == [
        "ShipmentTracked",
        "ShipmentTracked",
        "ShipmentDelivered",
    ]


# -- the pick list -----------------------------------------------------------------------------------


async def test_the_pick_list_groups_what_is_pending_or_picking_by_sku(wh: Warehouse, sku: str) -> None:
    other_sku = f"{sku}-B"
    await wh.receive(sku, 10, "NORTH")
    await wh.receive(other_sku, 10, "NORTH")
    orders = [f"order-{uuid4().hex[:12]}" for _ in range(3)]
    await wh.reserve(orders[0], **{sku: 2, other_sku: 1})
    await wh.reserve(orders[1], **{sku: 3})
    await wh.reserve(orders[2], **{sku: 4})
    first, second, third = [(await wh.ship(order, "standard"))[0]["shipment_id"] for order in orders]
    await wh.step(second, "pick")
    await wh.step(third, "pick")
    await wh.step(third, "pack")  # packed: nothing left to pick

    response = await wh.http.get("/warehouses/NORTH/pick-list")

    assert response.status_code == 200
    assert response.json()["warehouse"] == "NORTH"
    mine = [item for item in response.json()["items"] if item["sku"] in (sku, other_sku)]
    assert mine == [
        {
            "sku": sku,
            "quantity": 5,
            "shipments": [
                {"shipment_id": first, "order_id": orders[0], "quantity": 2, "status": "pending"},
                {"shipment_id": second, "order_id": orders[1], "quantity": 3, "status": "picking"},
            ],
        },
        {
            "sku": other_sku,
            "quantity": 1,
            "shipments": [{"shipment_id": first, "order_id": orders[0], "quantity": 1, "status": "pending"}],
        },
    ]
    assert (await wh.http.get("/warehouses/NOWHERE/pick-list")).status_code == 404


# -- cancellation ------------------------------------------------------------------------------------


async def test_release_stock_cancels_the_shipments_that_have_not_left(
    wh: Warehouse, sku: str, order_id: str
) -> None:
    await wh.receive(sku, 3, "NORTH")
    await wh.receive(sku, 2, "SOUTH")
    await wh.reserve(order_id, **{sku: 5})
    north, south = await wh.ship(order_id, "standard", expected=2)
    await wh.step(north["shipment_id"], "pick")
    await wh.step(north["shipment_id"], "pack")
    await wh.step(
        north["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"T-{uuid4().hex[:8]}"}
    )
    await wh.step(south["shipment_id"], "pick")

    release = await wh.send(ReleaseStock(order_id=order_id, reason="customer cancelled"))
    await wh.handled(release)

    after = {s["warehouse"]: s for s in await wh.shipments(order_id)}
    assert (after["NORTH"]["status"], after["SOUTH"]["status"]) == ("dispatched", "cancelled")
    assert statuses(after["SOUTH"]) == ["pending", "picking", "cancelled"]
    assert await wh.stock(sku) == {
        ("NORTH", "on_hand"): 0,
        ("NORTH", "reserved"): 0,
        ("NORTH", "available"): 0,
        ("SOUTH", "on_hand"): 2,
        ("SOUTH", "reserved"): 0,
        ("SOUTH", "available"): 2,
    }
    refused = await wh.http.post(f"/shipments/{south['shipment_id']}/pack")
    assert refused.status_code == 409 and "is cancelled" in refused.json()["detail"]


# -- the product catalogue ---------------------------------------------------------------------------


async def test_products_are_put_read_and_listed_a_page_at_a_time(
    wh: Warehouse, sku: str, ship_settings: RuntimeSettings
) -> None:
    category = f"cat-{uuid4().hex[:8]}"
    body = {
        "name": "Oak table",
        "category": category,
        "unit": "piece",
        "weight_kg": "23.5",
        "manufactured": True,
        "list_prices": {"EUR": "499.00"},
    }

    created = await wh.http.put(f"/products/{sku}", json=body)
    same = await wh.http.put(f"/products/{sku}", json={**body, "weight_kg": "23.500"})
    changed = await wh.http.put(f"/products/{sku}", json={**body, "name": "Walnut table", "list_prices": {}})
    read = await wh.http.get(f"/products/{sku}")
    invalid = await wh.http.put(f"/products/{sku}", json={**body, "weight_kg": "-1"})

    assert (created.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert created.json() == {**body, "sku": sku, "weight_kg": "23.500"}
    assert same.json() == created.json()
    assert (
        read.json()
        == changed.json()
        == {**body, "sku": sku, "weight_kg": "23.500", "name": "Walnut table", "list_prices": {}}
    )
    assert invalid.status_code == 422 and [e["field"] for e in invalid.json()["errors"]] == ["weight_kg"]
    events = await events_of(ship_settings, f"product-{sku}")
    assert [t for t, _ in events] == ["ProductRegistered", "ProductUpdated"]
    assert events[1][1]["changed"] == ["name", "list_prices"]
    assert await eventually_value(lambda: published(ship_settings, sku), lambda found: len(found) == 2) == [
        "ProductRegistered",
        "ProductUpdated",
    ]
    assert (await wh.http.get(f"/products/{sku}-missing")).status_code == 404

    others = [f"{sku}-{n}" for n in range(1, 4)]
    for other in others:
        assert (await wh.http.put(f"/products/{other}", json=body)).status_code == 201
    assert (
        await wh.http.put(f"/products/{sku}-x", json={**body, "category": f"{category}-x"})
    ).status_code == 201
    first = (await wh.http.get("/products", params={"category": category, "limit": 3})).json()
    second = (
        await wh.http.get(
            "/products", params={"category": category, "limit": 3, "cursor": first["next_cursor"]}
        )
    ).json()
    bad_cursor = await wh.http.get("/products", params={"cursor": "!!"})

    assert [p["sku"] for p in first["items"]] == [sku, *others[:2]]
    assert first["next_cursor"] is not None
    assert [p["sku"] for p in second["items"]] == others[2:]
    assert second["next_cursor"] is None
    assert bad_cursor.status_code == 422


# -- the invariant checker -----------------------------------------------------------------------------


async def test_the_invariant_checker_follows_goods_out_and_flags_a_shipment_that_left_twice(
    wh: Warehouse, sku: str, order_id: str, ship_settings: RuntimeSettings
) -> None:
    await wh.receive(sku, 3, "NORTH")
    await wh.receive(sku, 2, "SOUTH")
    await wh.reserve(order_id, **{sku: 5})
    north, south = await wh.ship(order_id, "standard", expected=2)
    for step in ("pick", "pack"):
        await wh.step(north["shipment_id"], step)
    await wh.step(
        north["shipment_id"], "dispatch", {"carrier": "DHL", "tracking_number": f"T-{uuid4().hex[:8]}"}
    )
    await wh.send(ReleaseStock(order_id=order_id, reason="customer cancelled"))
    await eventually_value(lambda: wh.shipments(order_id), lambda s: s[1]["status"] == "cancelled")

    db = await asyncpg.connect(ship_settings.dsn("inventory"))
    try:
        clean = invariants.Report()
        await invariants._stock(db, clean)
        dispatched = await db.fetchrow(
            "SELECT version, payload FROM events WHERE stream_id = $1 AND event_type = 'StockDispatched'",
            f"sku-{sku}",
        )
        top = await db.fetchval("SELECT max(version) FROM events WHERE stream_id = $1", f"sku-{sku}")
        async with db.transaction():  # the same goods out again, then rolled back
            await db.execute(
                "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, event_version,"
                " occurred_at, correlation_id, actor, payload)"
                " VALUES ($1, 'sku', $2, $3, 'StockDispatched', 1, now(), 'test', 'test', $4::jsonb)",
                f"sku-{sku}",
                top + 1,
                uuid4(),
                dispatched["payload"],
            )
            twice = invariants.Report()
            await invariants._stock(db, twice)
            raise _RollBack
    except _RollBack:
        pass
    finally:
        await db.close()

    assert [v for v in clean.violations if sku in v] == []
    shipment = north["shipment_id"]
    flagged = [v for v in twice.violations if sku in v and "read model" not in v]
    # The goods-out rules themselves; the stock and shipment rules the checker also has flag
    # the same fault from their side (negative on hand, lines that left twice).
    assert f"inventory: shipment {shipment} took {sku} out of NORTH twice" in flagged
    assert f"inventory: 3 of {sku} left NORTH for order {order_id}, which held 0 there" in flagged


class _RollBack(Exception):
    pass
