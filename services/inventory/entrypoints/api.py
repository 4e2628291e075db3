"""Inventory HTTP API: warehouses, receipts, stock levels, reservations."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import Quantity, Sku, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.inventory.adapters import queries, stock_history
from services.inventory.app import handlers
from services.inventory.entrypoints.views import ReceiptResult, ReservationView, StockView, WarehouseView
from services.inventory.entrypoints.warehouse_scope import in_scope, require_warehouse

router = APIRouter(tags=["inventory"])


class WarehouseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: WarehouseCode
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(min_length=1, max_length=40)


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity
    receipt_id: str | None = Field(
        default=None,
        max_length=200,
        description="Your reference: the same receipt again is booked once; other stock under it is refused",
    )


StockReader = Annotated[Principal, requires("stock:read")]


@router.post(
    "/warehouses",
    status_code=201,
    response_model=WarehouseView,
    responses={
        **answers(200, WarehouseView, "Registered before with exactly this: nothing changed"),
        **problems(409, on_409="Registered before with another name or region (the detail names them)"),
    },
)
async def register_warehouse(
    body: WarehouseIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("warehouses:manage")],
) -> dict[str, Any]:
    runtime = runtime_of(request)

    created = await runtime.execute(
        context_for(principal, f"warehouse:{body.code}"),
        lambda uow: handlers.register_warehouse(uow, body.code, body.name, body.region),
    )
    if not created:
        response.status_code = 200
    return body.model_dump()


@router.get("/warehouses", response_model=list[WarehouseView])
async def list_warehouses(request: Request, principal: StockReader) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return in_scope(principal, await queries.list_warehouses(conn), key="code")


@router.post(
    "/stock/receipts",
    status_code=201,
    response_model=ReceiptResult,
    responses={
        **answers(200, ReceiptResult, "This receipt (same id, same stock) was booked before"),
        **problems(409, on_409="Other stock was booked under this receipt id"),
    },
)
async def receive_stock(
    body: ReceiptIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("stock:receive")],
) -> dict[str, Any]:
    require_warehouse(principal, body.warehouse, "receive stock into")
    runtime = runtime_of(request)
    receipt_id = body.receipt_id or str(uuid4())

    booked = await runtime.execute(
        context_for(principal, f"receipt:{receipt_id}"),
        lambda uow: handlers.receive_stock(uow, body.sku, body.warehouse, body.quantity, receipt_id),
    )
    if not booked:
        response.status_code = 200  # this receipt was booked before
    async with runtime.engine.connect() as conn:
        stock = await queries.stock_of(conn, body.sku, principal.warehouses)
    return {"receipt_id": receipt_id, **stock}


@router.get("/stock/{sku}", response_model=StockView, responses=problems(404))
async def stock_of(
    sku: str,
    request: Request,
    principal: StockReader,
    as_of: Annotated[
        AwareDatetime | None,
        Query(
            description="ISO 8601 with a time zone (2026-03-01T12:00:00Z): the levels as they were"
            " then, folded from the SKU's events recorded up to that time"
        ),
    ] = None,
) -> dict[str, Any]:
    """Per warehouse the caller sees (totals over those), and the orders waiting for the SKU;
    with `as_of`, as they were at that time (404 if nothing had happened to the SKU by then)."""
    stock: dict[str, Any] | None
    async with runtime_of(request).engine.connect() as conn:
        if as_of is None:
            stock = await queries.stock_of(conn, sku, principal.warehouses)
        else:
            stock = await stock_history.stock_as_of(conn, sku, as_of, principal.warehouses)
    if stock is None or (not stock["warehouses"] and not stock["backorders"]):
        when = f" by {as_of.isoformat()}" if as_of is not None else ""
        raise NotFound("unknown_sku", f"no stock has ever been received for SKU {sku!r}{when}")
    return stock


@router.get("/reservations/{order_id}", response_model=ReservationView, responses=problems(404))
async def reservation_of(order_id: str, request: Request, principal: StockReader) -> dict[str, Any]:
    """The order's reservation, with its allocations in the warehouses the caller sees."""
    async with runtime_of(request).engine.connect() as conn:
        reservation = await queries.reservation_of(conn, order_id)
    if reservation is None:
        raise NotFound("unknown_reservation", f"no reservation for order {order_id!r}")
    return {**reservation, "allocations": in_scope(principal, reservation["allocations"])}
