"""Order context (order service): the order and the steps of its fulfilment saga."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, model_validator

from libs.events.base import Command, DomainEvent
from libs.events.registry import registry
from libs.events.topics import ORDER_EVENTS, ORDER_INTAKE
from libs.events.values import (
    Address,
    Allocation,
    Channel,
    Currency,
    CustomerSnapshot,
    Money,
    OrderLine,
    OrderLines,
    PaymentTerms,
    Shipping,
    SkuQuantity,
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


class OrderEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "order"
    topic: ClassVar[str] = ORDER_EVENTS

    order_id: str


@registry.register
class OrderPlaced(OrderEvent):
    message_type: ClassVar[str] = "OrderPlaced"
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
    message_type: ClassVar[str] = "OrderRefunded"
    amount: Money
    refund_id: str


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
