"""Reorder points: a low-stock alert opens once when available stock falls to or below `min`,
and closes by itself when it rises above it again."""

from __future__ import annotations

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import (
    LowStockCleared,
    LowStockDetected,
    ReorderPointSet,
    StockAllocated,
    StockDeallocated,
    StockReceived,
)
from services.inventory.domain import stock as stock_domain
from services.inventory.domain.reorder import decide_reorder_point, low_stock_events
from services.inventory.domain.stock import SkuStock


def moved(state: SkuStock, *events: DomainEvent) -> tuple[SkuStock, list[DomainEvent]]:
    """The SKU after `events`, and the alerts that follow (appended as the handlers do)."""
    for event in events:
        state = stock_domain.evolve(state, event)
    alerts = low_stock_events(state)
    for alert in alerts:
        state = stock_domain.evolve(state, alert)
    return state, alerts


def received(quantity: int, number: int = 0) -> StockReceived:
    return StockReceived(sku="A", warehouse="NORTH", quantity=quantity, receipt_id=f"r-{number}")


def allocated(order_id: str, quantity: int) -> StockAllocated:
    return StockAllocated(sku="A", order_id=order_id, warehouses={"NORTH": quantity})


def with_reorder_point(on_hand: int, minimum: int = 5, maximum: int = 20) -> SkuStock:
    state, _ = moved(SkuStock(sku="A"), received(on_hand, 99))
    state, _ = moved(state, *decide_reorder_point(state, "A", "NORTH", minimum, maximum))
    return state


def test_falling_to_min_opens_one_alert_with_the_quantity_to_order() -> None:
    state = with_reorder_point(12)

    state, alerts = moved(state, allocated("o-1", 7))

    assert alerts == [
        LowStockDetected(sku="A", warehouse="NORTH", available=5, min=5, max=20, suggested_quantity=15)
    ]


def test_an_open_alert_is_not_raised_again_while_stock_stays_low() -> None:
    state, _ = moved(with_reorder_point(12), allocated("o-1", 7))

    state, alerts = moved(state, allocated("o-2", 3))

    assert alerts == []
    assert state.low_stock == {"NORTH"}


def test_the_alert_closes_when_stock_rises_above_min_and_opens_again_when_it_falls() -> None:
    state, _ = moved(with_reorder_point(12), allocated("o-1", 7))

    state, cleared = moved(state, received(10))
    state, again = moved(state, allocated("o-2", 10))

    assert cleared == [LowStockCleared(sku="A", warehouse="NORTH", available=15, min=5, max=20)]
    assert again == [
        LowStockDetected(sku="A", warehouse="NORTH", available=5, min=5, max=20, suggested_quantity=15)
    ]


def test_released_stock_closes_the_alert() -> None:
    state, _ = moved(with_reorder_point(12), allocated("o-1", 8))

    state, alerts = moved(state, StockDeallocated(sku="A", order_id="o-1", warehouses={"NORTH": 8}))

    assert [type(a) for a in alerts] == [LowStockCleared]


def test_a_reorder_point_set_above_the_stock_there_opens_the_alert_at_once() -> None:
    state, _ = moved(SkuStock(sku="A"), received(3))

    state, alerts = moved(state, *decide_reorder_point(state, "A", "NORTH", 5, 20))

    assert alerts == [
        LowStockDetected(sku="A", warehouse="NORTH", available=3, min=5, max=20, suggested_quantity=17)
    ]


def test_lowering_min_below_the_stock_closes_the_alert() -> None:
    state, _ = moved(SkuStock(sku="A"), received(3))
    state, _ = moved(state, *decide_reorder_point(state, "A", "NORTH", 5, 20))

    state, alerts = moved(state, *decide_reorder_point(state, "A", "NORTH", 2, 20))

    assert [type(a) for a in alerts] == [LowStockCleared]


def test_the_same_reorder_point_again_records_nothing() -> None:
    state = with_reorder_point(12)

    assert decide_reorder_point(state, "A", "NORTH", 5, 20) == []
    assert decide_reorder_point(state, "A", "NORTH", 5, 25) == [
        ReorderPointSet(sku="A", warehouse="NORTH", min=5, max=25)
    ]


def test_max_below_min_is_invalid() -> None:
    with pytest.raises(DomainError) as refused:
        decide_reorder_point(SkuStock(sku="A"), "A", "NORTH", 10, 5)

    assert refused.value.status == 422


def test_warehouses_without_a_reorder_point_raise_no_alerts() -> None:
    state, alerts = moved(SkuStock(sku="A"), received(1))

    assert alerts == []
