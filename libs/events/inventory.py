"""Inventory context (inventory service): the product catalogue, warehouses, stock per SKU,
reservations per order and the shipments that take reserved stock out to customers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from libs.events.base import Command, DomainEvent
from libs.events.registry import registry
from libs.events.topics import INVENTORY_COMMANDS, INVENTORY_EVENTS
from libs.events.values import (
    Allocation,
    Currency,
    Money,
    Note,
    OrderId,
    Quantity,
    Reference,
    Region,
    Shipping,
    ShippingMethod,
    Sku,
    SkuQuantities,
    SkuQuantity,
    WarehouseCode,
)

# A product's weight: up to 100 t, to the gram.
WeightKg = Annotated[Decimal, Field(ge=0, le=Decimal("100000"), max_digits=9, decimal_places=3)]
ProductText = Annotated[str, Field(min_length=1, max_length=200)]
ShipmentStatus = Literal[
    "pending", "picking", "packed", "dispatched", "delivered", "ready_for_pickup", "collected", "cancelled"
]
CarrierStatus = Literal["in_transit", "out_for_delivery", "delivered", "failed_attempt", "returned_to_sender"]


# -- product catalogue ------------------------------------------------------------------------


class ProductEvent(DomainEvent):
    """A product's master data. Every event carries the whole product as it now is, so a
    reader (the order service, reporting, an ERP adapter) needs no other event to know it."""

    aggregate_type: ClassVar[str] = "product"
    topic: ClassVar[str] = INVENTORY_EVENTS
    sku: Sku
    name: ProductText
    category: ProductText
    unit: Annotated[str, Field(min_length=1, max_length=20)]
    weight_kg: WeightKg
    manufactured: bool
    list_prices: dict[Currency, Money] = Field(default_factory=dict, max_length=50)


@registry.register
class ProductRegistered(ProductEvent):
    message_type: ClassVar[str] = "ProductRegistered"


@registry.register
class ProductUpdated(ProductEvent):
    message_type: ClassVar[str] = "ProductUpdated"
    changed: tuple[str, ...] = Field(description="The fields this update changed")


# -- shipments ---------------------------------------------------------------------------------


class ShipmentEvent(DomainEvent):
    """One parcel (or pickup) from one warehouse for one order."""

    aggregate_type: ClassVar[str] = "shipment"
    topic: ClassVar[str] = INVENTORY_EVENTS
    shipment_id: str
    order_id: str


@registry.register
class ShipmentCreated(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentCreated"
    warehouse: WarehouseCode
    method: ShippingMethod
    lines: tuple[SkuQuantity, ...]
    weight_kg: WeightKg | None = Field(default=None, description="From the catalogue, when known")


@registry.register
class ShipmentPicked(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentPicked"


@registry.register
class ShipmentPacked(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentPacked"
    weight_kg: WeightKg | None = None
    parcels: int = Field(default=1, ge=1, le=1000)


@registry.register
class ShipmentDispatched(ShipmentEvent):
    """The goods left the warehouse: on hand and reserved fell together (StockDispatched)."""

    message_type: ClassVar[str] = "ShipmentDispatched"
    warehouse: WarehouseCode
    lines: tuple[SkuQuantity, ...]
    carrier: Reference | None = None
    tracking_number: Reference | None = None


@registry.register
class ShipmentReadyForPickup(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentReadyForPickup"


@registry.register
class ShipmentCollected(ShipmentEvent):
    """A pickup order's goods were handed over: on hand and reserved fell together."""

    message_type: ClassVar[str] = "ShipmentCollected"
    warehouse: WarehouseCode
    lines: tuple[SkuQuantity, ...]


@registry.register
class ShipmentDelivered(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentDelivered"


@registry.register
class ShipmentCancelled(ShipmentEvent):
    message_type: ClassVar[str] = "ShipmentCancelled"
    reason: Note


@registry.register
class ShipmentTracked(ShipmentEvent):
    """What a carrier reported (POST /carrier-events); `delivered` also delivers the shipment."""

    message_type: ClassVar[str] = "ShipmentTracked"
    tracking_number: Reference
    status: CarrierStatus
    location: Annotated[str, Field(max_length=200)] = ""
    carrier_occurred_at: datetime


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
class StockDispatched(SkuEvent):
    """Goods left the warehouse for an order (a shipment dispatched, or a pickup collected):
    on hand and the order's reservation there fall together; available does not change."""

    message_type: ClassVar[str] = "StockDispatched"
    order_id: str
    warehouse: WarehouseCode
    quantity: Quantity
    shipment_id: str


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


@registry.register
class ReservationRevoked(ReservationEvent):
    """Stock the order held is gone (an adjustment took on hand below what was reserved).
    Inventory then tries to reserve it again at once: a StockReserved with the order's whole
    new allocation follows, or a StockShortage (backordered or refused, by the order's policy)."""

    message_type: ClassVar[str] = "ReservationRevoked"
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity
    reason: Note


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
    """Compensation: release the order's reservation, and cancel its shipments that have not
    left the warehouse."""

    message_type: ClassVar[str] = "ReleaseStock"
    reason: Note


@registry.register
class CreateShipments(InventoryCommand):
    """The order is confirmed: ship what is reserved for it, one shipment per warehouse that
    holds part of it. Idempotent per order (a repeated command creates nothing new)."""

    message_type: ClassVar[str] = "CreateShipments"
    shipping: Shipping
