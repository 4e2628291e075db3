"""Inventory HTTP API: stock adjustments, reorder points and open low-stock alerts.

Served before the stock routes of `api`, so /stock/alerts is not taken for a SKU.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.events.inventory import StockLevel
from libs.events.values import MAX_QUANTITY, Note, Sku, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.security.principal import Principal
from services.inventory.adapters import queries, warehouse_ops_queries
from services.inventory.app import warehouse_ops
from services.inventory.entrypoints.views import LowStockAlert, ReorderPointView, StockView
from services.inventory.entrypoints.warehouse_scope import in_scope, require_warehouse

router = APIRouter(tags=["stock control"])

Adjuster = Annotated[Principal, requires("stock:adjust")]
SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[!-~]+$")]
WarehousePath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warehouse: WarehouseCode
    sku: Sku
    delta: int = Field(
        ge=-MAX_QUANTITY,
        le=MAX_QUANTITY,
        description="Units found (+) or gone (-); damage and loss are negative, found positive",
    )
    reason: Literal["damage", "loss", "found", "correction"]
    note: Note = ""


class ReorderPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: StockLevel
    max: StockLevel

    @model_validator(mode="after")
    def _max_not_below_min(self) -> ReorderPointIn:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must not be below min ({self.min})")
        return self


@router.post("/stock/adjustments", status_code=201, response_model=StockView, responses=problems(409))
async def adjust_stock(body: AdjustmentIn, request: Request, principal: Adjuster) -> dict[str, Any]:
    """Book one adjustment. On hand may fall below what is reserved: the newest reservations
    that no longer fit are revoked and their orders reserved again (ReservationRevoked)."""
    require_warehouse(principal, body.warehouse, "adjust stock at")
    runtime = runtime_of(request)
    await runtime.execute(
        context_for(principal, f"adjustment:{body.sku}"),
        lambda uow: warehouse_ops.adjust_stock(
            uow, body.warehouse, body.sku, body.delta, body.reason, body.note
        ),
    )
    async with runtime.engine.connect() as conn:
        return await queries.stock_of(conn, body.sku, principal.warehouses)


@router.put(
    "/stock/{sku}/reorder-points/{warehouse}", response_model=ReorderPointView, responses=problems(409)
)
async def set_reorder_point(
    sku: SkuPath,
    warehouse: WarehousePath,
    body: ReorderPointIn,
    request: Request,
    principal: Adjuster,
) -> dict[str, Any]:
    """When available stock falls to or below `min`, LowStockDetected is published once, with
    the quantity to order (max - available)."""
    require_warehouse(principal, warehouse, "set reorder points at")
    await runtime_of(request).execute(
        context_for(principal, f"reorder-point:{sku}:{warehouse}"),
        lambda uow: warehouse_ops.set_reorder_point(uow, sku, warehouse, body.min, body.max),
    )
    return {"sku": sku, "warehouse": warehouse, "min": body.min, "max": body.max}


@router.get("/stock/alerts", response_model=list[LowStockAlert])
async def low_stock_alerts(
    request: Request, principal: Annotated[Principal, requires("stock:read")]
) -> list[dict[str, Any]]:
    """Open low-stock alerts of the warehouses the caller sees; each closes by itself when
    available stock rises above `min`."""
    async with runtime_of(request).engine.connect() as conn:
        return in_scope(principal, await warehouse_ops_queries.open_low_stock_alerts(conn))
