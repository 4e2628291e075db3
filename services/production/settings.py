"""Production service settings (OM_PRODUCTION_* variables)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProductionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_PRODUCTION_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8003
    # When make-to-order and make-to-stock production orders are due: this long after the
    # demand appeared (a component's order: when the order it is for is due).
    lead_time_days: float = Field(default=7, gt=0)
    # A sales order cancelled while its production order is in progress: false (default) lets
    # it go on into stock (it is already being made); true cancels it too.
    cancel_in_progress: bool = False
    # Where make-to-order goods go when no warehouse of the order's region is known.
    default_warehouse: str | None = None
    # How often the schedule is checked for operations that fell behind their plan.
    reschedule_seconds: float = Field(default=30, gt=0)
