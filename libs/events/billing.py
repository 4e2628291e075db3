"""Billing context (billing service): invoices, payments, refunds, customer credit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, PlainSerializer

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
    Reference,
    Region,
    ShippingMethod,
    SkuQuantities,
    SkuQuantity,
    Value,
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
    # Optional within v1: refunds before returns existed had no credit note.
    credit_note_id: str | None = Field(
        default=None, description="The credit note it pays out (a return's), if any; none for goodwill"
    )


@registry.register
class CreditNoteIssued(InvoiceEvent):
    """Returned lines credited against the order's invoice: `amount` is what the lines were
    invoiced at (tax included), `refund_amount` the part of it paid back now (RefundIssued,
    never more than was paid and not yet refunded); the rest lowers what is still owed."""

    message_type: ClassVar[str] = "CreditNoteIssued"
    credit_note_id: str
    invoice_id: str
    return_id: str | None = None
    lines: tuple[SkuQuantity, ...]
    amount: Money
    refund_amount: Money
    refund_id: str | None = Field(default=None, description="The RefundIssued paying it out, if any")
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
class IssueReturnCredit(BillingCommand):
    """A return was received: credit its lines on the invoice and refund what was paid for
    them. Once per return (a repeat changes nothing)."""

    message_type: ClassVar[str] = "IssueReturnCredit"
    return_id: Annotated[str, Field(min_length=1, max_length=200)]
    lines: SkuQuantities
    reason: Note



# -- the order desk: amendments, splits and merges ----------------------------------------------


class _Pricing(BillingCommand):
    """What the invoice's amounts are worked out from, as for IssueInvoice."""

    lines: OrderLines
    shipping_method: ShippingMethod
    due_at: datetime = Field(description="Prepaid: the deadline for what is owed. On account: net terms.")
    destination_country: Annotated[str, Field(max_length=60)] | None = None
    destination_region: Region | None = None
    weight_kg: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)] | None = None
    channel: Channel | None = None


@registry.register
class AdjustInvoice(_Pricing):
    """An amendment: the order's invoice is worked out again for its whole new lines (and
    shipping). More: a supplementary invoice for the difference (on account: the credit check
    for the difference, refused as InvoiceAdjustmentRefused unless overridden). Less: a credit
    note for the difference, and what was paid beyond the new total is refunded (RefundIssued).
    Money paid is kept. The same amendment id again gives the same answer."""

    message_type: ClassVar[str] = "AdjustInvoice"
    amendment_id: Reference
    credit_limit_overridden_by: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class InvoiceMove(Value):
    """Units of one order's invoice lines that go to another order's invoice."""

    from_order_id: OrderId
    lines: SkuQuantities


@registry.register
class MoveInvoiceLines(_Pricing):
    """A split or a merge: this order (a new one) is invoiced for `lines`, which come from the
    sources' invoices, with the money paid for them.

    - split: each source is credited (a credit note, no refund) for the moved units at the
      value they were invoiced at, and this order's invoice carries them at that same value,
      with no shipping fee (the source keeps the one it charged). What a source was paid
      beyond its new total moves to this invoice, up to its total.
    - merge: each source's invoice is closed (merged, nothing refunded), all it was paid moves
      to this invoice, which is worked out anew for every line with one shipping fee; what
      was paid beyond its total is refunded.

    Sources answer InvoiceAdjusted (moved_to this order); this order answers InvoiceIssued,
    then PaymentReceived (method "transfer") per source that had money to carry, InvoicePaid
    when that covers it, RefundIssued for any excess. On account, credit moves with the
    amounts (never refused: it is the same customer's). The same move id again changes nothing."""

    message_type: ClassVar[str] = "MoveInvoiceLines"
    move_id: Reference
    kind: Literal["split", "merge"]
    sources: Annotated[tuple[InvoiceMove, ...], Field(min_length=1, max_length=50)]
    customer_id: CustomerId
    currency: Currency
    payment_terms: PaymentTerms


# A change in an amount, either way (Money is never negative).
SignedMoney = Annotated[
    Decimal,
    Field(max_digits=14, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]


@registry.register
class InvoiceAdjusted(InvoiceEvent):
    """The answer to AdjustInvoice, and each source's answer to MoveInvoiceLines."""

    message_type: ClassVar[str] = "InvoiceAdjusted"
    invoice_id: str
    amendment_id: str = Field(description="The amendment's id, or the move's")
    document_id: str | None = Field(
        default=None,
        description="The supplementary invoice (SUP-...) or credit note (CN-...); None: no change",
    )
    lines: InvoiceLines = Field(description="The invoice's lines now")
    previous_total: Money
    total: Money
    difference: SignedMoney = Field(description="total - previous_total: negative when it went down")
    amount_paid: Money = Field(description="Paid and kept on this invoice, after any transfer")
    refund_id: str | None = Field(default=None, description="The RefundIssued of an overpayment, if any")
    refund_amount: Money = Decimal("0.00")
    moved_to: str | None = Field(default=None, description="A move: the order the lines went to")
    transferred: Money = Field(default=Decimal("0.00"), description="A move: money carried to moved_to")
    # Where the invoice stands after the change (billing always sets them; None only in
    # hand-made examples): its parts as InvoiceIssued has them, what is still owed, its status.
    subtotal: Money | None = Field(default=None, description="The lines' net amounts now")
    tax: Money | None = Field(default=None, description="The lines' tax plus the shipping fee's, now")
    shipping_fee: Money | None = Field(default=None, description="Net of tax, now")
    outstanding: Money | None = Field(default=None, description="Still owed after the change (0: nothing)")
    status: Literal["open", "paid", "merged"] | None = Field(
        default=None, description="open: something is owed; paid: nothing is; merged: closed into moved_to"
    )


@registry.register
class InvoiceAdjustmentRefused(InvoiceEvent):
    """On account: the amendment's extra amount would take the customer over the credit limit."""

    message_type: ClassVar[str] = "InvoiceAdjustmentRefused"
    amendment_id: str
    reason: str
    amount: Money = Field(description="The extra amount asked for")
    open_balance: Money
    credit_limit: Money


@registry.register
class VoidInvoice(BillingCommand):
    """Compensation: void the order's invoice (if any) and refund whatever was paid."""

    message_type: ClassVar[str] = "VoidInvoice"
    reason: Note
