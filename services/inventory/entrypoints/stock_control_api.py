"""Inventory HTTP API: stock adjustments, reorder points and open low-stock alerts.

Served before the stock routes of `api`, so /stock/alerts is not taken for a SKU.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.events.inventory import StockLevel
from libs.events.values import MAX_QUANTITY, Note, Sku, WarehouseCode
from libs.runtime.http import request_context, runtime_of
from services.inventory.adapters import queries, warehouse_ops_queries
from services.inventory.app import warehouse_ops

router = APIRouter(tags=["stock control"])

Actor = Annotated[str | None, Header(max_length=100)]
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


@router.post("/stock/adjustments", status_code=201)
async def adjust_stock(body: AdjustmentIn, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    """Book one adjustment. On hand may fall below what is reserved: the newest reservations
    that no longer fit are revoked and their orders reserved again (ReservationRevoked)."""
    runtime = runtime_of(request)
    await runtime.execute(
        request_context(x_actor, f"adjustment:{body.sku}", "inventory"),
        lambda uow: warehouse_ops.adjust_stock(
            uow, body.warehouse, body.sku, body.delta, body.reason, body.note
        ),
    )
    async with runtime.engine.connect() as conn:
        return await queries.stock_of(conn, body.sku)


@router.put("/stock/{sku}/reorder-points/{warehouse}")
async def set_reorder_point(
    sku: SkuPath,
    warehouse: WarehousePath,
    body: ReorderPointIn,
    request: Request,
    x_actor: Actor = None,
) -> dict[str, Any]:
    """When available stock falls to or below `min`, LowStockDetected is published once, with
    the quantity to order (max - available)."""
    await runtime_of(request).execute(
        request_context(x_actor, f"reorder-point:{sku}:{warehouse}", "inventory"),
        lambda uow: warehouse_ops.set_reorder_point(uow, sku, warehouse, body.min, body.max),
    )
    return {"sku": sku, "warehouse": warehouse, "min": body.min, "max": body.max}


@router.get("/stock/alerts")
async def low_stock_alerts(request: Request) -> list[dict[str, Any]]:
    """Open low-stock alerts; each closes by itself when available stock rises above `min`."""
    async with runtime_of(request).engine.connect() as conn:
        return await warehouse_ops_queries.open_low_stock_alerts(conn)
