"""What the billing service's endpoints answer, as documented in its OpenAPI.

Statuses and outcomes are the domain's own Literals. Views allow members they do not name: a
field a read model gains reaches clients at once (and is documented when it is named here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.events.values import PaymentTerms
from services.billing.domain.invoice import PaymentOutcome
from services.billing.domain.invoice import Status as InvoiceStatus


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class PaymentResult(View):
    """A payment as applied, and where its invoice stands now."""

    reference: str = Field(examples=["psp-4711"])
    order_id: str
    invoice_id: str
    outcome: PaymentOutcome
    amount: str = Field(description="Decimal string in the invoice's currency", examples=["54.90"])
    amount_paid: str = Field(description="Paid on the invoice so far", examples=["54.90"])
    invoice_status: InvoiceStatus


class PaymentView(View):
    reference: str
    order_id: str
    invoice_id: str | None
    method: str = Field(examples=["card"])
    amount: str
    outcome: PaymentOutcome
    recorded_at: datetime


class InvoiceLineView(View):
    sku: str
    quantity: int
    unit_price: str
    # Tax per line (docs/money-and-tax.md); absent on invoices issued before it was worked out.
    tax_category: str | None = Field(default=None, examples=["standard"])
    tax_rate: str | None = Field(default=None, description="A fraction: 0.19 is 19 %", examples=["0.19"])
    net: str | None = Field(default=None, examples=["100.00"])
    tax: str | None = Field(default=None, examples=["19.00"])
    gross: str | None = Field(default=None, description="net + tax", examples=["119.00"])


class InvoiceChangeView(View):
    """An amendment, or lines moved out to or in from another order (docs/billing.md)."""

    change_id: str = Field(description="The amendment's or the move's id")
    kind: Literal["amendment", "moved_out", "moved_in"]
    other_order_id: str | None = Field(description="moved_out: the order the lines went to; moved_in: from")
    document_id: str | None = Field(description="The supplementary invoice (SUP-...) or credit note (CN-...)")
    document_kind: Literal["supplementary_invoice", "credit_note"] | None
    previous_total: str | None = Field(description="The invoice's total before (None on moved_in)")
    total: str | None = Field(description="The invoice's total after (None on moved_in)")
    difference: str = Field(
        description="total - previous_total; moved_in: the value moved in", examples=["-25.00"]
    )
    refund_id: str | None = Field(description="The refund of what was paid beyond the new total")
    refund_amount: str
    transferred: str = Field(description="Money carried from the source order's invoice to the new order's")
    recorded_at: datetime


class InvoiceView(View):
    invoice_id: str
    order_id: str
    customer_id: str | None
    currency: str = Field(examples=["EUR"])
    amount: str = Field(description="The total to pay: subtotal + tax + shipping fee", examples=["54.90"])
    subtotal: str
    tax: str
    shipping_fee: str
    shipping_rule: str | None = Field(description="Which shipping fee rule applied")
    amount_paid: str
    status: InvoiceStatus
    payment_terms: PaymentTerms
    due_at: datetime | None = Field(description="On account: when payment is due")
    lines: list[InvoiceLineView]
    changes: list[InvoiceChangeView] = Field(
        default_factory=list, description="Amendments, splits and merges, oldest first"
    )


class RefundView(View):
    refund_id: str
    order_id: str
    invoice_id: str
    amount: str
    reason: str
    credit_note_id: str | None = Field(
        default=None, description="The credit note it pays out (a return's, an amendment's, a merge's)"
    )
    issued_at: datetime


class GoodwillRefundView(RefundView):
    refundable: str = Field(description="What can still be refunded for the order (paid less refunded)")


class AccountView(View):
    customer_id: str
    credit_limit: str = Field(description="Its own limit, else the default", examples=["1000.00"])
    open_balance: str = Field(description="Invoiced on account and not yet paid")
    available_credit: str = Field(description="credit_limit - open_balance, never below 0")
