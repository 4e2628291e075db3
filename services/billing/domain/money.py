"""Amounts on invoices: Decimal, rounded half up to the currency's smallest unit once, where
a figure is final: a yen invoice in whole yen, a euro one in cents.

Money is stored with two decimals (numeric(14,2)), so a three-decimal currency (KWD) rounds
to hundredths like a two-decimal one: no amount ever holds more than its column keeps.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from libs.events.values import minor_units

CENT = Decimal("0.01")
STORED_PLACES = 2


def smallest_unit(currency: str) -> Decimal:
    """1 for JPY, 0.01 for EUR (and for KWD, whose thousandths Money cannot store)."""
    places = minor_units(currency)
    return Decimal(1).scaleb(-min(STORED_PLACES if places is None else places, STORED_PLACES))


def rounded(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half up to the currency's smallest unit (and written with two
    decimals, as Money carries it: 1200 yen is 1200.00)."""
    return amount.quantize(smallest_unit(currency), rounding=ROUND_HALF_UP).quantize(CENT)


def in_smallest_units(amount: Decimal, currency: str) -> bool:
    """True if `amount` is a whole number of the currency's smallest unit."""
    return amount == amount.quantize(smallest_unit(currency))


def cents(amount: Decimal) -> Decimal:
    """Configuration amounts in no currency yet (checked per currency where they apply)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
