"""What the inventory service's endpoints answer, as documented in its OpenAPI.

Statuses are the domain's own Literals. Views allow members they do not name: a field a read
model gains reaches clients at once (and is documented when it is named here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from libs.events.inventory import ShipmentStatus
from libs.events.values import ShippingMethod
from services.inventory.domain.reservation import Status as ReservationStatus
from services.inventory.domain.stock_count import CountStatus
from services.inventory.domain.transfer import TransferStatus


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class WarehouseView(View):
    code: str = Field(examples=["NORTH"])
    name: str = Field(examples=["NORTH DC"])
    region: str = Field(examples=["north"])


class WarehouseStock(View):
    warehouse: str
    on_hand: int = Field(description="Physically there")
    reserved: int = Field(description="Held for orders")
    available: int = Field(description="on_hand - reserved: what a new order can have")
    in_transit_in: int = Field(description="On its way here from another warehouse")
    in_transit_out: int = Field(description="Sent from here, not yet received")


class Backorder(View):
    order_id: str
    quantity: int = Field(description="Units the order still waits for")


class StockView(View):
    sku: str = Field(examples=["SKU-1"])
    warehouses: list[WarehouseStock] = Field(description="The warehouses the caller sees")
    on_hand: int
    reserved: int
    available: int
    in_transit_in: int
    in_transit_out: int
    in_transit: int = Field(description="Between warehouses: on hand + in transit is what is owned")
    backorders: list[Backorder] = Field(description="Orders waiting for this SKU, in the order served")


class ReceiptResult(StockView):
    receipt_id: str = Field(description="Yours, or one made up when you sent none")


class ReservationLine(View):
    sku: str
    quantity: int
    warehouse: str | None = None


class ReservationView(View):
    order_id: str
    status: ReservationStatus
    allocations: list[ReservationLine] = Field(description="Where the order's stock is held")
    missing: list[ReservationLine] = Field(description="What it still waits for (backordered)")


class ProductView(View):
    sku: str
    name: str
    category: str
    unit: str = Field(examples=["piece"])
    weight_kg: str = Field(description="Decimal string", examples=["0.250"])
    manufactured: bool = Field(description="Made here (production) rather than bought")
    list_prices: dict[str, str] = Field(description="By ISO 4217 currency", examples=[{"EUR": "25.00"}])


class ProductPage(View):
    items: list[ProductView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class ShipmentEntry(View):
    status: str = Field(description="A shipment status or a carrier's report", examples=["dispatched"])
    at: str = Field(description="ISO 8601")
    actor: str | None


class ShipmentView(View):
    shipment_id: str
    order_id: str
    warehouse: str
    method: ShippingMethod
    lines: list[dict[str, Any]] = Field(description="SKUs and quantities in this shipment")
    status: ShipmentStatus
    carrier: str | None
    tracking_number: str | None
    weight_kg: str | None
    parcels: int | None
    history: list[ShipmentEntry] = Field(description="Every step and carrier report, as it happened")


class PickShipment(View):
    shipment_id: str
    order_id: str
    quantity: int
    status: ShipmentStatus


class PickItem(View):
    sku: str
    quantity: int = Field(description="To pick, over every shipment below")
    shipments: list[PickShipment]


class PickList(View):
    warehouse: str
    items: list[PickItem]


class TransferLine(View):
    sku: str
    quantity: int
    received: int
    written_off: int
    in_transit: int


class TransferWriteOff(View):
    sku: str
    quantity: int
    reason: str
    written_off_at: datetime


class TransferView(View):
    transfer_id: str
    reference: str
    from_warehouse: str
    to_warehouse: str
    status: TransferStatus
    requested_at: datetime
    updated_at: datetime
    lines: list[TransferLine]
    write_offs: list[TransferWriteOff]


class CountLine(View):
    sku: str
    expected: int = Field(description="What the books said when the count started")
    counted: int | None
    movements: int | None = Field(description="What moved while the count was open: not a variance")
    variance: int | None = Field(description="counted - (expected + movements)")


class StockCountView(View):
    count_id: str
    warehouse: str
    whole_warehouse: bool
    status: CountStatus
    started_at: datetime
    posted_at: datetime | None
    posted_by: str | None
    lines: list[CountLine]


class LowStockAlert(View):
    sku: str
    warehouse: str
    available_when_detected: int
    available: int
    min: int
    max: int
    suggested_quantity: int = Field(description="max - available: what to order")
    detected_at: datetime


class ReorderPointView(View):
    sku: str
    warehouse: str
    min: int
    max: int
