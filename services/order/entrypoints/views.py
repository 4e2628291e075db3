"""What the order service's endpoints answer, as documented in its OpenAPI.

Closed sets (statuses, stages, terms, methods) are the domain's own Literals, so a status the
domain gains appears here without an edit. Views allow members they do not name: a field a
read model gains reaches clients at once (and is documented when it is named here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.events.values import PaymentTerms, ShippingMethod
from services.order.adapters.queries import PaymentStatus
from services.order.domain.order import Stage as OrderStage
from services.order.domain.order import Status as OrderStatus

_ORDER_ID = "0b7e4a2e-3c55-5b8e-9f1d-2f6f3b7f1a10"


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class OrderAccepted(View):
    order_id: str = Field(
        description="Where to follow the order: GET /orders/{order_id}", examples=[_ORDER_ID]
    )
    status: OrderStatus = Field(description="Where review put it: approved, on_hold or rejected")
    hold_reasons: list[str] = Field(
        default_factory=list,
        description="Why it waits for a person (status on_hold); empty otherwise",
        examples=[["order value 1200.00 is over the review threshold of 1000.00"]],
    )


class OrderLineView(View):
    sku: str = Field(examples=["SKU-1"])
    quantity: int = Field(examples=[2])
    unit_price: str = Field(description="Decimal string in the order's currency", examples=["25.00"])


class OrderShipmentView(View):
    shipment_id: str
    warehouse: str = Field(examples=["NORTH"])
    status: str = Field(description="The warehouse's shipment status", examples=["dispatched"])
    carrier: str | None = None
    tracking_number: str | None = None
    updated_at: str = Field(description="ISO 8601")


class TimelineEntry(View):
    at: str = Field(description="ISO 8601, when the event was recorded")
    type: str = Field(description="The event", examples=["OrderHeld"])
    actor: str | None = Field(description="Who caused it: user:<subject>, key:<id> or service:<name>")
    version: int = Field(description="The order's version after the event")
    details: dict[str, Any] = Field(
        description="The event's own fields (contact data redacted without customers:read_contact);"
        " an approval or rejection of a held order names the hold it decided in `decided_hold`"
    )


class OrderSummary(View):
    order_id: str = Field(examples=[_ORDER_ID])
    status: OrderStatus
    channel: str = Field(examples=["web"])
    external_id: str | None = Field(description="The channel's own order number")
    customer_id: str
    customer_name: str | None = Field(description="[redacted] without customers:read_contact")
    currency: str = Field(examples=["EUR"])
    payment_terms: PaymentTerms
    shipping_method: ShippingMethod
    subtotal: str | None = Field(description="Sum of the lines, decimal string", examples=["50.00"])
    total: str | None = Field(description="Invoiced total (tax and shipping included), once invoiced")
    amount_paid: str | None
    amount_refunded: str | None
    payment_status: PaymentStatus
    invoice_id: str | None
    reason: str | None = Field(
        description="Why it is where it is now: the hold, rejection, cancellation or attention reason;"
        " a decided hold is no longer shown here (see the timeline)"
    )
    hold_reasons: list[str] = Field(default_factory=list, description="While on_hold: why; else empty")
    placed_at: str = Field(description="ISO 8601")
    updated_at: str = Field(description="ISO 8601")


class PendingChangeView(View):
    """An amendment, split or merge under way (docs/order-desk.md)."""

    change_id: str
    kind: str = Field(description="amend, split or merge")
    awaiting: str = Field(
        description="review or credit: a person decides (approve / reject); steps: inventory and"
        " billing are doing their part; undo: its reservation is being put back"
    )
    lines: list[OrderLineView] = Field(description="The lines the order will have once it is done")
    other_order_id: str | None = Field(default=None, description="split: the new order; merge: the result")
    reason: str
    requested_by: str


class OrderDetail(OrderSummary):
    lines: list[OrderLineView]
    stage: OrderStage = Field(description="Where the fulfilment saga stands")
    shipments: list[OrderShipmentView]
    timeline: list[TimelineEntry] = Field(description="Every event of the order, oldest first")
    split_from: str | None = Field(default=None, description="The order this one was split from")
    split_into: list[str] = Field(
        default_factory=list, description="Orders units of this one were split into"
    )
    merged_from: list[str] = Field(default_factory=list, description="The orders merged into this one")
    merged_into: str | None = Field(default=None, description="status merged: the order it was merged into")
    change: PendingChangeView | None = Field(default=None, description="A change under way, if any")


class OrderPage(View):
    items: list[OrderSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


# While the compensations a cancellation or rejection started run, the order is on its way.
ActionStatus = Literal[OrderStatus, Literal["cancelling", "rejecting"]]


class OrderActionResult(View):
    """What an approval, rejection or cancellation produced."""

    order_id: str = Field(examples=[_ORDER_ID])
    status: ActionStatus = Field(
        description="What the order is now: the outcome (200), or cancelling/rejecting while the"
        " compensations in `pending` run (202; GET /orders/{order_id} shows the status it had until"
        " then, with stage compensating)",
        examples=["cancelled"],
    )
    stage: OrderStage
    outcome: OrderStatus = Field(
        description="What the action leads to: approved, rejected or cancelled (reached when status"
        " equals it)",
        examples=["cancelled"],
    )
    pending: list[str] = Field(
        default_factory=list,
        description="Compensations still awaited before the outcome is reached (202): release_stock,"
        " void_invoice (which refunds what was paid)",
        examples=[["release_stock", "void_invoice"]],
    )
    reason: str | None = Field(default=None, description="The reason recorded with the outcome")


class CustomerRegistration(View):
    customer_id: str = Field(examples=["C-1001"])
    name: str = Field(examples=["Ada Lovelace"])
    email: str | None = Field(default=None, examples=["ada@example.com"])
    phone: str | None = None
    region: str | None = Field(default=None, examples=["north"])
    blocked: bool = False


class BlockState(View):
    customer_id: str
    blocked: bool


class ErasureDone(View):
    customer_id: str
    erased: bool = Field(description="Always true: the customer's key is destroyed")


class CustomerDetail(View):
    customer_id: str
    registered: bool = Field(description="Registered here (else a guest who ordered)")
    orders: int = Field(description="How many orders they placed")
    last_order_at: str | None = Field(description="ISO 8601")
    name: str | None = Field(default=None, description="Registered customers: [erased] after erasure")
    email: str | None = None
    phone: str | None = None
    region: str | None = None
    blocked: bool | None = Field(default=None, description="Registered customers only")
    erased: bool


class CustomerIds(View):
    customer_ids: list[str] = Field(description="At most 20, in id order")


class SagaStepView(View):
    step: str = Field(examples=["reserve_stock"])
    participant: str = Field(examples=["inventory"])
    request: str = Field(examples=["ReserveStock"])
    succeeds_on: list[str]
    fails_on: list[str]
    compensation: str | None
    group: str | None = Field(
        examples=["reserve_and_invoice"],
        description="Consecutive steps of one group start at once and the saga waits for all of"
        " them (when parallel_steps is on); null: the step runs on its own",
    )


class CompensationView(View):
    participant: str
    command: str
    completed_by: str


class SagaTable(View):
    steps: list[SagaStepView] = Field(description="The forward steps, in order")
    parallel_steps: bool = Field(
        description="Whether the steps of a group run at once here (OM_ORDER_PARALLEL_STEPS);"
        " false: one after another, in the table's order"
    )
    compensations: dict[str, CompensationView] = Field(description="Each compensation, by name")


class ApiKeyView(View):
    key_id: str
    name: str = Field(examples=["web shop"])
    scopes: list[str] = Field(examples=[["orders:submit", "orders:read"]])
    channel: str | None = Field(examples=["web"])
    warehouses: list[str] | None = Field(description="null: every warehouse")
    rate_limit_per_second: str | None = Field(description="null: the default for API keys")
    expires_at: datetime | None = Field(description="null: never")
    issued_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


class IssuedApiKey(ApiKeyView):
    api_key: str = Field(description="The key itself, shown this once: store it now")


class ApiKeyList(View):
    items: list[ApiKeyView]


class PermissionView(View):
    name: str = Field(examples=["orders:submit"])
    description: str


class PermissionList(View):
    permissions: list[PermissionView]


class RoleView(View):
    role: str = Field(examples=["order_desk"])
    permissions: list[str]
    description: str
    builtin: bool = Field(default=False, description="One of the built-in roles (not redefinable)")


class RoleList(View):
    items: list[RoleView]


class RoleRemoved(View):
    role: str
    removed: bool
