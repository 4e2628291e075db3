"""Shipping fee rules: what an invoice charges for carrying an order, by currency, method,
destination, weight and order value. Pure: the rules are read from configuration at the
edge (services/billing/shipping_config.py) and passed in.

How a fee is found, in this order:
1. The rules of the invoice's currency, else those for any currency ("*"); with neither,
   the invoice is refused (NoShippingRules): a fee in a currency nobody priced is a guess.
2. The shipping method's rule in them.
3. The first destination rule matching the order's country and region (each of the two
   it names must match, ignoring case), else the method's base fee and free threshold.
4. Free when the goods subtotal is at least the free threshold: no fee, no weight surcharge.
5. Otherwise the fee plus the surcharge of the heaviest weight band the order is above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from libs.domain import DomainError
from libs.events.values import ShippingMethod
from services.billing.domain.money import rounded

ANY_CURRENCY = "*"
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class WeightBand:
    """Orders heavier than `above_kg` pay `add`, plus `per_kg` for each kilogram, or part of
    one, above it. Only the heaviest band an order is above applies: bands do not add up."""

    above_kg: Decimal
    add: Decimal = ZERO
    per_kg: Decimal = ZERO

    def surcharge(self, weight_kg: Decimal) -> Decimal:
        return self.add + self.per_kg * self.started_kg_above(weight_kg)

    def started_kg_above(self, weight_kg: Decimal) -> Decimal:
        return (weight_kg - self.above_kg).to_integral_value(rounding=ROUND_CEILING)


@dataclass(frozen=True)
class DestinationRule:
    """A fee (and free threshold) for orders to a country, a region, or a region of a country."""

    fee: Decimal
    country: str | None = None
    region: str | None = None
    free_from: Decimal | None = None  # None: never free to this destination

    def matches(self, country: str | None, region: str | None) -> bool:
        return _same(self.country, country) and _same(self.region, region)

    def __str__(self) -> str:
        named = [f"region {self.region}"] if self.region is not None else []
        named += [f"country {self.country}"] if self.country is not None else []
        return ", ".join(named)


def _same(wanted: str | None, given: str | None) -> bool:
    """A rule that does not name the field matches any value, even none."""
    if wanted is None:
        return True
    return given is not None and wanted.strip().casefold() == given.strip().casefold()


@dataclass(frozen=True)
class MethodRule:
    fee: Decimal
    free_from: Decimal | None = None
    destinations: tuple[DestinationRule, ...] = ()
    weight_bands: tuple[WeightBand, ...] = ()

    def destination(self, country: str | None, region: str | None) -> DestinationRule | None:
        return next((rule for rule in self.destinations if rule.matches(country, region)), None)

    def band(self, weight_kg: Decimal) -> WeightBand | None:
        above = [band for band in self.weight_bands if weight_kg > band.above_kg]
        return max(above, key=lambda band: band.above_kg, default=None)


@dataclass(frozen=True)
class ShippingRules:
    """Per currency code (or ANY_CURRENCY), a rule for every shipping method."""

    by_currency: Mapping[str, Mapping[ShippingMethod, MethodRule]] = field(default_factory=dict)

    @classmethod
    def flat(cls, fees: Mapping[ShippingMethod, Decimal]) -> ShippingRules:
        """One fee per method in every currency: what billing charged before the rules."""
        return cls({ANY_CURRENCY: {method: MethodRule(fee) for method, fee in fees.items()}})


@dataclass(frozen=True)
class ShippingFee:
    amount: Decimal
    rule: str  # which rule applied and why, for the invoice's reader


class NoShippingRules(DomainError):
    pass


def shipping_fee(
    rules: ShippingRules,
    method: ShippingMethod,
    currency: str,
    order_value: Decimal,
    *,
    country: str | None = None,
    region: str | None = None,
    weight_kg: Decimal | None = None,
) -> ShippingFee:
    """The fee for carrying an order whose goods come to `order_value` in `currency`."""
    table_name = currency if currency in rules.by_currency else ANY_CURRENCY
    table = rules.by_currency.get(table_name)
    if table is None:
        covered = ", ".join(sorted(rules.by_currency))
        raise NoShippingRules(
            "no_shipping_rules",
            f"the shipping rules price {covered} only and have no '{ANY_CURRENCY}' rules for other"
            f" currencies, so an invoice in {currency} cannot be issued",
        )
    method_rule = table[method]
    scope = f"{method} in {'any currency' if table_name == ANY_CURRENCY else table_name}"
    destination = method_rule.destination(country, region)
    if destination is None:
        fee, free_from = method_rule.fee, method_rule.free_from
        what = f"{scope}: base fee {fee:.2f}"
    else:
        fee, free_from = destination.fee, destination.free_from
        scope = f"{scope} to {destination}"
        what = f"{scope}: {fee:.2f}"

    if free_from is not None and order_value >= free_from:
        why = f"free from an order value of {free_from:.2f} (this order {order_value:.2f})"
        return ShippingFee(ZERO, f"{scope}: {why}")
    if not method_rule.weight_bands:
        return ShippingFee(rounded(fee, currency), what)
    if weight_kg is None:
        return ShippingFee(rounded(fee, currency), f"{what} (weight unknown: no weight surcharge)")
    band = method_rule.band(weight_kg)
    if band is None:
        return ShippingFee(rounded(fee, currency), what)
    total = rounded(fee + band.surcharge(weight_kg), currency)
    return ShippingFee(total, f"{what} + {_band_charge(band, weight_kg)} ({_kg(weight_kg)}) = {total:.2f}")


def _band_charge(band: WeightBand, weight_kg: Decimal) -> str:
    parts = [f"{band.add:.2f}"] if band.add or not band.per_kg else []
    if band.per_kg:
        parts.append(f"{band.per_kg:.2f} per kg for {band.started_kg_above(weight_kg)} kg")
    return f"{' + '.join(parts)} above {_kg(band.above_kg)}"


def _kg(weight: Decimal) -> str:
    return f"{weight.normalize():f} kg"
