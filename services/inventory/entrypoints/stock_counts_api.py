"""Inventory HTTP API: stock counts (cycle counts) of one warehouse.

A count snapshots what the books expect, takes counted quantities (the last count of a SKU
wins) and, when posted, books each variance as an adjustment with reason `count`. Stock that
moves while the count is open is no variance: variance = counted - (expected + movements).

Staff scoped to some warehouses count only those (403 naming the warehouse otherwise) and
read only their counts (another warehouse's answers 404 as if unknown).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.inventory import MAX_LINES_PER_COUNT, StockLevel
from libs.events.values import Sku, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.runtime.uow import UnitOfWork
from libs.security.principal import Principal
from services.inventory.adapters import warehouse_ops_queries
from services.inventory.app import warehouse_ops
from services.inventory.entrypoints.views import StockCountView
from services.inventory.entrypoints.warehouse_scope import require_warehouse

router = APIRouter(tags=["stock counts"])

Counter = Annotated[Principal, requires("stock:count")]
CountId = Annotated[str, Path(max_length=64)]


class CountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warehouse: WarehouseCode
    skus: list[Sku] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LINES_PER_COUNT,
        description="Absent: every SKU of the warehouse (and any found there while counting)",
    )


class CountLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    counted: StockLevel


@router.post("/stock-counts", status_code=201, response_model=StockCountView, responses=problems(409))
async def start_count(body: CountIn, request: Request, principal: Counter) -> dict[str, Any]:
    require_warehouse(principal, body.warehouse, "count stock at")
    count_id = str(uuid4())

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.start_count(uow, count_id, body.warehouse, body.skus)

    return await _run(request, count_id, principal, step)


@router.get("/stock-counts/{count_id}", response_model=StockCountView, responses=problems(404))
async def get_count(
    count_id: CountId, request: Request, principal: Annotated[Principal, requires("stock:read")]
) -> dict[str, Any]:
    return await _count_seen_by(principal, count_id, request)


async def _count_seen_by(principal: Principal, count_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await warehouse_ops_queries.stock_count(conn, count_id)
    if found is None or not principal.sees_warehouse(found["warehouse"]):
        raise NotFound("unknown_stock_count", f"no stock count {count_id!r}")
    return found


async def _require_count_in_scope(principal: Principal, count_id: str, request: Request) -> None:
    """403 when the count is another warehouse's; an unknown one is left to the step (404)."""
    if principal.warehouses is None:
        return
    async with runtime_of(request).engine.connect() as conn:
        found = await warehouse_ops_queries.stock_count(conn, count_id)
    if found is not None:
        require_warehouse(principal, found["warehouse"], "count stock at")


async def _run(request: Request, count_id: str, principal: Principal, step: Any) -> dict[str, Any]:
    await runtime_of(request).execute(context_for(principal, f"stock-count:{count_id}"), step)
    return await _count_seen_by(principal, count_id, request)


@router.post("/stock-counts/{count_id}/lines", response_model=StockCountView, responses=problems(404, 409))
async def count_line(
    count_id: CountId, body: CountLineIn, request: Request, principal: Counter
) -> dict[str, Any]:
    await _require_count_in_scope(principal, count_id, request)

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.count_sku(uow, count_id, body.sku, body.counted)

    return await _run(request, count_id, principal, step)


@router.post("/stock-counts/{count_id}/post", response_model=StockCountView, responses=problems(404, 409))
async def post_count(count_id: CountId, request: Request, principal: Counter) -> dict[str, Any]:
    """Books every variance as an adjustment (reason `count`), approved by the poster."""
    await _require_count_in_scope(principal, count_id, request)

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.post_count(uow, count_id)

    return await _run(request, count_id, principal, step)
