"""What finance decides (tax rate, shipping fees, default credit) and how an order is priced
under it. Pure: the settings are turned into a BillingPolicy at the edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from libs.events.values import OrderLine, ShippingMethod

CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class BillingPolicy:
    tax_rate: Decimal
    shipping_fees: Mapping[ShippingMethod, Decimal]
    default_credit_limit: Decimal


@dataclass(frozen=True)
class Charges:
    subtotal: Decimal
    shipping_fee: Decimal
    tax: Decimal
    total: Decimal


def price(lines: Sequence[OrderLine], shipping_method: ShippingMethod, policy: BillingPolicy) -> Charges:
    subtotal = cents(sum((line.quantity * line.unit_price for line in lines), Decimal(0)))
    shipping_fee = cents(policy.shipping_fees[shipping_method])
    # Shipping is part of the taxable amount; tax is rounded once, on the whole invoice.
    tax = cents((subtotal + shipping_fee) * policy.tax_rate)
    return Charges(subtotal, shipping_fee, tax, subtotal + shipping_fee + tax)
