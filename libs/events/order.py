"""Order context (order service): the order and the steps of its fulfilment saga.

What goes on `oms.order.events.v1` (the public contract, docs/events.md): OrderPlaced (the
whole order as placed), OrderStatusChanged (one per order per transaction in which its status
changed, with what a reader needs to know about the order at that point), OrderRefunded (money
that went back), and the customer events. Every other order event is private: the saga's
own bookkeeping (requests sent, replies recorded, compensation steps), stored in the order
service's event store only (timeline, as-of, saga), never on Kafka.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from libs.events.base import Command, DomainEvent, IntegrationEvent
from libs.events.registry import registry
from libs.events.topics import ORDER_EVENTS, ORDER_INTAKE
from libs.events.values import (
    MAX_LINES_PER_ORDER,
    Address,
    Allocation,
    Channel,
    Currency,
    CustomerSnapshot,
    Money,
    OrderLine,
    OrderLines,
    PaymentTerms,
    Quantity,
    Shipping,
    Sku,
    SkuQuantity,
    Value,
    WarehouseCode,
    require_minor_units,
)

# -- personal data as the order service stores it (docs/personal-data.md) -------------------
# A customer's name, email, phone and address lines are sealed with the customer's key before
# they are stored: "pd:v1:<key id>:<ciphertext>", longer than the plaintext limits allow.
# Events written before sealing existed hold plaintext here, and still load.
PersonalText = Annotated[
    str, Field(max_length=2048, description="Personal data: sealed ('pd:v1:...') or plaintext")
]


class StoredCustomer(CustomerSnapshot):
    """The customer as recorded: contact fields sealed, region in clear (reports, tax)."""

    name: PersonalText = Field(min_length=1)
    email: PersonalText | None = None
    phone: PersonalText | None = None


class StoredAddress(Address):
    """A delivery address as recorded: the lines sealed, the country in clear (tax)."""

    line1: PersonalText | None = None
    line2: PersonalText | None = None
    city: PersonalText | None = None
    postal_code: PersonalText | None = None


class StoredShipping(Shipping):
    address: StoredAddress | None = None


def _as(model: type[Any]) -> BeforeValidator:
    """Accept the plain value type (what a channel submitted) where the stored one is due."""

    def convert(value: Any) -> Any:
        if isinstance(value, CustomerSnapshot | Shipping | Address) and not isinstance(value, model):
            return value.model_dump()
        return value

    return BeforeValidator(convert)


if TYPE_CHECKING:  # callers pass the plain values; a stored one is one of those too
    CustomerAsStored = CustomerSnapshot
    ShippingAsStored = Shipping
else:
    CustomerAsStored = Annotated[StoredCustomer, _as(StoredCustomer)]
    ShippingAsStored = Annotated[StoredShipping, _as(StoredShipping)]


class MovedLines(Value):
    """Units that moved from one order to another (a split or a merge)."""

    order_id: str
    lines: tuple[SkuQuantity, ...]


class OrderEvent(DomainEvent):
    """An event of the order aggregate. Private unless it says otherwise: readers outside the
    order service learn of the order through OrderPlaced, OrderStatusChanged and OrderRefunded."""

    aggregate_type: ClassVar[str] = "order"
    topic: ClassVar[str] = ORDER_EVENTS
    published: ClassVar[bool] = False

    order_id: str


@registry.register
class OrderPlaced(OrderEvent):
    """An order was accepted: the whole order as placed (its status is then `placed`; what
    follows is told by OrderStatusChanged)."""

    message_type: ClassVar[str] = "OrderPlaced"
    published: ClassVar[bool] = True
    channel: str
    customer_id: str = Field(description="Known customer's id, or a key derived from the contact")
    external_id: str | None = None
    customer: CustomerAsStored
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    currency: Currency
    payment_terms: PaymentTerms
    shipping: ShippingAsStored
    subtotal: Money
    # What the product catalogue said when the order was placed: SKUs it does not know (the
    # order goes on, flagged), and the lines' total weight when it knows every SKU.
    unknown_skus: tuple[str, ...] = ()
    weight_kg: Decimal | None = None
    # Optional within v1: an order that came out of the order desk's split or merge
    # (docs/order-desk.md) says where its lines came from; placed by a channel, none of them.
    origin: Literal["split", "merge"] | None = Field(
        default=None, description="split / merge: the order was made by the order desk from other orders"
    )
    origin_id: str | None = Field(default=None, description="The split's or merge's id")
    moved_from: tuple[MovedLines, ...] = Field(
        default=(), description="The orders its lines came from, and which units of each"
    )


@registry.register
class OrderHeld(OrderEvent):
    message_type: ClassVar[str] = "OrderHeld"
    reasons: tuple[str, ...]


@registry.register
class OrderApproved(OrderEvent):
    message_type: ClassVar[str] = "OrderApproved"
    approved_by: str
    # Optional within v1: events written before parallel saga steps read as False.
    waiting_for_stock: bool = Field(
        default=False,
        description="Approved (a credit hold overridden) while the order still waits for stock:"
        " its status goes back to awaiting_stock, not approved",
    )


@registry.register
class OrderRejected(OrderEvent):
    message_type: ClassVar[str] = "OrderRejected"
    reason: str
    rejected_by: str


@registry.register
class StockReservationRequested(OrderEvent):
    message_type: ClassVar[str] = "StockReservationRequested"
    lines: tuple[SkuQuantity, ...]
    reply_by: datetime | None = Field(
        default=None, description="When the request is sent again if inventory has not answered"
    )


@registry.register
class OrderAwaitingStock(OrderEvent):
    message_type: ClassVar[str] = "OrderAwaitingStock"
    missing: tuple[SkuQuantity, ...]
    alert_at: datetime | None = Field(
        default=None,
        description="When the wait needs a person's attention if stock has not come (absent: never)",
    )


@registry.register
class OrderStockWaitOverdue(OrderEvent):
    """The order waited for stock past the policy's alert time: it needs a person's attention.
    It still takes the stock if it comes; `cancel_at`, when set, is when it is cancelled if the
    stock has not come by then (absent: it keeps waiting, as the policy says)."""

    message_type: ClassVar[str] = "OrderStockWaitOverdue"
    missing: tuple[SkuQuantity, ...]
    reason: str
    cancel_at: datetime | None = None


@registry.register
class OrderStockAllocated(OrderEvent):
    message_type: ClassVar[str] = "OrderStockAllocated"
    allocations: tuple[Allocation, ...]


@registry.register
class InvoiceRequested(OrderEvent):
    message_type: ClassVar[str] = "InvoiceRequested"
    reply_by: datetime | None = Field(
        default=None, description="When the request is sent again if billing has not answered"
    )


@registry.register
class OrderInvoiced(OrderEvent):
    """Billing issued the invoice while another step of the same parallel group (the stock
    reservation) was still open: the order keeps it and waits for that step. The payment
    deadline starts only when both are done (OrderAwaitingPayment)."""

    message_type: ClassVar[str] = "OrderInvoiced"
    invoice_id: str
    amount_due: Money
    due_at: datetime | None = Field(default=None, description="The invoice's own due date")


@registry.register
class ShipmentsRequested(OrderEvent):
    """The order is confirmed: inventory was asked to create its shipments."""

    message_type: ClassVar[str] = "ShipmentsRequested"
    reply_by: datetime | None = None


@registry.register
class OrderShipmentUpdated(OrderEvent):
    """A milestone of one of the order's shipments, as inventory reported it."""

    message_type: ClassVar[str] = "OrderShipmentUpdated"
    shipment_id: str
    warehouse: str
    status: str = Field(description="created, dispatched, collected, delivered or cancelled")
    carrier: str | None = None
    tracking_number: str | None = None


@registry.register
class OrderPartiallyShipped(OrderEvent):
    message_type: ClassVar[str] = "OrderPartiallyShipped"
    dispatched: int = Field(description="Shipments that have left, of `shipments`")
    shipments: int


@registry.register
class OrderShipped(OrderEvent):
    """Every shipment of the order has left its warehouse (or been collected)."""

    message_type: ClassVar[str] = "OrderShipped"


@registry.register
class OrderDelivered(OrderEvent):
    message_type: ClassVar[str] = "OrderDelivered"


@registry.register
class OrderCompleted(OrderEvent):
    """Delivered and paid in full: nothing is left to do for the order."""

    message_type: ClassVar[str] = "OrderCompleted"
    total: Money
    amount_paid: Money


@registry.register
class OrderReservationRevoked(OrderEvent):
    """Stock the order held is gone (a stock adjustment); inventory reserves it again."""

    message_type: ClassVar[str] = "OrderReservationRevoked"
    sku: str
    warehouse: str
    quantity: int
    reason: str


@registry.register
class OrderStepResent(OrderEvent):
    """A forward step's participant had not answered by its deadline: the request was sent
    again (same message id, so a participant that did get it changes nothing)."""

    message_type: ClassVar[str] = "OrderStepResent"
    step: str
    attempt: int = Field(ge=2)
    reply_by: datetime


@registry.register
class OrderReplyIgnored(OrderEvent):
    """A participant's reply that the saga did not expect where the order stood (late, or
    repeated under another id): recorded so no reply ever vanishes without a trace."""

    message_type: ClassVar[str] = "OrderReplyIgnored"
    reply_type: str
    reply_id: str
    stage: str
    status: str


@registry.register
class OrderAwaitingPayment(OrderEvent):
    message_type: ClassVar[str] = "OrderAwaitingPayment"
    invoice_id: str
    amount_due: Money
    payment_deadline: datetime


@registry.register
class OrderPaymentFailed(OrderEvent):
    """A payment attempt was declined. The order still waits for payment until its deadline,
    unless this was the last attempt the policy allows (then it is cancelled)."""

    message_type: ClassVar[str] = "OrderPaymentFailed"
    reference: str
    attempt: int = Field(ge=1, description="Declined attempts so far, this one included")
    max_attempts: int = Field(ge=1, description="Declined attempts the policy allows before it cancels")


@registry.register
class OrderCreditLimitOverridden(OrderEvent):
    """A person with the right to grant credit approved the order although it takes its
    customer over the credit limit; billing is asked to charge the credit anyway."""

    message_type: ClassVar[str] = "OrderCreditLimitOverridden"
    approved_by: str
    hold_reason: str = Field(description="The credit hold that was overridden, as it read")


@registry.register
class OrderPaymentRecorded(OrderEvent):
    message_type: ClassVar[str] = "OrderPaymentRecorded"
    amount: Money
    amount_paid: Money
    reference: str


@registry.register
class OrderConfirmed(OrderEvent):
    message_type: ClassVar[str] = "OrderConfirmed"
    invoice_id: str
    total: Money


@registry.register
class OrderCompensationStarted(OrderEvent):
    message_type: ClassVar[str] = "OrderCompensationStarted"
    reason: str
    steps: tuple[str, ...]
    final_status: str = Field(description="cancelled or rejected once compensation completes")
    requested_by: str


@registry.register
class CompensationStepRequested(OrderEvent):
    message_type: ClassVar[str] = "CompensationStepRequested"
    step: str
    attempt: int = Field(ge=1)
    retry_at: datetime = Field(description="When the step is sent again if still unanswered")


@registry.register
class CompensationStepCompleted(OrderEvent):
    message_type: ClassVar[str] = "CompensationStepCompleted"
    step: str
    detail: str = ""


@registry.register
class OrderRefunded(OrderEvent):
    """Money paid for the order went back to the customer (billing's refund, as the order
    recorded it). Public: a refund changes what the order is worth to a reader whether or not
    its status changes with it."""

    message_type: ClassVar[str] = "OrderRefunded"
    published: ClassVar[bool] = True
    amount: Money
    refund_id: str


@registry.register
class OrderProductionPlanned(OrderEvent):
    """Make-to-order: production will make what the order waits for (its timeline names the
    production order). The order keeps waiting as before: the goods fill its backorder when
    they are put into stock."""

    message_type: ClassVar[str] = "OrderProductionPlanned"
    production_order_id: str
    sku: str
    quantity: int
    parent_production_order_id: str | None = Field(
        default=None, description="Set when it makes a component of another production order"
    )


@registry.register
class OrderCancelled(OrderEvent):
    message_type: ClassVar[str] = "OrderCancelled"
    reason: str
    cancelled_by: str


@registry.register
class OrderNeedsAttention(OrderEvent):
    message_type: ClassVar[str] = "OrderNeedsAttention"
    step: str
    reason: str


# -- the order desk: amendments, splits and merges (docs/order-desk.md) ------------------------
# One change at a time per order: requested, answered by inventory (its reservation) and then
# billing (its invoice), and only then applied (OrderAmended). Until then the order is as it was.

ChangeKind = Literal["amend", "split", "merge"]


@registry.register
class OrderChangeRequested(OrderEvent):
    """A person asked to amend the order, split some of its units into a new order, or merge
    it into a new one. `lines` and `shipping` are what the order will have once it is done."""

    message_type: ClassVar[str] = "OrderChangeRequested"
    change_id: str
    kind: ChangeKind
    lines: tuple[OrderLine, ...]
    shipping: ShippingAsStored
    subtotal: Money
    weight_kg: Decimal | None = None
    reason: str
    requested_by: str
    other_order_id: str | None = Field(default=None, description="split: the new order; merge: the result")
    moved: tuple[SkuQuantity, ...] = Field(
        default=(), description="split / merge: units that leave this order"
    )
    hold_reasons: tuple[str, ...] = Field(
        default=(),
        description="Review rules the changed order crosses: a person decides before anything moves",
    )
    reply_by: datetime | None = None


@registry.register
class OrderChangeApproved(OrderEvent):
    """A person let a held change go on (a review rule it crossed, or the customer's credit)."""

    message_type: ClassVar[str] = "OrderChangeApproved"
    change_id: str
    approved_by: str
    credit_override: bool = False
    reply_by: datetime | None = None


@registry.register
class OrderChangeStepAnswered(OrderEvent):
    """A participant did its part of the change: inventory its reservation, billing its invoice."""

    message_type: ClassVar[str] = "OrderChangeStepAnswered"
    change_id: str
    step: Literal["stock", "invoice"]
    reply_by: datetime | None = Field(default=None, description="When the next step is asked: its deadline")
    # The invoice's answer, kept until the change is applied (OrderAmended).
    total: Money | None = None
    amount_paid: Money | None = None
    transferred: Money = Decimal("0.00")
    refunded: Money = Decimal("0.00")


@registry.register
class OrderChangeResent(OrderEvent):
    """A participant did not answer the change's request in time: asked again (same change id,
    so doing it twice is impossible)."""

    message_type: ClassVar[str] = "OrderChangeResent"
    change_id: str
    attempt: int
    reply_by: datetime


@registry.register
class OrderChangeHeld(OrderEvent):
    """Billing refused the change's extra amount (credit limit): finance decides."""

    message_type: ClassVar[str] = "OrderChangeHeld"
    change_id: str
    reasons: tuple[str, ...]


@registry.register
class OrderChangeUndoing(OrderEvent):
    """Finance refused the change's extra amount: inventory puts the order's reservation back
    as it was before the change, then the change is refused."""

    message_type: ClassVar[str] = "OrderChangeUndoing"
    change_id: str
    reason: str
    refused_by: str
    reply_by: datetime | None = None


@registry.register
class OrderChangeRefused(OrderEvent):
    """The change was not made (stock for the extra units, a person's rejection): the order is
    as before it was asked."""

    message_type: ClassVar[str] = "OrderChangeRefused"
    change_id: str
    reason: str
    refused_by: str


@registry.register
class OrderAmended(OrderEvent):
    """The order's lines or delivery changed (an amendment, or units split off into another
    order): the order keeps its id, payments and history. Published: a reader that keeps the
    order's lines takes the new ones from here."""

    message_type: ClassVar[str] = "OrderAmended"
    published: ClassVar[bool] = True
    change_id: str
    kind: ChangeKind
    previous_lines: tuple[OrderLine, ...]
    lines: tuple[OrderLine, ...]
    shipping: ShippingAsStored
    subtotal: Money
    weight_kg: Decimal | None = None
    total: Money | None = Field(default=None, description="What the invoice asks for now, once invoiced")
    reason: str
    amended_by: str
    split_into: str | None = Field(default=None, description="split: the new order the units went to")
    refunded: Money = Field(default=Decimal("0.00"), description="Overpayment refunded by this change")
    amount_paid: Money | None = Field(
        default=None, description="Paid and kept on this order's invoice now (after a split's transfer)"
    )
    transferred: Money = Field(
        default=Decimal("0.00"), description="split: money paid here, now on split_into"
    )


@registry.register
class OrderMerged(OrderEvent):
    """The order was merged into another (with its reservation and payments): it ends here."""

    message_type: ClassVar[str] = "OrderMerged"
    published: ClassVar[bool] = True
    change_id: str
    into_order_id: str
    reason: str
    merged_by: str
    transferred: Money = Field(default=Decimal("0.00"), description="Money paid here, now on the other order")


class ShipmentSummary(Value):
    """One of the order's shipments as the order last heard of it from inventory."""

    shipment_id: str
    warehouse: str = Field(description="The warehouse it ships from")
    status: str = Field(description="created, dispatched, collected, delivered or cancelled")
    carrier: str | None = Field(default=None, description="Known once dispatched")
    tracking_number: str | None = Field(default=None, description="Known once dispatched")


@registry.register
class OrderStatusChanged(IntegrationEvent):
    """The order's status changed. One per order per transaction in which it changed: from
    the status a reader last saw (`previous_status`, which is `placed` in the transaction that
    placed the order: OrderPlaced says that one) to the status it has now. Self-contained: the
    order's money, its allocations and its shipments as they stand, so a reader needs no other
    order event to act on it. The envelope's aggregate_version is the position the order's
    stream had reached (one stream position may be shared with a public event of the same
    transaction, such as OrderRefunded: deduplicate on event_id)."""

    message_type: ClassVar[str] = "OrderStatusChanged"
    aggregate_type: ClassVar[str] = "order"
    topic: ClassVar[str] = ORDER_EVENTS

    order_id: str
    status: str = Field(
        description="The status now: on_hold, approved, awaiting_stock, awaiting_payment, confirmed,"
        " partially_shipped, shipped, delivered, completed, cancelled, rejected, needs_attention,"
        " partially_returned, returned or merged"
        " (docs/events.md; a later version of the service may add statuses)"
    )
    previous_status: str = Field(description="The status before: placed, or one of those above")
    channel: str = Field(description="The sales channel the order came from")
    customer_id: str = Field(description="As on OrderPlaced")
    currency: Currency
    payment_terms: PaymentTerms
    reason: str | None = Field(
        default=None,
        description="Why, when the status has a reason: the hold reasons (joined with '; ') for"
        " on_hold, the rejection or cancellation reason, what needs attention",
    )
    hold_reasons: tuple[str, ...] = Field(default=(), description="on_hold: each reason it is held for")
    subtotal: Money = Field(description="The lines' total, before tax and shipping (as on OrderPlaced)")
    total: Money | None = Field(
        default=None, description="What the invoice asks for (tax and shipping included), once invoiced"
    )
    invoice_id: str | None = Field(default=None, description="Billing's invoice, once issued")
    amount_paid: Money = Field(description="Paid so far")
    amount_refunded: Money = Field(description="Refunded so far (OrderRefunded tells each refund)")
    payment_deadline: datetime | None = Field(
        default=None, description="awaiting_payment: when the order is cancelled if not paid by then"
    )
    missing: tuple[SkuQuantity, ...] = Field(
        default=(), description="awaiting_stock: what the order waits for (backordered)"
    )
    allocations: tuple[Allocation, ...] = Field(
        default=(), description="Where its stock is reserved (warehouse per SKU, quantity), once allocated"
    )
    shipments: tuple[ShipmentSummary, ...] = Field(
        default=(), description="Its shipments (warehouse, carrier, tracking), once shipments exist"
    )
    # Optional within v1: messages written before returns existed read as nothing returned.
    returned: tuple[SkuQuantity, ...] = Field(
        default=(),
        description="Units that came back in returns received so far, per SKU (partially_returned,"
        " returned; docs/returns.md)",
    )


@registry.register
class SubmitOrder(Command):
    """A sales channel's order submission, published to the intake topic.

    Same fields and the same idempotency as POST /orders: `idempotency_key`, or else the
    channel's `external_id`, identifies the submission.
    """

    message_type: ClassVar[str] = "SubmitOrder"
    aggregate_type: ClassVar[str] = "order_submission"
    topic: ClassVar[str] = ORDER_INTAKE

    idempotency_key: str | None = Field(default=None, max_length=200)
    channel: Channel
    external_id: str | None = Field(default=None, max_length=200)
    customer: CustomerSnapshot
    lines: OrderLines
    currency: Currency
    payment_terms: PaymentTerms
    shipping: Shipping

    @model_validator(mode="after")
    def _prices_in_the_currency_s_units(self) -> SubmitOrder:
        # On the submission, not on OrderPlaced: events stored before this check still load.
        prices = ((("lines", n, "unit_price"), line.unit_price) for n, line in enumerate(self.lines))
        require_minor_units(type(self).__name__, self.currency, prices)
        return self


class CustomerEvent(DomainEvent):
    """Customers known to the order desk: recognised by id, email or phone at review."""

    aggregate_type: ClassVar[str] = "customer"
    topic: ClassVar[str] = ORDER_EVENTS
    customer_id: str


@registry.register
class CustomerRegistered(CustomerEvent):
    message_type: ClassVar[str] = "CustomerRegistered"
    name: PersonalText
    email: PersonalText | None = None
    phone: PersonalText | None = None
    region: str | None = None


@registry.register
class CustomerBlocked(CustomerEvent):
    message_type: ClassVar[str] = "CustomerBlocked"
    reason: str


@registry.register
class CustomerUnblocked(CustomerEvent):
    message_type: ClassVar[str] = "CustomerUnblocked"


@registry.register
class CustomerErased(CustomerEvent):
    """The customer's key was destroyed: every personal field sealed with it, in this
    service's events and read models, reads as erased from now on (amounts stay)."""

    message_type: ClassVar[str] = "CustomerErased"
    reason: str = Field(max_length=500)
    erased_by: str


# -- returns after delivery (docs/returns.md) -------------------------------------------------
# A return is its own aggregate in the order service's store ("return-<return_id>"); its events
# are private. Readers outside learn of it through the order's OrderStatusChanged (returned,
# partially_returned, with `returned`), OrderRefunded, and billing's CreditNoteIssued.

RETURN_ID_PREFIX = "RET-"
ReturnResolution = Literal["refund", "replace"]
ReturnCondition = Literal["resellable", "damaged"]


def is_return_id(identifier: str) -> bool:
    return identifier.startswith(RETURN_ID_PREFIX)


class ReturnLine(Value):
    """What the customer sends back, and why."""

    sku: Sku
    quantity: Quantity
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class ReceivedLine(Value):
    """What came back, in what condition, into which warehouse (the one that shipped it)."""

    sku: Sku
    quantity: Quantity
    condition: ReturnCondition
    warehouse: WarehouseCode


class ReturnEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "return"
    topic: ClassVar[str] = ORDER_EVENTS
    published: ClassVar[bool] = False

    return_id: str
    order_id: str


@registry.register
class ReturnRequested(ReturnEvent):
    message_type: ClassVar[str] = "ReturnRequested"
    lines: tuple[ReturnLine, ...] = Field(min_length=1, max_length=MAX_LINES_PER_ORDER)
    resolution: ReturnResolution
    requested_by: str


@registry.register
class ReturnApproved(ReturnEvent):
    message_type: ClassVar[str] = "ReturnApproved"
    approved_by: str


@registry.register
class ReturnRejected(ReturnEvent):
    message_type: ClassVar[str] = "ReturnRejected"
    reason: str
    rejected_by: str


@registry.register
class ReturnReceived(ReturnEvent):
    """The goods came back: inventory is asked to restock the resellable ones and book the
    damaged ones as a loss; billing (resolution refund) to credit and refund them."""

    message_type: ClassVar[str] = "ReturnReceived"
    lines: tuple[ReceivedLine, ...] = Field(min_length=1, max_length=MAX_LINES_PER_ORDER)
    received_by: str
    # Optional within v1: when inventory and billing should have answered (else asked again).
    reply_by: datetime | None = None


@registry.register
class ReturnStepResent(ReturnEvent):
    """Inventory or billing had not answered what the receipt asked of them: asked again."""

    message_type: ClassVar[str] = "ReturnStepResent"
    attempt: int
    steps: tuple[str, ...] = Field(description="restock, credit, reserve, ship: what was asked again")
    reply_by: datetime


@registry.register
class ReturnNeedsAttention(ReturnEvent):
    """After the last attempt a participant still had not answered: a person must look."""

    message_type: ClassVar[str] = "ReturnNeedsAttention"
    reason: str


@registry.register
class ReturnRestocked(ReturnEvent):
    """Inventory's answer: resellable units back on hand, damaged ones written off."""

    message_type: ClassVar[str] = "ReturnRestocked"
    restocked: tuple[Allocation, ...] = ()
    written_off: tuple[Allocation, ...] = ()


@registry.register
class ReturnCredited(ReturnEvent):
    """Billing's answer: the credit note for the received lines, and the refund of what had
    been paid for them (absent when nothing had been paid)."""

    message_type: ClassVar[str] = "ReturnCredited"
    credit_note_id: str
    credit_amount: Money
    refund_id: str | None = None
    refund_amount: Money


@registry.register
class ReturnReplacementRequested(ReturnEvent):
    """Resolution replace: the received units are sent again, reserved and shipped under the
    return's id (inventory treats it as an order of its own)."""

    message_type: ClassVar[str] = "ReturnReplacementRequested"
    lines: tuple[SkuQuantity, ...] = Field(min_length=1, max_length=MAX_LINES_PER_ORDER)


@registry.register
class ReturnReplacementUpdated(ReturnEvent):
    """Where the replacement stands, as inventory reported it: reserved, short (waiting for
    stock), or a shipment milestone."""

    message_type: ClassVar[str] = "ReturnReplacementUpdated"
    status: str = Field(description="reserved, backordered, created, dispatched, collected or delivered")
    shipment_id: str | None = None


@registry.register
class ReturnCompleted(ReturnEvent):
    """Nothing is left to do: restocked and credited (refund), or the replacement delivered."""

    message_type: ClassVar[str] = "ReturnCompleted"


@registry.register
class OrderReturnRequested(OrderEvent):
    """The order's side of a return request: these units are spoken for until the return is
    rejected or received (two requests cannot return the same unit)."""

    message_type: ClassVar[str] = "OrderReturnRequested"
    return_id: str
    lines: tuple[SkuQuantity, ...]


@registry.register
class OrderReturnRejected(OrderEvent):
    message_type: ClassVar[str] = "OrderReturnRejected"
    return_id: str


@registry.register
class OrderGoodsReturned(OrderEvent):
    """Goods of the order came back (a return received): its status is then returned, when
    every unit delivered came back, or partially_returned (unless they are replaced)."""

    message_type: ClassVar[str] = "OrderGoodsReturned"
    return_id: str
    lines: tuple[SkuQuantity, ...]
    fully_returned: bool
    replaced: bool = Field(
        default=False,
        description="Resolution replace: the customer gets the units again, so the order's status"
        " and what can still be returned do not change",
    )


# -- the order desk's customer changes (docs/customers.md). Private: the order service's own
# record of who a customer is; other contexts know customers only by id.


@registry.register
class CustomerDetailsChanged(CustomerEvent):
    """A person changed a registered customer's details: the fields named in `changed` now
    hold the values given here (None: removed). Name, email and phone are sealed like
    CustomerRegistered's; the email is lower-cased, the phone in E.164 where it can be."""

    message_type: ClassVar[str] = "CustomerDetailsChanged"
    published: ClassVar[bool] = False
    changed: tuple[str, ...] = Field(min_length=1, description="name, email, phone or region")
    name: PersonalText | None = None
    email: PersonalText | None = None
    phone: PersonalText | None = None
    region: str | None = None
    changed_by: str


@registry.register
class CustomerMerged(CustomerEvent):
    """This customer was a duplicate of `into`: their orders count for `into` from now on,
    and their own history stays in their stream."""

    message_type: ClassVar[str] = "CustomerMerged"
    published: ClassVar[bool] = False
    into: str
    reason: str = Field(max_length=500)
    merged_by: str


@registry.register
class CustomerAbsorbed(CustomerEvent):
    """A duplicate customer (`merged_from`) was merged into this one (CustomerMerged on theirs)."""

    message_type: ClassVar[str] = "CustomerAbsorbed"
    published: ClassVar[bool] = False
    merged_from: str
    reason: str = Field(max_length=500)
    merged_by: str
