"""Tax: which rate applies to a line, by destination country and region and the product's tax
category, and how a line's amount splits into net and tax. Pure: the rate table is read from
configuration at the edge (services/billing/tax_config.py) and passed in.

How a rate is found for (country, region, category), most specific first:
1. the table of the region within the country's table, if the order names a region it lists;
2. the country's table;
3. the table for anywhere else ("*").
The first of these that names the category gives its rate. A category none of them names is
taxed at the "standard" rate of the most specific table that has one (the "*" table always
does), and the invoice says so: an unknown category is a gap in the table, not a reason to
stop invoicing.

Shipping is taxed at the destination's standard rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from libs.events.values import STANDARD_TAX_CATEGORY
from services.billing.domain.money import rounded

ANYWHERE = "*"


@dataclass(frozen=True)
class TaxTable:
    """Rates by tax category for one place; a country's table may have regions of its own."""

    rates: Mapping[str, Decimal]
    regions: Mapping[str, TaxTable] = field(default_factory=dict)  # keys casefolded


@dataclass(frozen=True)
class TaxRates:
    """Rate tables by country (keys casefolded) and ANYWHERE, which has a standard rate."""

    by_country: Mapping[str, TaxTable]

    @classmethod
    def flat(cls, standard: Decimal) -> TaxRates:
        """One standard rate everywhere, for every category: what billing charged before."""
        return cls({ANYWHERE: TaxTable({STANDARD_TAX_CATEGORY: standard})})

    def rate(self, country: str | None, region: str | None, category: str) -> AppliedRate:
        places = self._places(country, region)
        for where, table in places:
            if category in table.rates:
                return AppliedRate(table.rates[category], category, where)
        for where, table in places:
            if STANDARD_TAX_CATEGORY in table.rates:
                fallback = f"{where}; category {category} not in the table"
                return AppliedRate(table.rates[STANDARD_TAX_CATEGORY], STANDARD_TAX_CATEGORY, fallback)
        raise ValueError(
            f"the '{ANYWHERE}' tax table has no {STANDARD_TAX_CATEGORY} rate"
        )  # config checks it

    def _places(self, country: str | None, region: str | None) -> list[tuple[str, TaxTable]]:
        places: list[tuple[str, TaxTable]] = []
        table = self.by_country.get(_key(country)) if country else None
        if table is not None and country:
            regional = table.regions.get(_key(region)) if region else None
            if regional is not None and region:
                places.append((f"{country.strip()}/{region.strip()}", regional))
            places.append((country.strip(), table))
        places.append(("anywhere", self.by_country[ANYWHERE]))
        return places


def _key(name: str | None) -> str:
    return (name or "").strip().casefold()


@dataclass(frozen=True)
class AppliedRate:
    rate: Decimal
    category: str  # the category whose rate applied (standard when the line's was unknown)
    where: str  # the table it came from, for people: "DE", "US/CA", "anywhere"

    def __str__(self) -> str:
        return f"{self.category} {_percent(self.rate)} ({self.where})"


@dataclass(frozen=True)
class Taxed:
    """An amount split into net and tax; net + tax = gross, each in the currency's units."""

    net: Decimal
    tax: Decimal
    gross: Decimal


def split(amount: Decimal, rate: Decimal, currency: str, *, includes_tax: bool) -> Taxed:
    """Tax on `amount`, rounded to the currency's smallest unit. When `amount` includes tax
    (a tax-inclusive price) the tax is taken out of it, so the customer pays what the channel
    showed; otherwise it is added on top."""
    amount = rounded(amount, currency)
    if includes_tax:
        tax = rounded(amount * rate / (1 + rate), currency)
        return Taxed(amount - tax, tax, amount)
    tax = rounded(amount * rate, currency)
    return Taxed(amount, tax, amount + tax)


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"
