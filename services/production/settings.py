"""Production service settings (OM_PRODUCTION_* variables)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ProductionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_PRODUCTION_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8003
