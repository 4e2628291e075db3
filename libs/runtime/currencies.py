"""The currencies the business sells in (OM_CURRENCIES), one setting read by every service
that must agree on them: the order service holds an order in any other currency for a person,
and billing refuses to start without shipping fees for each of them. Neither asks the other."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.events.values import minor_units
from libs.runtime.setting_types import NameSet

# What the built-in shipping fees (services/billing/shipping_config.py) price.
DEFAULT_CURRENCIES = frozenset({"EUR", "USD", "GBP", "JPY"})


class CurrencySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_", extra="ignore")

    # A comma list (EUR,USD) or a JSON list of ISO 4217 codes.
    currencies: NameSet = DEFAULT_CURRENCIES

    @field_validator("currencies")
    @classmethod
    def _iso_4217(cls, codes: frozenset[str]) -> frozenset[str]:
        if not codes:
            raise ValueError("OM_CURRENCIES names no currency: nothing could be sold")
        unknown = sorted(code for code in codes if minor_units(code) is None)
        if unknown:
            raise ValueError(
                f"OM_CURRENCIES: {', '.join(unknown)} is not an ISO 4217 currency with a minor unit"
            )
        return codes
