"""Reporting service settings (OM_REPORTING_* variables)."""

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_REPORTING_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8005
    # The consumer of the public topics lets the broker hold each fetch this long for more
    # events (reports may be a second or two behind): fewer, larger batches, each sharing its
    # transaction and one statement per table among more events (docs/performance.md). 0:
    # each batch as soon as any event arrives, as the order path's consumers do.
    linger_ms: int = 1000
    # Events per batch (one transaction) at most: a second of `make bench` fits in one.
    batch_size: int = 5000
    # The read-only PostgreSQL login for analysts' BI tools (python -m
    # services.reporting.analyst_role); empty role: "<OM_DB_PREFIX>_analyst".
    analyst_role: str = ""
    analyst_password: SecretStr = SecretStr("")
    # Who creates that login (a role that may create roles); empty: the OM_PG_* credentials.
    admin_host: str = ""
    admin_user: str = ""
    admin_password: SecretStr = SecretStr("")
