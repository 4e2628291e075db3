"""The tax rate table as configured: OM_BILLING_TAX_RATES, a JSON object read once at start
into the domain's TaxRates. Anything wrong in it is an error naming where it is, so a bad
table stops the service instead of charging the wrong tax.

    {
      "*":  {"standard": "0.20"},                      anywhere not listed (optional: without
                                                       it, OM_BILLING_TAX_RATE is its standard rate)
      "DE": {"standard": "0.19", "reduced": "0.07"},   a country, as channels write it (ISO 3166
                                                       alpha-2 is best), matched ignoring case
      "US": {"standard": "0",
             "regions": {"CA": {"standard": "0.0725"}}}  regions of a country, matched against
                                                       the order's customer region
    }

Rates are fractions (0.19 is 19 %), strings or JSON numbers read as decimals, at most six
decimal places. Category names are lower case (standard, reduced, zero, ...); "regions" is
not a category.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import RootModel, ValidationError

from libs.events.billing import TaxRate
from libs.events.values import STANDARD_TAX_CATEGORY, TaxCategory
from services.billing.domain.tax import ANYWHERE, TaxRates, TaxTable

REGIONS = "regions"


class TaxRatesError(ValueError):
    pass


class _Rates(RootModel[dict[TaxCategory, TaxRate]]):
    pass


def parse_tax_rates(raw: str, default_standard_rate: Decimal) -> TaxRates:
    """OM_BILLING_TAX_RATES as domain rates; TaxRatesError says what is wrong where."""
    try:
        document = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as error:
        raise TaxRatesError(f"not JSON: {error}") from None
    if not isinstance(document, dict) or not document:
        raise TaxRatesError(
            "the table is a JSON object from countries (or '*' for anywhere else) to their rates"
            ' by tax category, e.g. {"DE": {"standard": "0.19", "reduced": "0.07"}}'
        )
    tables = {}
    for country, entry in document.items():
        key = country.strip().casefold()
        if key in tables:
            raise TaxRatesError(f"{country}: named twice (countries are matched ignoring case)")
        tables[key] = _table(country, entry, regions_allowed=country != ANYWHERE)
    anywhere = tables.setdefault(ANYWHERE, TaxTable({STANDARD_TAX_CATEGORY: default_standard_rate}))
    if STANDARD_TAX_CATEGORY not in anywhere.rates:
        raise TaxRatesError(
            f"{ANYWHERE}: needs a {STANDARD_TAX_CATEGORY} rate, for categories no table names"
        )
    return TaxRates(tables)


def _table(where: str, entry: Any, *, regions_allowed: bool) -> TaxTable:
    if not isinstance(entry, dict) or not entry:
        raise TaxRatesError(f'{where}: rates by tax category, e.g. {{"standard": "0.19"}}')
    rates = {name: value for name, value in entry.items() if name != REGIONS}
    regions: dict[str, TaxTable] = {}
    if REGIONS in entry:
        if not regions_allowed or not isinstance(entry[REGIONS], dict):
            raise TaxRatesError(f"{where}.{REGIONS}: a country's regions, each with its rates by category")
        for region, region_entry in entry[REGIONS].items():
            if REGIONS in (region_entry if isinstance(region_entry, dict) else {}):
                raise TaxRatesError(f"{where}.{REGIONS}.{region}: a region has no regions")
            place = f"{where}.{REGIONS}.{region}"
            regions[region.strip().casefold()] = _table(place, region_entry, regions_allowed=False)
    try:
        parsed = _Rates.model_validate(rates).root
    except ValidationError as error:
        raise TaxRatesError("; ".join(_problem(where, e) for e in error.errors())) from None
    return TaxTable(parsed, regions)


def _problem(where: str, error: Any) -> str:
    name = ".".join(str(part) for part in error["loc"] if part != "[key]")
    if "[key]" in error["loc"]:
        return f"{where}: {name!r} is not a tax category (lower case letters, digits, _ and -)"
    if error["type"] == "less_than":
        return f"{where}.{name}: {error['input']} is not a fraction below 1 (0.19 is 19 %)"
    return f"{where}.{name}: {error['msg']}"
