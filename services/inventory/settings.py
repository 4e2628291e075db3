"""Inventory service settings (OM_INVENTORY_* variables)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class InventorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_INVENTORY_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8002
