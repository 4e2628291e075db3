"""Billing service settings (OM_BILLING_* variables)."""

from decimal import Decimal

from pydantic_settings import BaseSettings, SettingsConfigDict


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_BILLING_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8004
    tax_rate: Decimal = Decimal("0.20")
    default_credit_limit: Decimal = Decimal("10000.00")
    shipping_fee_standard: Decimal = Decimal("4.90")
    shipping_fee_express: Decimal = Decimal("14.90")
    shipping_fee_pickup: Decimal = Decimal("0.00")
