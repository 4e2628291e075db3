"""Inventory service settings (OM_INVENTORY_* variables)."""

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.inventory.domain.stock import BackorderMode, BackorderPolicy


class InventorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_INVENTORY_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8002
    # How a SKU's backorder queue shares arriving or available stock (docs/backorders.md):
    # fifo (strict first-in first-out) or fill (fill what fits, starvation-bounded).
    backorder_policy: BackorderMode = "fifo"
    # JSON per-SKU override, e.g. {"CABLE-1M": "fill"}
    backorder_policy_by_sku: dict[str, BackorderMode] = {}
    # Under fill: how often later orders may take a SKU's stock past an order waiting for it
    # before that order waits for nobody else (0: fill behaves as fifo).
    backorder_max_passes: int = Field(default=3, ge=0, le=1_000_000)

    def backorders(self) -> BackorderPolicy:
        return BackorderPolicy(
            mode=self.backorder_policy,
            by_sku=dict(self.backorder_policy_by_sku),
            max_passes=self.backorder_max_passes,
        )


@cache
def backorder_policy() -> BackorderPolicy:
    """Read once per process: reservations and receipts consult it on every call."""
    return InventorySettings().backorders()
