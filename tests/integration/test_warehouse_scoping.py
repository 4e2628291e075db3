"""Warehouse staff scoped to their warehouses (issue 10), through the real services: a token
scoped to NORTH acts in NORTH only (403 naming the warehouse elsewhere), reads only NORTH's
stock, and does not see SOUTH's shipments, transfers or counts at all; staff with no scope see
every warehouse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.runtime.http import PROBLEM_JSON
from libs.security.dev_issuer import bearer
from tests.integration.conftest import Oms, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration


@pytest.fixture
async def north_clerk(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    headers = bearer("warehouse", subject="north-clerk", warehouses=["NORTH"])
    async with httpx.AsyncClient(base_url=platform.url("inventory"), timeout=30, headers=headers) as client:
        yield client


@pytest.fixture
async def any_clerk(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """Warehouse staff without a warehouse scope: every warehouse."""
    headers = bearer("warehouse", subject="roaming-clerk")
    async with httpx.AsyncClient(base_url=platform.url("inventory"), timeout=30, headers=headers) as client:
        yield client


def refused_at(response: httpx.Response, warehouse: str) -> bool:
    return (
        response.status_code == 403
        and response.headers["content-type"] == PROBLEM_JSON
        and response.json()["warehouse"] == warehouse
        and warehouse in response.json()["detail"]
    )


def rows_by_warehouse(stock: dict[str, Any]) -> dict[str, int]:
    return {row["warehouse"]: row["on_hand"] for row in stock["warehouses"]}


async def south_shipment(oms: Oms, sku: str, shipping: dict[str, Any] | None = None) -> dict[str, Any]:
    """A paid order whose only stock is in SOUTH: its shipment is SOUTH's, pending."""
    await oms.receive(sku, 3, "SOUTH")
    order_id = await oms.place(order_body(sku, 1, "10.00", shipping=shipping))
    invoice = await oms.invoice(order_id)
    assert (await oms.pay(order_id, invoice["amount"])).status_code == 201

    async def shipments() -> list[dict[str, Any]]:
        response = await oms.inventory.get("/shipments", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        return list(response.json())

    (shipment,) = await eventually_value(shipments, lambda found: len(found) == 1, timeout=60)
    assert (shipment["warehouse"], shipment["status"]) == ("SOUTH", "pending")
    return dict(shipment)


async def test_staff_scoped_to_north_receive_there_and_are_refused_in_south_naming_it(
    oms: Oms, north_clerk: httpx.AsyncClient, sku: str
) -> None:
    await oms.receive(sku, 5, "SOUTH")

    received = await north_clerk.post(
        "/stock/receipts", json={"sku": sku, "warehouse": "NORTH", "quantity": 4}
    )
    receipt = await north_clerk.post(
        "/stock/receipts", json={"sku": sku, "warehouse": "SOUTH", "quantity": 4}
    )
    adjustment = await north_clerk.post(
        "/stock/adjustments", json={"warehouse": "SOUTH", "sku": sku, "delta": -2, "reason": "damage"}
    )
    count = await north_clerk.post("/stock-counts", json={"warehouse": "SOUTH", "skus": [sku]})
    reorder_point = await north_clerk.put(f"/stock/{sku}/reorder-points/SOUTH", json={"min": 1, "max": 9})

    assert received.status_code == 201, received.text
    assert refused_at(receipt, "SOUTH"), receipt.text
    assert refused_at(adjustment, "SOUTH"), adjustment.text
    assert refused_at(count, "SOUTH"), count.text
    assert refused_at(reorder_point, "SOUTH"), reorder_point.text
    assert rows_by_warehouse(await oms.stock(sku)) == {"NORTH": 4, "SOUTH": 5}  # SOUTH untouched


async def test_scoped_staff_read_only_their_warehouses_stock_and_unscoped_staff_read_all(
    oms: Oms, north_clerk: httpx.AsyncClient, any_clerk: httpx.AsyncClient, sku: str
) -> None:
    await oms.receive(sku, 4, "NORTH")
    await oms.receive(sku, 6, "SOUTH")

    north_view = await north_clerk.get(f"/stock/{sku}")
    full_view = await any_clerk.get(f"/stock/{sku}")
    north_warehouses = await north_clerk.get("/warehouses")
    all_warehouses = await any_clerk.get("/warehouses")

    assert north_view.status_code == 200, north_view.text
    assert rows_by_warehouse(north_view.json()) == {"NORTH": 4}
    assert (north_view.json()["on_hand"], north_view.json()["available"]) == (4, 4)  # totals of NORTH
    assert rows_by_warehouse(full_view.json()) == {"NORTH": 4, "SOUTH": 6}
    assert full_view.json()["on_hand"] == 10
    assert [w["code"] for w in north_warehouses.json()] == ["NORTH"]
    assert {"NORTH", "SOUTH"} <= {w["code"] for w in all_warehouses.json()}


async def test_another_warehouse_s_shipment_is_unknown_to_scoped_staff_who_cannot_act_on_it(
    oms: Oms, north_clerk: httpx.AsyncClient, any_clerk: httpx.AsyncClient, sku: str
) -> None:
    shipment = await south_shipment(oms, sku)
    shipment_id = shipment["shipment_id"]

    looked_up = await north_clerk.get(f"/shipments/{shipment_id}")
    of_order = await north_clerk.get("/shipments", params={"order_id": shipment["order_id"]})
    picked = await north_clerk.post(f"/shipments/{shipment_id}/pick")
    pick_list = await north_clerk.get("/warehouses/SOUTH/pick-list")
    still = await oms.inventory.get(f"/shipments/{shipment_id}")
    picked_by_unscoped = await any_clerk.post(f"/shipments/{shipment_id}/pick")

    assert looked_up.status_code == 404, looked_up.text
    assert looked_up.json()["code"] == "unknown_shipment"  # as if it did not exist
    assert of_order.json() == []
    assert refused_at(picked, "SOUTH"), picked.text
    assert refused_at(pick_list, "SOUTH"), pick_list.text
    assert still.json()["status"] == "pending"  # the refused pick changed nothing
    assert picked_by_unscoped.status_code == 200, picked_by_unscoped.text
    assert picked_by_unscoped.json()["status"] == "picking"
    assert picked_by_unscoped.json()["history"][-1]["actor"] == "user:roaming-clerk"


async def test_a_carrier_scoped_to_north_cannot_report_on_a_south_shipment(
    oms: Oms, any_clerk: httpx.AsyncClient, platform: Platform, sku: str
) -> None:
    address = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    shipment_id = (await south_shipment(oms, sku, {"method": "standard", "address": address}))["shipment_id"]
    tracking = f"TRK-{uuid4().hex[:10]}"
    for step, body in (
        ("pick", None),
        ("pack", None),
        ("dispatch", {"carrier": "DHL", "tracking_number": tracking}),
    ):
        moved = await any_clerk.post(f"/shipments/{shipment_id}/{step}", json=body)
        assert moved.status_code == 200, moved.text
    report = {"tracking_number": tracking, "status": "delivered", "occurred_at": "2026-01-02T10:00:00Z"}

    headers = bearer("integration", subject="north-carrier", warehouses=["NORTH"])
    async with httpx.AsyncClient(base_url=platform.url("inventory"), timeout=30, headers=headers) as carrier:
        reported = await carrier.post("/carrier-events", json=report)
    still = await oms.inventory.get(f"/shipments/{shipment_id}")

    assert refused_at(reported, "SOUTH"), reported.text
    assert still.json()["status"] == "dispatched"


async def test_a_transfer_is_sent_by_its_source_and_received_by_its_destination_staff(
    oms: Oms, north_clerk: httpx.AsyncClient, sku: str
) -> None:
    await oms.receive(sku, 5, "SOUTH")
    await oms.receive(sku, 5, "NORTH")
    lines = [{"sku": sku, "quantity": 2}]

    def transfer(source: str, destination: str) -> dict[str, Any]:
        return {
            "from_warehouse": source,
            "to_warehouse": destination,
            "lines": lines,
            "reference": str(uuid4()),
        }

    sent_from_south = await north_clerk.post("/transfers", json=transfer("SOUTH", "NORTH"))
    requested = await oms.inventory.post("/transfers", json=transfer("SOUTH", "NORTH"))
    transfer_id = requested.json()["transfer_id"]
    dispatched_by_north = await north_clerk.post(f"/transfers/{transfer_id}/dispatch")
    dispatched = await oms.inventory.post(f"/transfers/{transfer_id}/dispatch")
    seen = await north_clerk.get(f"/transfers/{transfer_id}")
    received = await north_clerk.post(f"/transfers/{transfer_id}/receive", json={"lines": lines})
    sent_from_north = await north_clerk.post("/transfers", json=transfer("NORTH", "SOUTH"))

    assert refused_at(sent_from_south, "SOUTH"), sent_from_south.text
    assert refused_at(dispatched_by_north, "SOUTH"), dispatched_by_north.text
    assert dispatched.status_code == 200, dispatched.text
    assert seen.status_code == 200, seen.text  # NORTH is its destination
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "completed"
    assert sent_from_north.status_code == 201, sent_from_north.text


async def test_another_warehouse_s_transfer_and_count_are_unknown_to_scoped_staff(
    oms: Oms, sku: str, platform: Platform
) -> None:
    await oms.receive(sku, 5, "NORTH")
    body = {"from_warehouse": "NORTH", "to_warehouse": "SOUTH", "lines": [{"sku": sku, "quantity": 1}]}
    transfer = await oms.inventory.post("/transfers", json={**body, "reference": str(uuid4())})
    count = await oms.inventory.post("/stock-counts", json={"warehouse": "NORTH", "skus": [sku]})
    assert transfer.status_code == 201 and count.status_code == 201, (transfer.text, count.text)
    # Staff of a third warehouse: neither end of the transfer, nor the counted warehouse.
    headers = bearer("warehouse", subject="east-clerk", warehouses=["EAST"])
    async with httpx.AsyncClient(base_url=platform.url("inventory"), timeout=30, headers=headers) as east:
        transfer_seen = await east.get(f"/transfers/{transfer.json()['transfer_id']}")
        count_seen = await east.get(f"/stock-counts/{count.json()['count_id']}")
        counted = await east.post(
            f"/stock-counts/{count.json()['count_id']}/lines", json={"sku": sku, "counted": 1}
        )

    assert (transfer_seen.status_code, transfer_seen.json()["code"]) == (404, "unknown_transfer")
    assert (count_seen.status_code, count_seen.json()["code"]) == (404, "unknown_stock_count")
    assert refused_at(counted, "NORTH"), counted.text
