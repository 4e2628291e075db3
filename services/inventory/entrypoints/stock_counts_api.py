"""Inventory HTTP API: stock counts (cycle counts) of one warehouse.

A count snapshots what the books expect, takes counted quantities (the last count of a SKU
wins) and, when posted, books each variance as an adjustment with reason `count`. Stock that
moves while the count is open is no variance: variance = counted - (expected + movements).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.inventory import MAX_LINES_PER_COUNT, StockLevel
from libs.events.values import Sku, WarehouseCode
from libs.runtime.http import request_context, runtime_of
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import warehouse_ops_queries
from services.inventory.app import warehouse_ops

router = APIRouter(tags=["stock counts"])

Actor = Annotated[str | None, Header(max_length=100)]
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


@router.post("/stock-counts", status_code=201)
async def start_count(body: CountIn, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    count_id = str(uuid4())

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.start_count(uow, count_id, body.warehouse, body.skus)

    return await _run(request, count_id, x_actor, step)


@router.get("/stock-counts/{count_id}")
async def get_count(count_id: CountId, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await warehouse_ops_queries.stock_count(conn, count_id)
    if found is None:
        raise NotFound("unknown_stock_count", f"no stock count {count_id!r}")
    return found


async def _run(request: Request, count_id: str, actor: str | None, step: Any) -> dict[str, Any]:
    await runtime_of(request).execute(request_context(actor, f"stock-count:{count_id}", "inventory"), step)
    return await get_count(count_id, request)


@router.post("/stock-counts/{count_id}/lines")
async def count_line(
    count_id: CountId, body: CountLineIn, request: Request, x_actor: Actor = None
) -> dict[str, Any]:
    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.count_sku(uow, count_id, body.sku, body.counted)

    return await _run(request, count_id, x_actor, step)


@router.post("/stock-counts/{count_id}/post")
async def post_count(count_id: CountId, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    """Books every variance as an adjustment (reason `count`), approved by the poster."""

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.post_count(uow, count_id)

    return await _run(request, count_id, x_actor, step)
