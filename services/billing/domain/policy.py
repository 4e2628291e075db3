"""What finance decides (tax rate, shipping fee rules, default credit) and how an order is
priced under it. Pure: the settings are turned into a BillingPolicy at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from libs.events.billing import IssueInvoice
from services.billing.domain.money import cents
from services.billing.domain.shipping import ShippingRules, shipping_fee


@dataclass(frozen=True)
class BillingPolicy:
    tax_rate: Decimal
    shipping: ShippingRules
    default_credit_limit: Decimal


@dataclass(frozen=True)
class Charges:
    subtotal: Decimal
    shipping_fee: Decimal
    shipping_rule: str
    tax: Decimal
    total: Decimal


def price(command: IssueInvoice, policy: BillingPolicy) -> Charges:
    subtotal = cents(sum((line.quantity * line.unit_price for line in command.lines), Decimal(0)))
    shipping = shipping_fee(
        policy.shipping,
        command.shipping_method,
        command.currency,
        subtotal,
        country=command.destination_country,
        region=command.destination_region,
        weight_kg=command.weight_kg,
    )
    # Shipping is part of the taxable amount; tax is rounded once, on the whole invoice.
    tax = cents((subtotal + shipping.amount) * policy.tax_rate)
    return Charges(subtotal, shipping.amount, shipping.rule, tax, subtotal + shipping.amount + tax)
