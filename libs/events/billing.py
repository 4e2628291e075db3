"""Billing context (billing service): invoices, payments, refunds, customer credit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from libs.events.base import Command, DomainEvent
from libs.events.registry import registry
from libs.events.topics import BILLING_COMMANDS, BILLING_EVENTS
from libs.events.values import (
    Channel,
    Currency,
    CustomerId,
    Money,
    Note,
    OrderId,
    OrderLine,
    OrderLines,
    PaymentTerms,
    Region,
    ShippingMethod,
)

# A tax rate as a fraction: 0.19 is 19 %. Up to 0.999999, so a rate table cannot mistype 19 for 0.19.
TaxRate = Annotated[Decimal, Field(ge=0, lt=1, decimal_places=6)]


class InvoiceLine(OrderLine):
    """An order line as invoiced: its tax, worked out per line so the lines add up to the
    invoice's tax. `net + tax = gross`; `gross` is quantity x unit_price when the channel's
    prices include tax, `net` is when they do not. Absent on invoices issued before tax was
    worked out per line."""

    tax_rate: TaxRate | None = None
    net: Money | None = None
    tax: Money | None = None
    gross: Money | None = None


def _order_lines_as_invoice_lines(lines: Any) -> Any:
    """An order's line is an invoice line whose tax is not worked out (as before tax per line)."""
    if not isinstance(lines, list | tuple):
        return lines
    return [
        line.model_dump() if isinstance(line, OrderLine) and not isinstance(line, InvoiceLine) else line
        for line in lines
    ]


InvoiceLines = Annotated[tuple[InvoiceLine, ...], BeforeValidator(_order_lines_as_invoice_lines)]


class InvoiceEvent(DomainEvent):
    """One invoice per order; the stream is keyed by order id."""

    aggregate_type: ClassVar[str] = "invoice"
    topic: ClassVar[str] = BILLING_EVENTS
    order_id: str


@registry.register
class InvoiceIssued(InvoiceEvent):
    message_type: ClassVar[str] = "InvoiceIssued"
    invoice_id: str
    customer_id: str
    currency: Currency
    lines: InvoiceLines
    subtotal: Money = Field(description="The lines' net amounts")
    tax: Money = Field(description="The lines' tax plus the shipping fee's")
    shipping_fee: Money = Field(description="Net of tax")
    total: Money = Field(description="subtotal + shipping_fee + tax")
    payment_terms: PaymentTerms
    due_at: datetime
    shipping_rule: str = Field(
        default="",
        max_length=1000,
        description="Which shipping fee rule applied and why, for people (empty before the rules)",
    )
    prices_include_tax: bool = Field(
        default=False, description="The channel's unit prices (and shipping fees) include tax"
    )
    shipping_tax: Money = Field(default=Decimal("0.00"), description="Tax on the shipping fee, in `tax`")
    tax_rule: str = Field(
        default="",
        max_length=1000,
        description="Which tax rates applied and why, for people (empty before the rate table)",
    )


@registry.register
class CreditCheckFailed(InvoiceEvent):
    message_type: ClassVar[str] = "CreditCheckFailed"
    customer_id: str
    amount: Money
    open_balance: Money
    credit_limit: Money


@registry.register
class PaymentReceived(InvoiceEvent):
    message_type: ClassVar[str] = "PaymentReceived"
    invoice_id: str
    reference: str
    method: str
    amount: Money
    amount_paid: Money


@registry.register
class PaymentFailed(InvoiceEvent):
    message_type: ClassVar[str] = "PaymentFailed"
    invoice_id: str
    reference: str
    method: str
    amount: Money


@registry.register
class InvoicePaid(InvoiceEvent):
    message_type: ClassVar[str] = "InvoicePaid"
    invoice_id: str
    amount_paid: Money


@registry.register
class InvoiceVoided(InvoiceEvent):
    message_type: ClassVar[str] = "InvoiceVoided"
    invoice_id: str | None = Field(description="None when no invoice had been issued yet")
    reason: str


@registry.register
class RefundIssued(InvoiceEvent):
    message_type: ClassVar[str] = "RefundIssued"
    refund_id: str
    invoice_id: str
    amount: Money
    reason: str


class CustomerAccountEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "customer_account"
    topic: ClassVar[str] = BILLING_EVENTS
    customer_id: str


@registry.register
class CreditLimitSet(CustomerAccountEvent):
    message_type: ClassVar[str] = "CreditLimitSet"
    credit_limit: Money


@registry.register
class CreditCharged(CustomerAccountEvent):
    message_type: ClassVar[str] = "CreditCharged"
    order_id: str
    amount: Money


@registry.register
class CreditLimitOverridden(CustomerAccountEvent):
    """Finance let an order take the customer over the credit limit: the audited decision,
    recorded beside the CreditCharged it allows, with the figures billing saw then."""

    message_type: ClassVar[str] = "CreditLimitOverridden"
    order_id: str
    amount: Money
    open_balance: Money
    credit_limit: Money
    approved_by: str


@registry.register
class CreditReleased(CustomerAccountEvent):
    message_type: ClassVar[str] = "CreditReleased"
    order_id: str
    amount: Money


class BillingCommand(Command):
    aggregate_type: ClassVar[str] = "invoice"
    topic: ClassVar[str] = BILLING_COMMANDS
    order_id: OrderId


@registry.register
class IssueInvoice(BillingCommand):
    message_type: ClassVar[str] = "IssueInvoice"
    customer_id: CustomerId
    currency: Currency
    lines: OrderLines
    payment_terms: PaymentTerms
    shipping_method: ShippingMethod
    due_at: datetime = Field(description="Prepaid: the payment deadline. On account: net terms.")
    # What the shipping fee rules look at (billing settings); absent: the method's base fee.
    destination_country: Annotated[str, Field(max_length=60)] | None = None
    destination_region: Region | None = None
    weight_kg: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)] | None = Field(
        default=None, description="Total weight of the lines from the catalogue, when every SKU is known"
    )
    # Whether its prices include tax is the channel's (billing settings); absent: they do not.
    channel: Channel | None = None
    credit_limit_overridden_by: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="On account: who in finance approved the order over the customer's credit limit."
        " Billing charges the credit anyway (recording CreditLimitOverridden), also after it refused.",
    )


@registry.register
class VoidInvoice(BillingCommand):
    """Compensation: void the order's invoice (if any) and refund whatever was paid."""

    message_type: ClassVar[str] = "VoidInvoice"
    reason: Note
