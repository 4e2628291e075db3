"""Production context (production service): work centres, bills of materials and production
orders with their tasks, progress, quality checks and schedule.

Public (published to oms.production.events.v1): what a planner's tools, the order service and
outside adapters act on: a production order created, scheduled, its tasks assigned and
progressed, its quality checks, its completion or cancellation. The rest is the production
service's own bookkeeping (`published = False`), kept in its event store.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from libs.events.base import DomainEvent
from libs.events.registry import registry
from libs.events.topics import PRODUCTION_EVENTS
from libs.events.values import Allocation, Note, Quantity, Sku, SkuQuantity, Value, WarehouseCode

# Every production order's id starts with this. Inventory keeps one reservation per id for a
# sales order or a production order alike, and its reservation events name the id in
# `order_id`: readers of those events (the order saga) tell a production order's apart by it.
PRODUCTION_ORDER_ID_PREFIX = "PO-"


def is_production_order_id(reservation_id: str) -> bool:
    return reservation_id.startswith(PRODUCTION_ORDER_ID_PREFIX)


WorkCenterCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
OperationName = Annotated[str, Field(min_length=1, max_length=100)]
# Minutes of a work centre's day: at most the whole day.
DayMinutes = Annotated[int, Field(ge=0, le=1440)]
Minutes = Annotated[Decimal, Field(ge=0, le=Decimal("100000"), max_digits=9, decimal_places=3)]
ComponentQuantity = Annotated[Decimal, Field(gt=0, le=Decimal("1000000"), max_digits=12, decimal_places=4)]
ScrapRate = Annotated[Decimal, Field(ge=0, lt=1, max_digits=5, decimal_places=4)]
Counted = Annotated[int, Field(ge=0, le=1_000_000)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Origin = Literal["make_to_order", "make_to_stock", "manual"]
Disposition = Literal["scrap", "rework"]
MeasurementName = Annotated[str, Field(min_length=1, max_length=100)]
Measurement = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=18, decimal_places=6)]


class WorkCalendar(Value):
    """When a work centre works: on these weekdays, from `day_start` for its daily capacity,
    except on the closed dates."""

    working_days: tuple[Weekday, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri", "sat", "sun"), min_length=1, max_length=7
    )
    day_start: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = Field(
        default="00:00", description="UTC time the working day starts, HH:MM"
    )
    closed: tuple[date, ...] = Field(default=(), max_length=366, description="Dates it does not work")


class BomComponent(Value):
    sku: Sku
    quantity: ComponentQuantity = Field(description="Per output_quantity units of the product")


class BomOperation(Value):
    name: OperationName
    work_center: WorkCenterCode
    setup_minutes: Minutes = Decimal(0)
    minutes_per_unit: Minutes = Decimal(0)
    inspection: bool = False


class WorkCenterEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "work_center"
    topic: ClassVar[str] = PRODUCTION_EVENTS
    published: ClassVar[bool] = False
    code: WorkCenterCode


@registry.register
class WorkCenterRegistered(WorkCenterEvent):
    message_type: ClassVar[str] = "WorkCenterRegistered"
    name: Annotated[str, Field(min_length=1, max_length=200)]
    capacity_minutes_per_day: DayMinutes
    calendar: WorkCalendar = WorkCalendar()


class BomEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "bom"
    topic: ClassVar[str] = PRODUCTION_EVENTS
    published: ClassVar[bool] = False
    sku: Sku


@registry.register
class BomDefined(BomEvent):
    """The bill of materials of a product, whole (a later one replaces it): what
    `output_quantity` units take, and the operations that make them, in order."""

    message_type: ClassVar[str] = "BomDefined"
    components: tuple[BomComponent, ...] = Field(max_length=200)
    output_quantity: Quantity = 1
    scrap_rate: ScrapRate = Decimal(0)
    operations: tuple[BomOperation, ...] = Field(min_length=1, max_length=50)


class ProductionEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "production_order"
    topic: ClassVar[str] = PRODUCTION_EVENTS
    production_order_id: str


class PlannedOperation(Value):
    task_id: str
    operation: OperationName
    work_center: WorkCenterCode
    setup_minutes: Minutes
    minutes_per_unit: Minutes
    inspection: bool


@registry.register
class ProductionOrderCreated(ProductionEvent):
    """A production order: make `quantity` of `sku` into `warehouse` by `due`. Make-to-order
    ones name the demand they serve: a sales order (`sales_order_id`), or the production order
    whose component this is (`parent_production_order_id`)."""

    message_type: ClassVar[str] = "ProductionOrderCreated"
    sku: Sku
    quantity: Quantity
    warehouse: WarehouseCode
    due: datetime
    origin: Origin
    sales_order_id: str | None = Field(default=None, description="The sales order it is made for")
    parent_production_order_id: str | None = Field(
        default=None, description="The production order this one makes a component for"
    )
    replaces: str | None = Field(
        default=None, description="The production order whose shortfall (scrap) this one makes up"
    )
    components: tuple[SkuQuantity, ...] = Field(
        max_length=200, description="What it takes from stock, in all (the BOM's scrap rate included)"
    )
    operations: tuple[PlannedOperation, ...] = Field(min_length=1, max_length=50)


@registry.register
class ProductionAwaitingComponents(ProductionEvent):
    message_type: ClassVar[str] = "ProductionAwaitingComponents"
    published: ClassVar[bool] = False
    missing: tuple[SkuQuantity, ...]


@registry.register
class ProductionReleased(ProductionEvent):
    """Its components are reserved in inventory (none needed: at once): it may be made."""

    message_type: ClassVar[str] = "ProductionReleased"
    allocations: tuple[Allocation, ...] = ()


class OperationPlan(Value):
    task_id: str
    operation: OperationName
    work_center: WorkCenterCode
    planned_start: datetime
    planned_finish: datetime


@registry.register
class ProductionScheduled(ProductionEvent):
    """Where its operations are planned on their work centres (earliest due date first,
    within each centre's daily capacity). `late`: it cannot finish by its due date."""

    message_type: ClassVar[str] = "ProductionScheduled"
    operations: tuple[OperationPlan, ...]
    expected_finish: datetime | None = Field(description="None: no capacity to finish it at all")
    late: bool


@registry.register
class ProductionTaskAssigned(ProductionEvent):
    message_type: ClassVar[str] = "ProductionTaskAssigned"
    task_id: str
    assignee: Annotated[str, Field(min_length=1, max_length=200)]


@registry.register
class ProductionTaskStarted(ProductionEvent):
    message_type: ClassVar[str] = "ProductionTaskStarted"
    published: ClassVar[bool] = False
    task_id: str


@registry.register
class ProductionProgressed(ProductionEvent):
    """A task's units done so far (cumulative)."""

    message_type: ClassVar[str] = "ProductionProgressed"
    task_id: str
    quantity_done: Counted


@registry.register
class ProductionTaskCompleted(ProductionEvent):
    message_type: ClassVar[str] = "ProductionTaskCompleted"
    published: ClassVar[bool] = False
    task_id: str


class QualityCheckEvent(ProductionEvent):
    check_id: str
    task_id: str
    operation: OperationName
    passed: Counted
    measurements: dict[MeasurementName, Measurement] = Field(default_factory=dict, max_length=50)
    note: Note = ""


@registry.register
class QualityCheckPassed(QualityCheckEvent):
    message_type: ClassVar[str] = "QualityCheckPassed"


@registry.register
class QualityCheckFailed(QualityCheckEvent):
    """Some units failed. `rework`: they go back through the operation; `scrap`: they are
    lost (their components are consumed all the same)."""

    message_type: ClassVar[str] = "QualityCheckFailed"
    failed: Quantity
    disposition: Disposition
    reason: Note = Field(description="Why they failed (the inspector's note)")


@registry.register
class ProductionCompleted(ProductionEvent):
    """Made: `passed` units go into stock in `warehouse` (receipt `receipt_id`), `scrapped`
    were lost; passed + scrapped = quantity."""

    message_type: ClassVar[str] = "ProductionCompleted"
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity
    passed: Counted
    scrapped: Counted
    receipt_id: str


@registry.register
class ProductionGoodsReceived(ProductionEvent):
    """Inventory booked the finished goods (its StockReceived for the receipt)."""

    message_type: ClassVar[str] = "ProductionGoodsReceived"
    published: ClassVar[bool] = False
    receipt_id: str
    quantity: Quantity


@registry.register
class ProductionComponentsConsumed(ProductionEvent):
    """Inventory took the reserved components out of stock (its ReservationConsumed)."""

    message_type: ClassVar[str] = "ProductionComponentsConsumed"
    published: ClassVar[bool] = False
    consumed: tuple[Allocation, ...]


@registry.register
class ProductionCancelled(ProductionEvent):
    message_type: ClassVar[str] = "ProductionCancelled"
    reason: Note
    components_released: bool = Field(description="A release of its reserved components was asked for")
