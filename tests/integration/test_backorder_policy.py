"""Backorder policy on the real platform: a backorder for 5 units while 2 are available, then
a later order for 1 unit. Under first-in first-out (the default) the later order waits behind
the backorder; on a SKU whose policy is fill-what-fits it is served from the 2 at once."""

from __future__ import annotations

import pytest

from tests.integration.conftest import FILL_WHAT_FITS_SKU, Oms, order_body

pytestmark = pytest.mark.integration


async def backorder_for_five_then_order_one(oms: Oms, sku: str) -> tuple[str, str]:
    await oms.receive(sku, 2)
    big = await oms.place(order_body(sku, quantity=5))
    await oms.wait_status(big, "awaiting_stock")
    small = await oms.place(order_body(sku, quantity=1))
    return big, small


async def test_first_in_first_out_keeps_the_later_small_order_waiting(oms: Oms, sku: str) -> None:
    big, small = await backorder_for_five_then_order_one(oms, sku)

    assert (await oms.wait_status(small, "awaiting_stock"))["status"] == "awaiting_stock"
    assert (await oms.stock(sku))["reserved"] == 0

    await oms.receive(sku, 4)  # 6 on hand: the head takes 5 first, then the 1 fits

    await oms.wait_status(big, "awaiting_payment")
    await oms.wait_status(small, "awaiting_payment")


async def test_fill_what_fits_serves_the_later_small_order_from_what_is_available(oms: Oms) -> None:
    big, small = await backorder_for_five_then_order_one(oms, FILL_WHAT_FITS_SKU)

    await oms.wait_status(small, "awaiting_payment")
    assert (await oms.get_order(big))["status"] == "awaiting_stock"
    stock = await oms.stock(FILL_WHAT_FITS_SKU)
    assert stock["reserved"] == 1, stock

    await oms.receive(FILL_WHAT_FITS_SKU, 4)  # 5 available now: the backorder is served

    await oms.wait_status(big, "awaiting_payment")
