"""Shared examples for the billing domain tests: a policy, commands, and ways to reach a state."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from libs.events.base import DomainEvent
from libs.events.billing import IssueInvoice
from libs.events.values import OrderLine, PaymentTerms, ShippingMethod
from services.billing.domain.account import ACCOUNT, CustomerAccount
from services.billing.domain.invoice import (
    INVOICE,
    Invoice,
    PaymentAttempt,
    PaymentOutcome,
    decide_issue,
)
from services.billing.domain.policy import BillingPolicy
from services.billing.domain.shipping import ShippingRules
from services.billing.domain.tax import TaxRates

POLICY = BillingPolicy(
    tax=TaxRates.flat(Decimal("0.20")),
    shipping=ShippingRules.flat(
        {"standard": Decimal("4.90"), "express": Decimal("14.90"), "pickup": Decimal("0.00")}
    ),
    default_credit_limit=Decimal("10000.00"),
)
DUE = datetime(2030, 1, 31, tzinfo=UTC)
ORDER = "ORD-1"
CUSTOMER = "CUST-1"


def line(sku: str, quantity: int, unit_price: str) -> OrderLine:
    return OrderLine(sku=sku, quantity=quantity, unit_price=Decimal(unit_price))


def issue_command(
    *lines: OrderLine,
    order_id: str = ORDER,
    terms: PaymentTerms = "prepaid",
    shipping: ShippingMethod = "pickup",
    currency: str = "EUR",
    country: str | None = None,
    region: str | None = None,
    weight_kg: str | None = None,
) -> IssueInvoice:
    """Pickup by default, so the examples' totals are the lines plus 20% tax."""
    return IssueInvoice(
        order_id=order_id,
        customer_id=CUSTOMER,
        currency=currency,
        lines=lines or (line("SKU-1", 1, "100.00"),),
        payment_terms=terms,
        shipping_method=shipping,
        due_at=DUE,
        destination_country=country,
        destination_region=region,
        weight_kg=None if weight_kg is None else Decimal(weight_kg),
    )


def invoice_after(*events: DomainEvent) -> Invoice:
    return INVOICE.replay(list(events))


def account_after(*events: DomainEvent) -> CustomerAccount:
    return ACCOUNT.replay(list(events))


def issued(command: IssueInvoice, *account_history: DomainEvent) -> tuple[DomainEvent, ...]:
    """The events of an invoice issued for `command` (its invoice's, then its account's)."""
    decision = decide_issue(Invoice(), command, account_after(*account_history), POLICY)
    return (*decision.invoice, *decision.account)


def payment(amount: str, reference: str = "PAY-1", outcome: PaymentOutcome = "succeeded") -> PaymentAttempt:
    return PaymentAttempt(ORDER, reference, "card", Decimal(amount), outcome)
