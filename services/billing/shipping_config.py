"""The shipping fee rules as configured: OM_BILLING_SHIPPING_RULES, a JSON object read once at
start into the domain's ShippingRules. Anything wrong in it is an error naming where it is,
so a bad rule set stops the service instead of charging the wrong fee.

    {
      "EUR": {                                  a currency code, or "*" for any other currency
        "standard": {                           every currency lists standard, express, pickup
          "fee": "4.90",                        base fee
          "free_from": "50.00",                 optional: free when the goods come to this much
          "destinations": [                     optional: the first that matches wins
            {"country": "CH", "fee": "19.90", "free_from": null},
            {"region": "islands", "fee": "9.90"}
          ],
          "weight": [                           optional: the heaviest band the order is above
            {"above_kg": "5", "add": "3.00"},
            {"above_kg": "20", "add": "8.00", "per_kg": "0.50"}
          ]
        },
        "express": {"fee": "14.90"},
        "pickup": {"fee": "0.00"}
      }
    }

A destination names a country, a region or both (matched ignoring case); it has its own fee,
and the method's free threshold unless it gives its own (null: never free there). Amounts are
strings or JSON numbers (read as decimals, never floats) in whole cents.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from libs.events.values import MAX_ORDER_VALUE, ShippingMethod
from services.billing.domain.money import cents, in_smallest_units, smallest_unit
from services.billing.domain.shipping import (
    ANY_CURRENCY,
    ZERO,
    DestinationRule,
    MethodRule,
    ShippingRules,
    WeightBand,
)

# Far above any real fee, and low enough that no fee plus the largest order and its tax can
# overflow an invoice amount (numeric(14,2)), even at the heaviest weight a command can carry.
MAX_FEE = Decimal("100000.00")
MAX_PER_KG = Decimal("100.00")
MAX_KG = Decimal("999999999.999")
MAX_DESTINATIONS = 1000
MAX_BANDS = 100

Fee = Annotated[Decimal, Field(ge=0, le=MAX_FEE, decimal_places=2)]
PerKg = Annotated[Decimal, Field(ge=0, le=MAX_PER_KG, decimal_places=2)]
Threshold = Annotated[Decimal, Field(ge=0, le=MAX_ORDER_VALUE, decimal_places=2)]
Kilograms = Annotated[Decimal, Field(ge=0, le=MAX_KG, decimal_places=3)]


class ShippingRulesError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Band(_Strict):
    above_kg: Kilograms
    add: Fee | None = None
    per_kg: PerKg | None = None

    @model_validator(mode="after")
    def _charges_something(self) -> _Band:
        if self.add is None and self.per_kg is None:
            raise ValueError("a weight band needs an 'add', a 'per_kg' or both")
        return self


class _Destination(_Strict):
    country: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    region: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    fee: Fee
    free_from: Threshold | None = None

    @model_validator(mode="after")
    def _names_a_place(self) -> _Destination:
        if self.country is None and self.region is None:
            raise ValueError("a destination names a 'country', a 'region' or both")
        return self


class _Method(_Strict):
    fee: Fee
    free_from: Threshold | None = None
    destinations: Annotated[list[_Destination], Field(max_length=MAX_DESTINATIONS)] = []
    weight: Annotated[list[_Band], Field(max_length=MAX_BANDS)] = []

    @field_validator("weight")
    @classmethod
    def _bands_rise(cls, bands: list[_Band]) -> list[_Band]:
        for lighter, heavier in zip(bands, bands[1:], strict=False):
            if heavier.above_kg <= lighter.above_kg:
                raise ValueError(
                    f"weight bands go from light to heavy: above_kg {heavier.above_kg}"
                    f" follows {lighter.above_kg}"
                )
        return bands

    @field_validator("destinations")
    @classmethod
    def _each_can_apply(cls, destinations: list[_Destination]) -> list[_Destination]:
        """A destination that an earlier one already covers would never apply: a mistake."""
        for later, rule in enumerate(destinations):
            for earlier in range(later):
                if _covers(destinations[earlier], rule):
                    raise ValueError(
                        f"destination {later} ({_place(rule)}) never applies:"
                        f" destination {earlier} ({_place(destinations[earlier])}) matches first"
                    )
        return destinations


def _covers(earlier: _Destination, later: _Destination) -> bool:
    return all(
        mine is None or (theirs is not None and mine.strip().casefold() == theirs.strip().casefold())
        for mine, theirs in ((earlier.country, later.country), (earlier.region, later.region))
    )


def _place(destination: _Destination) -> str:
    return str(DestinationRule(destination.fee, destination.country, destination.region))


class _Currency(_Strict):
    standard: _Method
    express: _Method
    pickup: _Method


CurrencyKey = Annotated[str, Field(pattern=r"^([A-Z]{3}|\*)$")]  # "*": ANY_CURRENCY


class _Rules(_Strict):
    currencies: dict[CurrencyKey, _Currency]


def parse_shipping_rules(raw: str) -> ShippingRules:
    """OM_BILLING_SHIPPING_RULES as domain rules; ShippingRulesError says what is wrong where."""
    try:
        document = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise ShippingRulesError(f"not JSON: {error}") from None
    if not isinstance(document, dict) or not document:
        raise ShippingRulesError(
            "the rules are a JSON object from currency codes (or '*' for any currency) to the rules"
            " of the methods standard, express and pickup"
        )
    try:
        rules = _Rules(currencies=document)
    except ValidationError as error:
        raise ShippingRulesError("; ".join(_problem(e) for e in error.errors())) from None
    return ShippingRules({code: _methods(currency) for code, currency in rules.currencies.items()})


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"][1:])
    if error["type"] == "string_pattern_mismatch":
        return f"{error['input']!r} is not a currency code (three capital letters) or '{ANY_CURRENCY}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _methods(currency: _Currency) -> dict[ShippingMethod, MethodRule]:
    return {
        "standard": _method(currency.standard),
        "express": _method(currency.express),
        "pickup": _method(currency.pickup),
    }


def _method(method: _Method) -> MethodRule:
    return MethodRule(
        fee=cents(method.fee),
        free_from=_cents_or_none(method.free_from),
        destinations=tuple(
            DestinationRule(
                fee=cents(destination.fee),
                country=destination.country,
                region=destination.region,
                free_from=_cents_or_none(
                    destination.free_from if "free_from" in destination.model_fields_set else method.free_from
                ),
            )
            for destination in method.destinations
        ),
        weight_bands=tuple(
            WeightBand(band.above_kg, cents(band.add or ZERO), cents(band.per_kg or ZERO))
            for band in method.weight
        ),
    )


def _cents_or_none(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else cents(amount)


# What billing charges when OM_BILLING_SHIPPING_RULES is not set: a fee per method in each of
# the default currencies (libs/runtime/currencies.py), each in that currency's own money.
DEFAULT_SHIPPING_RULES = {
    "EUR": {"standard": {"fee": "4.90"}, "express": {"fee": "14.90"}, "pickup": {"fee": "0.00"}},
    "USD": {"standard": {"fee": "5.90"}, "express": {"fee": "15.90"}, "pickup": {"fee": "0.00"}},
    "GBP": {"standard": {"fee": "4.50"}, "express": {"fee": "12.90"}, "pickup": {"fee": "0.00"}},
    "JPY": {"standard": {"fee": "800"}, "express": {"fee": "2000"}, "pickup": {"fee": "0"}},
}


def check_currencies(rules: ShippingRules, currencies: frozenset[str]) -> None:
    """Every currency the business sells in has fees, each a whole number of its smallest
    unit: a JPY order must not pay "4.90" from rules written for euros."""
    for currency in sorted(currencies):
        table_name = currency if currency in rules.by_currency else ANY_CURRENCY
        table = rules.by_currency.get(table_name)
        if table is None:
            raise ShippingRulesError(
                f"{currency} is in OM_CURRENCIES but has no shipping rules (and there are no"
                f" '{ANY_CURRENCY}' rules): add {currency} to OM_BILLING_SHIPPING_RULES"
            )
        for method, rule in table.items():
            for what, amount in _amounts(rule):
                if in_smallest_units(amount, currency):
                    continue
                where = f"{table_name}.{method}.{what}: {amount}"
                unit = f"{currency}'s smallest unit ({smallest_unit(currency):f})"
                if table_name == currency:
                    raise ShippingRulesError(f"{where} is not a whole number of {unit}")
                raise ShippingRulesError(
                    f"{where} applies to {currency} too, but is not a whole number of {unit}:"
                    f" give {currency} rules of its own"
                )


def _amounts(rule: MethodRule) -> list[tuple[str, Decimal]]:
    amounts = [("fee", rule.fee)] + ([("free_from", rule.free_from)] if rule.free_from is not None else [])
    for n, destination in enumerate(rule.destinations):
        amounts.append((f"destinations.{n}.fee", destination.fee))
        if destination.free_from is not None:
            amounts.append((f"destinations.{n}.free_from", destination.free_from))
    for n, band in enumerate(rule.weight_bands):
        amounts += [(f"weight.{n}.add", band.add), (f"weight.{n}.per_kg", band.per_kg)]
    return amounts
