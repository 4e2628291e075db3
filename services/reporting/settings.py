"""Reporting service settings (OM_REPORTING_* variables)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_REPORTING_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8005
