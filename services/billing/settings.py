"""Billing service settings (OM_BILLING_* variables)."""

from decimal import Decimal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.billing.domain.policy import BillingPolicy
from services.billing.domain.shipping import ShippingRules
from services.billing.shipping_config import parse_shipping_rules

FLAT_FEES = ("shipping_fee_standard", "shipping_fee_express", "shipping_fee_pickup")


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_BILLING_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8004
    tax_rate: Decimal = Decimal("0.20")
    # The credit of a customer finance has not granted a limit to: none, so on-account terms
    # need a limit set through PUT /customers/{id}/credit-limit first.
    default_credit_limit: Decimal = Decimal("0")
    # The flat fee per method in every currency, unless shipping_rules is set.
    shipping_fee_standard: Decimal = Decimal("4.90")
    shipping_fee_express: Decimal = Decimal("14.90")
    shipping_fee_pickup: Decimal = Decimal("0.00")
    # JSON shipping fee rules (format: services/billing/shipping_config.py); empty: flat fees.
    shipping_rules: str = ""

    @model_validator(mode="after")
    def _shipping_rules_are_valid(self) -> "BillingSettings":
        """Read the rules now, so a bad rule set stops the service before it charges anyone."""
        self.shipping()
        return self

    def shipping(self) -> ShippingRules:
        if not self.shipping_rules.strip():
            return ShippingRules.flat(
                {
                    "standard": self.shipping_fee_standard,
                    "express": self.shipping_fee_express,
                    "pickup": self.shipping_fee_pickup,
                }
            )
        flat = sorted(name for name in FLAT_FEES if name in self.model_fields_set)
        if flat:
            names = ", ".join(f"OM_BILLING_{name.upper()}" for name in flat)
            raise ValueError(
                f"OM_BILLING_SHIPPING_RULES replaces the flat fees, but {names} is set too:"
                " put that fee in the rules and unset it"
            )
        try:
            return parse_shipping_rules(self.shipping_rules)
        except ValueError as error:
            raise ValueError(f"OM_BILLING_SHIPPING_RULES is invalid: {error}") from None

    def policy(self) -> BillingPolicy:
        return BillingPolicy(
            tax_rate=self.tax_rate,
            shipping=self.shipping(),
            default_credit_limit=self.default_credit_limit,
        )
