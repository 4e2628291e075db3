"""Warehouse operations (issue 9) through the real order, inventory and billing services:
transfers between warehouses, stock counts, adjustments that revoke reservations, reorder
points and their low-stock alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.events import decode
from libs.events.topics import INVENTORY_EVENTS
from libs.runtime.settings import RuntimeSettings
from libs.security.dev_issuer import bearer
from tests.integration.conftest import Oms, order_body
from tools.processes import eventually_value

pytestmark = pytest.mark.integration

LONGEST_NOTE = ("water came through the roof " * 80)[:2000]


async def inventory_events(settings: RuntimeSettings, aggregate_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(event type, payload) of every inventory event of one aggregate, in the order published
    (one aggregate's events share a key, so a partition)."""
    topic = settings.topic(INVENTORY_EVENTS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, dict[str, Any]]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    envelope = decode(record.value).envelope
                    if (
                        envelope.aggregate_id == aggregate_id
                        and record.offset < ends[TopicPartition(record.topic, record.partition)]
                    ):
                        found.append((envelope.event_type, envelope.payload))
        return found
    finally:
        await consumer.stop()


async def published(
    settings: RuntimeSettings, aggregate_id: str, *types: str, count: int = 1
) -> list[dict[str, Any]]:
    """The payloads of the aggregate's events of these types, once `count` of them are out."""

    async def fetch() -> list[tuple[str, dict[str, Any]]]:
        return [e for e in await inventory_events(settings, aggregate_id) if e[0] in types]

    return [payload for _, payload in await eventually_value(fetch, lambda found: len(found) >= count)]


def at(stock: dict[str, Any], warehouse: str) -> dict[str, Any]:
    return next(w for w in stock["warehouses"] if w["warehouse"] == warehouse)


def owned(stock: dict[str, Any]) -> int:
    return int(stock["on_hand"]) + int(stock["in_transit"])


async def post(
    oms: Oms, path: str, body: dict[str, Any] | None = None, status: int = 200, **kw: Any
) -> dict[str, Any]:
    response = await oms.inventory.post(path, json=body, **kw)
    assert response.status_code == status, response.text
    return dict(response.json())


async def reservation(oms: Oms, order_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await oms.inventory.get(f"/reservations/{order_id}")
        return dict(response.json()) if response.status_code == 200 else {}

    return dict(
        await eventually_value(
            fetch, lambda found: found.get("status") in ("reserved", "backordered", "refused")
        )
    )


def transfer_body(
    sku: str, quantity: int, source: str = "NORTH", destination: str = "SOUTH"
) -> dict[str, Any]:
    return {
        "from_warehouse": source,
        "to_warehouse": destination,
        "lines": [{"sku": sku, "quantity": quantity}],
        "reference": f"T-{uuid4().hex[:12]}",
    }


# -- transfers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rest", ["received", "written_off"])
async def test_a_partial_transfer_conserves_the_total_until_the_rest_is_received_or_written_off(
    oms: Oms, sku: str, rest: str
) -> None:
    await oms.receive(sku, 10, "NORTH")
    body = transfer_body(sku, 6)

    requested = await post(oms, "/transfers", body, status=201)
    assert requested["status"] == "requested"
    assert (await post(oms, "/transfers", body))["transfer_id"] == requested["transfer_id"]  # a repeat: 200
    transfer_id = requested["transfer_id"]

    await post(oms, f"/transfers/{transfer_id}/dispatch")
    moving = await oms.stock(sku)
    assert (at(moving, "NORTH")["on_hand"], at(moving, "NORTH")["in_transit_out"]) == (4, 6)
    assert (at(moving, "SOUTH")["on_hand"], at(moving, "SOUTH")["available"]) == (0, 0)
    assert at(moving, "SOUTH")["in_transit_in"] == 6
    assert (moving["available"], moving["in_transit"], owned(moving)) == (4, 6, 10)

    partial = await post(oms, f"/transfers/{transfer_id}/receive", {"lines": [{"sku": sku, "quantity": 4}]})
    assert partial["status"] == "partially_received"
    assert partial["lines"] == [{"sku": sku, "quantity": 6, "received": 4, "written_off": 0, "in_transit": 2}]
    halfway = await oms.stock(sku)
    assert (at(halfway, "SOUTH")["on_hand"], at(halfway, "SOUTH")["in_transit_in"]) == (4, 2)
    assert (halfway["in_transit"], owned(halfway)) == (2, 10)

    if rest == "received":
        done = await post(oms, f"/transfers/{transfer_id}/receive", {"lines": [{"sku": sku, "quantity": 2}]})
        expected_total = 10
    else:
        done = await post(oms, f"/transfers/{transfer_id}/write-off", {"reason": "fell off the truck"})
        assert [(w["sku"], w["quantity"], w["reason"]) for w in done["write_offs"]] == [
            (sku, 2, "fell off the truck")
        ]
        expected_total = 10 - 2
    after = await oms.stock(sku)
    assert done["status"] == "completed"
    assert (after["in_transit"], owned(after), at(after, "SOUTH")["in_transit_in"]) == (0, expected_total, 0)
    assert at(after, "NORTH")["in_transit_out"] == 0
    cancelled = await oms.inventory.post(f"/transfers/{transfer_id}/cancel")
    assert cancelled.status_code == 409, cancelled.text


async def test_the_same_transfer_reference_with_other_content_is_refused_naming_the_difference(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 10, "NORTH")
    body = transfer_body(sku, 3)
    await post(oms, "/transfers", body, status=201)

    response = await oms.inventory.post("/transfers", json={**body, "lines": [{"sku": sku, "quantity": 4}]})

    assert response.status_code == 409, response.text
    assert f"{sku} x 4 instead of 3" in response.json()["detail"]


async def test_a_transfer_of_unavailable_stock_is_refused_at_request_and_at_dispatch(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5, "NORTH")
    first = await oms.place(order_body(sku, 3))
    assert (await reservation(oms, first))["status"] == "reserved"

    refused = await oms.inventory.post("/transfers", json=transfer_body(sku, 4))

    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == f"SKU {sku}: 2 available at NORTH, the transfer asks for 4"
    requested = await post(oms, "/transfers", transfer_body(sku, 2), status=201)
    second = await oms.place(order_body(sku, 1))
    assert (await reservation(oms, second))["status"] == "reserved"
    at_dispatch = await oms.inventory.post(f"/transfers/{requested['transfer_id']}/dispatch")
    assert at_dispatch.status_code == 409, at_dispatch.text
    assert at_dispatch.json()["detail"] == f"SKU {sku}: 1 available at NORTH, the transfer asks for 2"
    cancelled = await post(oms, f"/transfers/{requested['transfer_id']}/cancel", {"reason": "not enough"})
    assert cancelled["status"] == "cancelled"


async def test_received_transfer_stock_fills_a_backorder(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 8, "SOUTH")
    transfer = await post(oms, "/transfers", transfer_body(sku, 4, "SOUTH", "NORTH"), status=201)
    await post(oms, f"/transfers/{transfer['transfer_id']}/dispatch")
    order_id = await oms.place(order_body(sku, 6))
    await oms.wait_status(order_id, "awaiting_stock")
    assert [b["order_id"] for b in (await oms.stock(sku))["backorders"]] == [order_id]

    await post(oms, f"/transfers/{transfer['transfer_id']}/receive", {"lines": [{"sku": sku, "quantity": 4}]})

    filled = await reservation(oms, order_id)
    assert filled["status"] == "reserved"
    assert sorted((a["warehouse"], a["quantity"]) for a in filled["allocations"]) == [
        ("NORTH", 4),
        ("SOUTH", 2),
    ]
    assert (await oms.stock(sku))["backorders"] == []
    await oms.wait_status(order_id, "awaiting_payment")


# -- stock counts and adjustments ------------------------------------------------------------------


async def test_a_count_with_movements_during_it_posts_only_the_real_variances(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    other = f"{sku}-B"
    await oms.receive(sku, 10, "NORTH")
    await oms.receive(other, 4, "NORTH")
    count = await post(oms, "/stock-counts", {"warehouse": "NORTH", "skus": [sku, other]}, status=201)
    count_id = count["count_id"]
    assert [(line["sku"], line["expected"]) for line in count["lines"]] == [(sku, 10), (other, 4)]

    await oms.receive(sku, 5, "NORTH")  # arrives while the count is open, before the shelf is counted
    await post(oms, f"/stock-counts/{count_id}/lines", {"sku": sku, "counted": 14})
    await post(oms, f"/stock-counts/{count_id}/lines", {"sku": other, "counted": 3})
    counted = await post(
        oms, f"/stock-counts/{count_id}/lines", {"sku": other, "counted": 5}
    )  # the last wins

    lines = {line["sku"]: line for line in counted["lines"]}
    assert (
        lines[sku]["expected"],
        lines[sku]["movements"],
        lines[sku]["counted"],
        lines[sku]["variance"],
    ) == (
        10,
        5,
        14,
        -1,
    )
    assert (lines[other]["counted"], lines[other]["variance"]) == (5, 1)

    posted = await post(oms, f"/stock-counts/{count_id}/post", headers=bearer("warehouse", subject="auditor"))

    assert (posted["status"], posted["posted_by"]) == ("posted", "user:auditor")
    assert (await oms.stock(sku))["on_hand"] == 14
    assert (await oms.stock(other))["on_hand"] == 5
    (adjusted,) = await published(e2e_settings, sku, "StockAdjusted")
    assert (adjusted["delta"], adjusted["reason"], adjusted["approved_by"], adjusted["count_id"]) == (
        -1,
        "count",
        "user:auditor",
        count_id,
    )


async def test_an_adjustment_below_reserved_reserves_the_order_again_in_the_other_warehouse(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 5, "NORTH")
    await oms.receive(sku, 10, "SOUTH")
    order_id = await oms.place(order_body(sku, 5))  # a northern customer: NORTH is preferred
    await oms.wait_status(order_id, "awaiting_payment")
    assert (await reservation(oms, order_id))["allocations"] == [
        {"sku": sku, "warehouse": "NORTH", "quantity": 5}
    ]

    await post(
        oms,
        "/stock/adjustments",
        {"warehouse": "NORTH", "sku": sku, "delta": -3, "reason": "damage", "note": LONGEST_NOTE},
        status=201,
    )

    async def moved() -> dict[str, Any]:
        return await reservation(oms, order_id)

    again = await eventually_value(
        moved, lambda r: r["allocations"] != [{"sku": sku, "warehouse": "NORTH", "quantity": 5}]
    )
    assert (again["status"], again["allocations"]) == (
        "reserved",
        [{"sku": sku, "warehouse": "SOUTH", "quantity": 5}],
    )
    stock = await oms.stock(sku)
    assert (at(stock, "NORTH")["on_hand"], at(stock, "NORTH")["reserved"]) == (2, 0)
    assert at(stock, "SOUTH")["reserved"] == 5
    # The order's own events on the inventory topic: reserved, revoked, reserved again.
    events = await published(e2e_settings, order_id, "ReservationRevoked", "StockReserved", count=3)
    revoked, reserved = events[-2:]
    assert (revoked["sku"], revoked["warehouse"], revoked["quantity"]) == (sku, "NORTH", 3)
    assert "damage" in revoked["reason"]
    assert reserved["allocations"] == [{"sku": sku, "warehouse": "SOUTH", "quantity": 5}]

    async def timeline() -> list[dict[str, Any]]:
        return list((await oms.get_order(order_id))["timeline"])

    def says_why_and_reallocates(entries: list[dict[str, Any]]) -> bool:
        types = [entry["type"] for entry in entries]
        return (
            "OrderReservationRevoked" in types
            and "OrderStockAllocated" in types[types.index("OrderReservationRevoked") :]
        )

    entries = await eventually_value(timeline, says_why_and_reallocates)
    why = next(entry for entry in entries if entry["type"] == "OrderReservationRevoked")["details"]
    assert (why["warehouse"], why["quantity"]) == ("NORTH", 3)
    assert (await oms.get_order(order_id))["status"] == "awaiting_payment"


async def shipments_of(
    oms: Oms, order_id: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The order's shipments by warehouse, once `ready` says they are as expected."""

    async def fetch() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return sorted(response.json(), key=lambda s: (s["warehouse"], s["status"]))

    return list(await eventually_value(fetch, ready, timeout=60))


async def test_an_adjustment_moves_a_confirmed_order_s_shipment_to_the_warehouse_that_has_its_stock(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 2, "NORTH")
    await oms.receive(sku, 5, "SOUTH")
    address = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    order_id = await oms.place(
        order_body(sku, 2, "10.00", shipping={"method": "standard", "address": address})
    )
    invoice = await oms.invoice(order_id)
    assert (await oms.pay(order_id, invoice["amount"])).status_code == 201
    await oms.wait_status(order_id, "confirmed")
    (north,) = await shipments_of(oms, order_id, lambda found: len(found) == 1)
    assert (north["warehouse"], north["status"], north["lines"]) == (
        "NORTH",
        "pending",
        [{"sku": sku, "quantity": 2}],
    )
    await post(oms, f"/shipments/{north['shipment_id']}/pick")

    await post(
        oms,
        "/stock/adjustments",
        {"warehouse": "NORTH", "sku": sku, "delta": -2, "reason": "damage", "note": "crushed by a forklift"},
        status=201,
    )

    cancelled, south = await shipments_of(oms, order_id, lambda found: len(found) == 2)
    assert (cancelled["shipment_id"], cancelled["status"]) == (north["shipment_id"], "cancelled")
    assert (south["warehouse"], south["status"], south["lines"]) == (
        "SOUTH",
        "pending",
        [{"sku": sku, "quantity": 2}],
    )
    assert (await oms.stock(sku))["reserved"] == 2
    refused = await oms.inventory.post(f"/shipments/{north['shipment_id']}/pack")
    assert refused.status_code == 409, refused.text
    for action, body in (
        ("pick", None),
        ("pack", {"weight_kg": "2.0"}),
        ("dispatch", {"carrier": "DHL", "tracking_number": f"TRK-{order_id}"}),
        ("deliver", None),
    ):
        await post(oms, f"/shipments/{south['shipment_id']}/{action}", body)

    completed = await oms.wait_status(order_id, "completed", timeout=60)
    assert sorted((s["warehouse"], s["status"]) for s in completed["shipments"]) == [
        ("NORTH", "cancelled"),
        ("SOUTH", "delivered"),
    ]
    kinds = [entry["type"] for entry in completed["timeline"]]
    assert (
        kinds.index("OrderReservationRevoked") < kinds.index("OrderShipped") < kinds.index("OrderCompleted")
    )
    stock = await oms.stock(sku)
    assert (at(stock, "NORTH")["on_hand"], at(stock, "NORTH")["reserved"]) == (0, 0)
    assert (
        at(stock, "SOUTH")["on_hand"],
        at(stock, "SOUTH")["reserved"],
        at(stock, "SOUTH")["available"],
    ) == (3, 0, 3)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (
        3,
        0,
        3,
    )  # 7 received, 2 lost, 2 shipped


# -- reorder points ----------------------------------------------------------------------------


async def test_a_low_stock_alert_fires_once_and_clears_when_stock_recovers(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 10, "NORTH")
    response = await oms.inventory.put(f"/stock/{sku}/reorder-points/NORTH", json={"min": 5, "max": 20})
    assert response.status_code == 200, response.text

    async def alerts() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/stock/alerts")
        assert response.status_code == 200, response.text
        return [a for a in response.json() if a["sku"] == sku]

    assert await alerts() == []
    for delta in (-5, -1):  # to min, then below it: one alert
        await post(
            oms,
            "/stock/adjustments",
            {"warehouse": "NORTH", "sku": sku, "delta": delta, "reason": "loss"},
            status=201,
        )

    (alert,) = await alerts()
    assert (
        alert["warehouse"],
        alert["available"],
        alert["min"],
        alert["max"],
        alert["suggested_quantity"],
    ) == (
        "NORTH",
        4,
        5,
        20,
        16,
    )
    await oms.receive(sku, 10, "NORTH")
    assert await alerts() == []
    events = await published(e2e_settings, sku, "LowStockDetected", "LowStockCleared", count=2)
    detected = {k: events[0][k] for k in ("warehouse", "available", "min", "max", "suggested_quantity")}
    assert detected == {"warehouse": "NORTH", "available": 5, "min": 5, "max": 20, "suggested_quantity": 15}
    assert [e["available"] for e in events] == [5, 14]
