"""Backorder policy per SKU: strict first-in first-out, or fill what fits with a bound on how
often a waiting order may be passed, so nobody waits forever behind smaller orders."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from libs.events.inventory import BackorderQueued, StockAllocated, StockReceived, StockReserved, StockShortage
from libs.events.values import SkuQuantity
from services.inventory.domain.reservation import Decision, Reservation, decide_reserve, try_allocate
from services.inventory.domain.stock import BackorderPolicy, SkuStock, evolve
from services.inventory.settings import InventorySettings
from services.inventory.tests.test_reservations import applied, stock

SKU = "CABLE"
FILL = BackorderPolicy(mode="fill", max_passes=2)
FIFO = BackorderPolicy(mode="fifo")


def reserve(
    stocks: Mapping[str, SkuStock], order_id: str, quantity: int, policy: BackorderPolicy
) -> Decision:
    lines = (SkuQuantity(sku=SKU, quantity=quantity),)
    return decide_reserve(Reservation(), order_id, lines, None, True, stocks, ["NORTH"], policy)


def with_big_order_waiting(available: int = 2) -> dict[str, SkuStock]:
    """A backorder for 5 units queued while only `available` are on hand."""
    stocks = {SKU: stock(SKU, {"NORTH": available})}
    waiting = reserve(stocks, "BIG", 5, FIFO)
    assert isinstance(waiting.reservation[-1], StockShortage)
    return applied(stocks, waiting)


def test_fifo_keeps_a_later_small_order_waiting_behind_the_backorder() -> None:
    decision = reserve(with_big_order_waiting(), "SMALL", 1, FIFO)

    assert isinstance(decision.reservation[-1], StockShortage)
    assert decision.skus[SKU] == [BackorderQueued(sku=SKU, order_id="SMALL", quantity=1)]


def test_fill_serves_a_later_order_that_fits_in_what_is_available() -> None:
    decision = reserve(with_big_order_waiting(), "SMALL", 1, FILL)

    assert isinstance(decision.reservation[-1], StockReserved)
    assert decision.skus[SKU] == [StockAllocated(sku=SKU, order_id="SMALL", warehouses={"NORTH": 1})]


def test_fill_does_not_serve_an_order_bigger_than_what_is_available() -> None:
    decision = reserve(with_big_order_waiting(), "MEDIUM", 3, FILL)

    assert isinstance(decision.reservation[-1], StockShortage)


def test_fill_counts_each_pass_of_a_waiting_order() -> None:
    stocks = applied(with_big_order_waiting(), reserve(with_big_order_waiting(), "SMALL", 1, FILL))

    assert stocks[SKU].passes == {"BIG": 1}


def test_after_max_passes_the_waiting_order_waits_for_nobody_else() -> None:
    stocks = with_big_order_waiting(available=4)
    for n in range(FILL.max_passes):
        stocks = applied(stocks, reserve(stocks, f"SMALL-{n}", 1, FILL))
    assert stocks[SKU].passes == {"BIG": 2} and stocks[SKU].total_available() == 2

    decision = reserve(stocks, "ONE-MORE", 1, FILL)

    assert isinstance(decision.reservation[-1], StockShortage)
    # ... and once enough stock is there for it, the head is the one served.
    restocked = {
        SKU: evolve(stocks[SKU], StockReceived(sku=SKU, warehouse="NORTH", quantity=3, receipt_id="r"))
    }
    assert try_allocate("ONE-MORE", {SKU: 1}, restocked, ["NORTH"], FILL) is None
    assert try_allocate("BIG", {SKU: 5}, restocked, ["NORTH"], FILL) == {SKU: {"NORTH": 5}}


def test_a_queued_order_behind_the_head_may_pass_it_under_fill_but_not_under_fifo() -> None:
    stocks = applied(with_big_order_waiting(), reserve(with_big_order_waiting(), "SMALL", 3, FIFO))
    assert [order for order, _ in stocks[SKU].backorders] == ["BIG", "SMALL"]
    stocks = {SKU: stocks[SKU]}

    assert try_allocate("SMALL", {SKU: 2}, stocks, ["NORTH"], FIFO) is None
    assert try_allocate("SMALL", {SKU: 2}, stocks, ["NORTH"], FILL) == {SKU: {"NORTH": 2}}


def test_the_policy_is_per_sku() -> None:
    policy = BackorderPolicy(mode="fifo", by_sku={SKU: "fill"})

    assert isinstance(reserve(with_big_order_waiting(), "SMALL", 1, policy).reservation[-1], StockReserved)
    assert policy.mode_of("OTHER") == "fifo"


def test_zero_passes_makes_fill_first_in_first_out() -> None:
    decision = reserve(with_big_order_waiting(), "SMALL", 1, BackorderPolicy(mode="fill", max_passes=0))

    assert isinstance(decision.reservation[-1], StockShortage)


def test_the_policy_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_INVENTORY_BACKORDER_POLICY", "fill")
    monkeypatch.setenv("OM_INVENTORY_BACKORDER_POLICY_BY_SKU", '{"PALLET": "fifo"}')
    monkeypatch.setenv("OM_INVENTORY_BACKORDER_MAX_PASSES", "5")

    assert InventorySettings().backorders() == BackorderPolicy(
        mode="fill", by_sku={"PALLET": "fifo"}, max_passes=5
    )


def test_without_settings_the_policy_is_today_s_first_in_first_out(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OM_INVENTORY_BACKORDER_POLICY", "OM_INVENTORY_BACKORDER_POLICY_BY_SKU"):
        monkeypatch.delenv(name, raising=False)

    assert InventorySettings().backorders().mode_of(SKU) == "fifo"
