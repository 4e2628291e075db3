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
    Value,
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
    """Units an order held go back to available stock: everything it held of the SKU (a
    release), or part of it (an amendment that wants fewer, a move to another order)."""

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


@registry.register
class BackorderResized(SkuEvent):
    """An order waiting for this SKU now wants another quantity of it (an amendment): it
    keeps its place in the queue."""

    message_type: ClassVar[str] = "BackorderResized"
    order_id: str
    quantity: Quantity


@registry.register
class BackorderMoved(SkuEvent):
    """Units an order waits for move to another order (a split or a merge) with their place:
    the other order waits where the first did (or at its own place, if that comes first);
    the first order's entry shrinks by `quantity`, or leaves the queue when nothing is left."""

    message_type: ClassVar[str] = "BackorderMoved"
    from_order_id: str
    to_order_id: str
    quantity: Quantity


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



# -- the order desk: amendments, splits and merges ----------------------------------------------
# An order's lines change after it was reserved. Only the difference moves: units of lines that
# did not change keep their allocation and their place in a backorder queue.


@registry.register
class AdjustReservation(InventoryCommand):
    """An amendment: the order now wants these lines (its whole new list). Units it no longer
    wants are released; extra units are reserved, or, for an order that is waiting for stock,
    queued behind the orders already waiting. A reserved order whose extra units are not
    available is refused whole (ReservationAdjustmentRefused): nothing changes. The order's
    shipments that have not left the warehouse are cancelled when its allocation changes
    (the order asks for new ones). The same amendment id again gives the same answer."""

    message_type: ClassVar[str] = "AdjustReservation"
    amendment_id: Reference
    lines: SkuQuantities
    backorder: bool = True
    cancel_shipments: bool = Field(
        default=False,
        description="Cancel the order's shipments that have not left even if its allocation does not"
        " change (its delivery address or method changed): the order asks for new ones",
    )


class ReservationMove(Value):
    """Units of one order's reservation to move to another order, as they are held."""

    from_order_id: OrderId
    lines: SkuQuantities


@registry.register
class MoveReservations(InventoryCommand):
    """A split or a merge: move units from the sources' reservations to this order's (a new
    order), as they are held: allocated units stay allocated in the same warehouses, queued
    units keep their place in the backorder queue. One transaction for every source, so the
    target answers once: StockReserved with its whole allocation, or StockShortage
    (backordered) naming what is still queued. Each source answers ReservationAdjusted with
    what it has left (a source left with nothing is released; one that was waiting may now be
    reserved). Refused whole (ReservationAdjustmentRefused, order_id = this order) when a
    source does not hold the units. The same move id again gives the same answer."""

    message_type: ClassVar[str] = "MoveReservations"
    move_id: Reference
    sources: Annotated[tuple[ReservationMove, ...], Field(min_length=1, max_length=50)]
    region: Region | None = None
    backorder: bool = True


@registry.register
class ReservationAdjusted(ReservationEvent):
    """The answer to AdjustReservation, and each source's answer to MoveReservations."""

    message_type: ClassVar[str] = "ReservationAdjusted"
    amendment_id: str = Field(description="The amendment's id, or the move's")
    lines: tuple[SkuQuantity, ...] = Field(description="What the order now asks for (empty: nothing)")
    allocations: tuple[Allocation, ...] = Field(description="The order's whole allocation now")
    released: tuple[SkuQuantity, ...] = Field(default=(), description="Units given back to stock")
    added: tuple[SkuQuantity, ...] = Field(default=(), description="Units newly reserved or queued")
    waiting: bool = Field(default=False, description="The order still waits for stock (backordered)")
    missing: tuple[SkuQuantity, ...] = Field(default=(), description="While waiting: what is short")
    moved_to: str | None = Field(default=None, description="A move: the order the units went to")
    shipments_cancelled: tuple[str, ...] = Field(
        default=(), description="Shipments not yet dispatched, cancelled because the allocation changed"
    )


@registry.register
class ReservationAdjustmentRefused(ReservationEvent):
    message_type: ClassVar[str] = "ReservationAdjustmentRefused"
    amendment_id: str = Field(description="The amendment's id, or the move's")
    missing: tuple[SkuQuantity, ...] = ()
    reason: str


# -- warehouse operations: reservation requests, transfers, adjustments, counts, reorder points --

# Units of one SKU in one warehouse: on hand, expected or counted. Stock adds up past any single
# receipt, so it is bounded only by what a bigint column and a JSON number (2^53) hold exactly.
MAX_STOCK_LEVEL = 10**15
# SKUs in one stock count: a count of a bigger warehouse is done in parts (`skus`).
MAX_LINES_PER_COUNT = 5000
StockLevel = Annotated[int, Field(ge=0, le=MAX_STOCK_LEVEL)]
StockDelta = Annotated[int, Field(ge=-MAX_STOCK_LEVEL, le=MAX_STOCK_LEVEL)]
AdjustmentReason = Literal["damage", "loss", "found", "correction", "count"]


@registry.register
class ReservationRequested(ReservationEvent):
    """What the order asked inventory for, kept with its reservation (recorded before the
    first answer) so a reservation revoked later is planned again by the same rules: the same
    lines, the same preferred region, the same shortage policy."""

    message_type: ClassVar[str] = "ReservationRequested"
    lines: SkuQuantities
    region: Region | None = None
    backorder: bool = Field(description="True: wait for stock on a shortage (FIFO). False: refuse.")


class SkuLevel(Value):
    sku: Sku
    quantity: StockLevel


class SkuDelta(Value):
    sku: Sku
    delta: StockDelta


@registry.register
class StockTransferredOut(SkuEvent):
    """A transfer left `from_warehouse`: the quantity is no longer on hand there and is in
    transit to `to_warehouse`, available in neither."""

    message_type: ClassVar[str] = "StockTransferredOut"
    transfer_id: str
    from_warehouse: WarehouseCode
    to_warehouse: WarehouseCode
    quantity: Quantity


@registry.register
class StockTransferredIn(SkuEvent):
    """Part (or the rest) of a transfer in transit arrived at `to_warehouse`: on hand there."""

    message_type: ClassVar[str] = "StockTransferredIn"
    transfer_id: str
    from_warehouse: WarehouseCode
    to_warehouse: WarehouseCode
    quantity: Quantity


@registry.register
class StockTransitWrittenOff(SkuEvent):
    """Stock in transit that will never arrive (lost, damaged on the way): it leaves the books."""

    message_type: ClassVar[str] = "StockTransitWrittenOff"
    transfer_id: str
    from_warehouse: WarehouseCode
    to_warehouse: WarehouseCode
    quantity: Quantity
    reason: Note


@registry.register
class StockAdjusted(SkuEvent):
    """On hand corrected to what is really there. It may fall below what is reserved (the
    goods are gone); the reservations that no longer fit are then revoked (ReservationRevoked)."""

    message_type: ClassVar[str] = "StockAdjusted"
    warehouse: WarehouseCode
    delta: StockDelta
    reason: AdjustmentReason
    note: Note = ""
    approved_by: Annotated[str, Field(max_length=200)]
    count_id: str | None = Field(default=None, description="The stock count this variance was posted from")


@registry.register
class ReorderPointSet(SkuEvent):
    message_type: ClassVar[str] = "ReorderPointSet"
    warehouse: WarehouseCode
    min: StockLevel
    max: StockLevel


@registry.register
class LowStockDetected(SkuEvent):
    """Available stock of a SKU in a warehouse fell to or below its reorder point. Published
    once; not again until available stock has risen above `min` (LowStockCleared) and fallen
    again. What production and purchasing act on: `suggested_quantity` is max - available."""

    message_type: ClassVar[str] = "LowStockDetected"
    warehouse: WarehouseCode
    available: int
    min: StockLevel
    max: StockLevel
    suggested_quantity: StockLevel


@registry.register
class LowStockCleared(SkuEvent):
    """Available stock rose above the reorder point again (or the reorder point was lowered)."""

    message_type: ClassVar[str] = "LowStockCleared"
    warehouse: WarehouseCode
    available: int
    min: StockLevel
    max: StockLevel


class TransferEvent(DomainEvent):
    """A move of stock between two warehouses: requested, dispatched, received (in parts),
    written off or cancelled. The stock itself moves on each SKU's aggregate."""

    aggregate_type: ClassVar[str] = "transfer"
    topic: ClassVar[str] = INVENTORY_EVENTS
    transfer_id: str


@registry.register
class TransferRequested(TransferEvent):
    message_type: ClassVar[str] = "TransferRequested"
    reference: Reference
    from_warehouse: WarehouseCode
    to_warehouse: WarehouseCode
    lines: SkuQuantities


@registry.register
class TransferDispatched(TransferEvent):
    """The goods left `from_warehouse`; every line is in transit."""

    message_type: ClassVar[str] = "TransferDispatched"
    lines: SkuQuantities


@registry.register
class TransferReceived(TransferEvent):
    message_type: ClassVar[str] = "TransferReceived"
    lines: SkuQuantities
    receipt_id: Reference | None = Field(
        default=None, description="The receiver's reference: the same receipt again is booked once"
    )


@registry.register
class TransferWrittenOff(TransferEvent):
    """What was still in transit and will never arrive."""

    message_type: ClassVar[str] = "TransferWrittenOff"
    lines: SkuQuantities
    reason: Note


@registry.register
class TransferCancelled(TransferEvent):
    message_type: ClassVar[str] = "TransferCancelled"
    reason: Note = ""


class StockCountEvent(DomainEvent):
    """A count of (some of) one warehouse's SKUs, from the snapshot of what the books expect
    to the adjustments that book the variances."""

    aggregate_type: ClassVar[str] = "stock_count"
    topic: ClassVar[str] = INVENTORY_EVENTS
    count_id: str


@registry.register
class StockCountStarted(StockCountEvent):
    message_type: ClassVar[str] = "StockCountStarted"
    warehouse: WarehouseCode
    expected: tuple[SkuLevel, ...] = Field(max_length=MAX_LINES_PER_COUNT)
    whole_warehouse: bool = Field(description="True: every SKU of the warehouse, and any found in it")


@registry.register
class StockCounted(StockCountEvent):
    """A SKU was counted. `book` is what the books said was on hand at that moment, so the
    movements since the snapshot (book - expected) do not count as a variance."""

    message_type: ClassVar[str] = "StockCounted"
    sku: Sku
    counted: StockLevel
    book: StockLevel


@registry.register
class StockCountPosted(StockCountEvent):
    """Every counted variance was booked as a StockAdjusted (reason `count`)."""

    message_type: ClassVar[str] = "StockCountPosted"
    warehouse: WarehouseCode
    adjustments: tuple[SkuDelta, ...] = Field(max_length=MAX_LINES_PER_COUNT)
    approved_by: Annotated[str, Field(max_length=200)]


# -- production: components taken out of stock, finished goods put into it ---------------------


@registry.register
class StockConsumed(SkuEvent):
    """Reserved components went into production: on hand and the production order's
    reservation there fall together; available does not change."""

    message_type: ClassVar[str] = "StockConsumed"
    order_id: str = Field(description="The production order whose reservation it was")
    warehouse: WarehouseCode
    quantity: Quantity


@registry.register
class ReservationConsumed(ReservationEvent):
    """The reply to ConsumeStock: everything the reservation held was consumed (once; a
    repeated command answers with the same, empty of new consumption)."""

    message_type: ClassVar[str] = "ReservationConsumed"
    consumed: tuple[Allocation, ...]


@registry.register
class ConsumeStock(InventoryCommand):
    """Production used the components reserved under `order_id` (a production order's id):
    take them out of stock. Idempotent per reservation: consumed once."""

    message_type: ClassVar[str] = "ConsumeStock"
    reason: Note = ""


@registry.register
class ReceiveStock(Command):
    """Book finished goods into a warehouse, once per `receipt_id` (a repeat books nothing),
    and serve the SKU's waiting reservations first-in first-out, as any receipt does."""

    message_type: ClassVar[str] = "ReceiveStock"
    aggregate_type: ClassVar[str] = "sku"
    topic: ClassVar[str] = INVENTORY_COMMANDS
    receipt_id: Reference
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity


# -- returns after delivery: goods back from a customer (docs/returns.md) -----------------------

ReturnedUnits = Annotated[int, Field(ge=0, le=MAX_STOCK_LEVEL)]


class ReturnedGoods(Value):
    """Units of one SKU a customer sent back to one warehouse: the resellable ones go back on
    hand, the damaged ones are booked as a loss."""

    sku: Sku
    warehouse: WarehouseCode
    resellable: ReturnedUnits = 0
    damaged: ReturnedUnits = 0


@registry.register
class ReceiveReturnedGoods(Command):
    """Book a return's goods, once per return (a repeat books nothing)."""

    message_type: ClassVar[str] = "ReceiveReturnedGoods"
    aggregate_type: ClassVar[str] = "return_receipt"
    topic: ClassVar[str] = INVENTORY_COMMANDS
    return_id: Reference
    order_id: OrderId
    lines: tuple[ReturnedGoods, ...] = Field(min_length=1, max_length=500)


class ReturnReceiptEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "return_receipt"
    topic: ClassVar[str] = INVENTORY_EVENTS
    return_id: str
    order_id: str


@registry.register
class ReturnedGoodsReceived(ReturnReceiptEvent):
    """The answer to ReceiveReturnedGoods: what went back on hand (a StockReceived each, with
    receipt id `return:<return_id>:<sku>:<warehouse>`) and what was written off
    (ReturnedStockWrittenOff)."""

    message_type: ClassVar[str] = "ReturnedGoodsReceived"
    restocked: tuple[Allocation, ...] = ()
    written_off: tuple[Allocation, ...] = ()


@registry.register
class ReturnedStockWrittenOff(SkuEvent):
    """Goods a customer sent back damaged: booked as a loss. They left on hand when they were
    dispatched and never come back to it, so no stock level changes."""

    message_type: ClassVar[str] = "ReturnedStockWrittenOff"
    warehouse: WarehouseCode
    quantity: Quantity
    return_id: str
    order_id: str
