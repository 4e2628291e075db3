"""Inventory context (inventory service): warehouses, stock per SKU, reservations per order."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.events.base import Command, DomainEvent
from libs.events.registry import registry
from libs.events.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS
from libs.events.values import Allocation, Note, OrderId, Quantity, Region, SkuQuantities, SkuQuantity


class WarehouseEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "warehouse"
    topic: ClassVar[str] = INVENTORY_EVENTS


@registry.register
class WarehouseRegistered(WarehouseEvent):
    message_type: ClassVar[str] = "WarehouseRegistered"
    code: str
    name: str
    region: str


class SkuEvent(DomainEvent):
    """Stock of one SKU across all warehouses is one aggregate: reserving from several
    warehouses and serving its backorder queue are then single, versioned decisions."""

    aggregate_type: ClassVar[str] = "sku"
    topic: ClassVar[str] = INVENTORY_EVENTS
    sku: str


@registry.register
class StockReceived(SkuEvent):
    message_type: ClassVar[str] = "StockReceived"
    warehouse: str
    quantity: Quantity
    receipt_id: str


@registry.register
class StockAllocated(SkuEvent):
    message_type: ClassVar[str] = "StockAllocated"
    order_id: str
    warehouses: dict[str, Quantity]


@registry.register
class StockDeallocated(SkuEvent):
    message_type: ClassVar[str] = "StockDeallocated"
    order_id: str
    warehouses: dict[str, Quantity]


@registry.register
class BackorderQueued(SkuEvent):
    message_type: ClassVar[str] = "BackorderQueued"
    order_id: str
    quantity: Quantity


@registry.register
class BackorderDequeued(SkuEvent):
    message_type: ClassVar[str] = "BackorderDequeued"
    order_id: str


class ReservationEvent(DomainEvent):
    """The reply to the order saga: one reservation per order."""

    aggregate_type: ClassVar[str] = "reservation"
    topic: ClassVar[str] = INVENTORY_EVENTS
    order_id: str


@registry.register
class StockReserved(ReservationEvent):
    message_type: ClassVar[str] = "StockReserved"
    allocations: tuple[Allocation, ...]


@registry.register
class StockShortage(ReservationEvent):
    message_type: ClassVar[str] = "StockShortage"
    lines: tuple[SkuQuantity, ...] = Field(description="What the order asked for")
    region: str | None = None
    missing: tuple[SkuQuantity, ...]
    backordered: bool = Field(description="True: waits for stock (FIFO). False: refused.")


@registry.register
class StockReleased(ReservationEvent):
    message_type: ClassVar[str] = "StockReleased"
    allocations: tuple[Allocation, ...]
    reason: str


class InventoryCommand(Command):
    aggregate_type: ClassVar[str] = "reservation"
    topic: ClassVar[str] = INVENTORY_COMMANDS
    order_id: OrderId


@registry.register
class ReserveStock(InventoryCommand):
    message_type: ClassVar[str] = "ReserveStock"
    lines: SkuQuantities
    region: Region | None = None
    backorder: bool = True


@registry.register
class ReleaseStock(InventoryCommand):
    message_type: ClassVar[str] = "ReleaseStock"
    reason: Note
