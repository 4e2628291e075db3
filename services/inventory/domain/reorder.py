"""Reorder points and low-stock alerts of one SKU in each warehouse.

An alert opens (LowStockDetected) when available stock falls to or below the reorder point's
`min`, once: not again until available stock has risen above `min`, which closes it
(LowStockCleared). `low_stock_events` is asked after every change of a SKU's stock, so no path
that moves stock can forget it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from libs.domain import InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import LowStockCleared, LowStockDetected, ReorderPointSet
from services.inventory.domain.stock import SkuStock


def decide_reorder_point(
    stock: SkuStock, sku: str, warehouse: str, minimum: int, maximum: int
) -> list[DomainEvent]:
    if maximum < minimum:
        raise InvalidRequest("invalid_reorder_point", f"max ({maximum}) must not be below min ({minimum})")
    if stock.reorder_points.get(warehouse) == (minimum, maximum):
        return []  # the same reorder point again
    return [ReorderPointSet(sku=sku, warehouse=warehouse, min=minimum, max=maximum)]


def low_stock_events(stock: SkuStock) -> list[DomainEvent]:
    """Alerts to open or close, given the SKU's stock as it now is."""
    events: list[DomainEvent] = []
    for warehouse, (minimum, maximum) in sorted(stock.reorder_points.items()):
        available = stock.available(warehouse)
        low = available <= minimum
        if low and warehouse not in stock.low_stock:
            events.append(
                LowStockDetected(
                    sku=stock.sku,
                    warehouse=warehouse,
                    available=available,
                    min=minimum,
                    max=maximum,
                    suggested_quantity=max(maximum - available, 0),
                )
            )
        elif not low and warehouse in stock.low_stock:
            events.append(
                LowStockCleared(
                    sku=stock.sku, warehouse=warehouse, available=available, min=minimum, max=maximum
                )
            )
    return events
