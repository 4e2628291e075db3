"""Billing service settings (OM_BILLING_* variables, and the shared OM_CURRENCIES)."""

import json
from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.events.billing import TaxRate
from libs.runtime.currencies import CurrencySettings
from libs.runtime.setting_types import NameSet
from services.billing.domain.money import in_smallest_units
from services.billing.domain.policy import BillingPolicy
from services.billing.domain.shipping import ShippingRules
from services.billing.domain.tax import TaxRates
from services.billing.shipping_config import DEFAULT_SHIPPING_RULES, check_currencies, parse_shipping_rules
from services.billing.tax_config import parse_tax_rates

# Flat fees in "any currency" (a USD order paid 4.90 of something): gone, named so that a
# deployment still setting one hears how to say it per currency instead.
RETIRED_FLAT_FEES = ("shipping_fee_standard", "shipping_fee_express", "shipping_fee_pickup")


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_BILLING_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8004
    # The standard rate anywhere the tax rate table does not list, unless the table has a "*"
    # entry of its own; with no table, the one rate of every invoice.
    tax_rate: TaxRate = Decimal("0.20")
    # JSON tax rate table by country, region and tax category (services/billing/tax_config.py).
    tax_rates: str = ""
    # Channels whose prices include tax (what a consumer shop shows): a JSON or comma list.
    prices_include_tax_channels: NameSet = frozenset()
    # The credit of a customer finance has not granted a limit to: none, so on-account terms
    # need a limit set through PUT /customers/{id}/credit-limit first. Per currency (JSON, e.g.
    # {"EUR": "2000.00", "JPY": "300000"}); currencies not named there get default_credit_limit.
    default_credit_limit: Decimal = Field(default=Decimal("0"), ge=0)
    default_credit_limit_by_currency: dict[str, Decimal] = {}
    # JSON shipping fee rules (format: services/billing/shipping_config.py); empty: the
    # built-in fees per currency (DEFAULT_SHIPPING_RULES).
    shipping_rules: str = ""
    shipping_fee_standard: str | None = None
    shipping_fee_express: str | None = None
    shipping_fee_pickup: str | None = None

    @model_validator(mode="after")
    def _policy_is_valid(self) -> "BillingSettings":
        """Build the policy now, so a bad setting stops the service before it charges anyone."""
        retired = [name for name in RETIRED_FLAT_FEES if getattr(self, name) is not None]
        if retired:
            names = ", ".join(f"OM_BILLING_{name.upper()}" for name in retired)
            raise ValueError(
                f"{names}: a flat fee in any currency is no longer read; fees are per currency in"
                ' OM_BILLING_SHIPPING_RULES, e.g. {"EUR": {"standard": {"fee": "4.90"},'
                ' "express": {"fee": "14.90"}, "pickup": {"fee": "0.00"}}}'
            )
        for currency, limit in self.default_credit_limit_by_currency.items():
            if limit < 0 or not in_smallest_units(limit, currency):
                raise ValueError(
                    f"OM_BILLING_DEFAULT_CREDIT_LIMIT_BY_CURRENCY.{currency}: {limit} is not zero or more"
                    f" in whole units of {currency}"
                )
        self.policy()
        return self

    def shipping(self) -> ShippingRules:
        raw = self.shipping_rules if self.shipping_rules.strip() else json.dumps(DEFAULT_SHIPPING_RULES)
        try:
            rules = parse_shipping_rules(raw)
            check_currencies(rules, CurrencySettings().currencies)
        except ValueError as error:
            raise ValueError(f"OM_BILLING_SHIPPING_RULES is invalid: {error}") from None
        return rules

    def tax(self) -> TaxRates:
        if not self.tax_rates.strip():
            return TaxRates.flat(self.tax_rate)
        try:
            return parse_tax_rates(self.tax_rates, self.tax_rate)
        except ValueError as error:
            raise ValueError(f"OM_BILLING_TAX_RATES is invalid: {error}") from None

    def policy(self) -> BillingPolicy:
        return BillingPolicy(
            tax=self.tax(),
            shipping=self.shipping(),
            default_credit_limit=self.default_credit_limit,
            default_credit_limit_by_currency=dict(self.default_credit_limit_by_currency),
            prices_include_tax_channels=self.prices_include_tax_channels,
        )
