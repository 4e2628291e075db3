"""A receipt id names one delivery: sent again with the same stock it is answered as before
and changes nothing; sent with other stock it is refused with 409 saying what differs, never
silently dropped. (Payment references: services/billing/tests/test_billing_api.py.)"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest

from tests.integration.conftest import Oms

pytestmark = pytest.mark.integration


async def receipt(
    oms: Oms, receipt_id: str, sku: str, quantity: int = 5, warehouse: str = "NORTH"
) -> httpx.Response:
    return await oms.inventory.post(
        "/stock/receipts",
        json={"sku": sku, "warehouse": warehouse, "quantity": quantity, "receipt_id": receipt_id},
    )


async def test_a_repeated_receipt_is_booked_once(oms: Oms, sku: str) -> None:
    receipt_id = f"R-{uuid4().hex[:8]}"
    assert (await receipt(oms, receipt_id, sku)).status_code == 201

    again = await receipt(oms, receipt_id, sku)

    assert again.status_code == 200, again.text
    assert (await oms.stock(sku))["on_hand"] == 5


@pytest.mark.parametrize("change", ["quantity", "warehouse", "sku"])
async def test_a_receipt_id_reused_for_other_stock_is_refused_naming_the_difference(
    oms: Oms, sku: str, change: str
) -> None:
    receipt_id = f"R-{uuid4().hex[:8]}"
    assert (await receipt(oms, receipt_id, sku)).status_code == 201
    other_sku, quantity, warehouse = {
        "quantity": (sku, 7, "NORTH"),
        "warehouse": (sku, 5, "SOUTH"),
        "sku": (f"{sku}-B", 5, "NORTH"),
    }[change]

    response = await receipt(oms, receipt_id, other_sku, quantity, warehouse)

    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == (
        f"receipt {receipt_id} was already used for {sku} x 5 at NORTH;"
        f" this request says {other_sku} x {quantity} at {warehouse}"
    )
    assert (await oms.stock(sku))["on_hand"] == 5
    assert (await oms.inventory.get(f"/stock/{sku}-B")).status_code == 404


async def test_concurrent_receipts_under_one_id_book_it_once(oms: Oms, sku: str) -> None:
    same, other = f"R-{uuid4().hex[:8]}", f"R-{uuid4().hex[:8]}"

    answers = await asyncio.gather(
        receipt(oms, same, sku, 1),
        receipt(oms, same, sku, 1),
        receipt(oms, other, sku, 2),
        receipt(oms, other, sku, 3),
    )

    statuses = [r.status_code for r in answers]
    assert sorted(statuses[:2]) == [200, 201], [r.text for r in answers]
    assert sorted(statuses[2:]) == [201, 409], [r.text for r in answers]
    booked = 2 if statuses[2] == 201 else 3
    assert (await oms.stock(sku))["on_hand"] == 1 + booked
