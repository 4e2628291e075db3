"""Inventory HTTP API: transfers of stock between warehouses.

POST /transfers is idempotent by `reference`: the same request again answers 200 with the
transfer as it now is; the same reference with other content is refused (409 naming the
difference). Every step answers the transfer as it now is.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import Note, Reference, SkuQuantities, WarehouseCode
from libs.runtime.http import request_context, runtime_of
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import warehouse_ops_queries
from services.inventory.app import warehouse_ops

router = APIRouter(tags=["transfers"])

Actor = Annotated[str | None, Header(max_length=100)]
TransferId = Annotated[str, Path(max_length=64)]


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_warehouse: WarehouseCode
    to_warehouse: WarehouseCode
    lines: SkuQuantities = Field(description="At most one line per SKU")
    reference: Reference = Field(description="Yours: the same transfer again is booked once")


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: SkuQuantities = Field(description="What arrived; the rest stays in transit")
    receipt_id: Reference | None = Field(
        default=None, description="Yours: the same receipt again is booked once"
    )


class WriteOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: SkuQuantities | None = Field(default=None, description="Absent: everything still in transit")
    reason: Annotated[Note, Field(min_length=1)]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Note = ""


@router.post("/transfers", status_code=201)
async def request_transfer(
    body: TransferIn, request: Request, response: Response, x_actor: Actor = None
) -> dict[str, Any]:
    transfer_id, created = await runtime_of(request).execute(
        request_context(x_actor, f"transfer:{body.reference}", "inventory"),
        lambda uow: warehouse_ops.request_transfer(
            uow, body.reference, body.from_warehouse, body.to_warehouse, body.lines
        ),
    )
    if not created:
        response.status_code = 200  # this transfer was requested before
    return await get_transfer(transfer_id, request)


@router.get("/transfers/{transfer_id}")
async def get_transfer(transfer_id: TransferId, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await warehouse_ops_queries.transfer(conn, transfer_id)
    if found is None:
        raise NotFound("unknown_transfer", f"no transfer {transfer_id!r}")
    return found


async def _step(request: Request, transfer_id: str, actor: str | None, step: Any) -> dict[str, Any]:
    await runtime_of(request).execute(request_context(actor, f"transfer:{transfer_id}", "inventory"), step)
    return await get_transfer(transfer_id, request)


@router.post("/transfers/{transfer_id}/dispatch")
async def dispatch(transfer_id: TransferId, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    """The goods leave: checked again against available stock (409 naming each SKU short)."""

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.dispatch_transfer(uow, transfer_id)

    return await _step(request, transfer_id, x_actor, step)


@router.post("/transfers/{transfer_id}/receive")
async def receive(
    transfer_id: TransferId, body: ReceiveIn, request: Request, x_actor: Actor = None
) -> dict[str, Any]:
    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.receive_transfer(uow, transfer_id, body.lines, body.receipt_id)

    return await _step(request, transfer_id, x_actor, step)


@router.post("/transfers/{transfer_id}/write-off")
async def write_off(
    transfer_id: TransferId, body: WriteOffIn, request: Request, x_actor: Actor = None
) -> dict[str, Any]:
    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.write_off_transfer(uow, transfer_id, body.lines, body.reason)

    return await _step(request, transfer_id, x_actor, step)


@router.post("/transfers/{transfer_id}/cancel")
async def cancel(
    transfer_id: TransferId,
    request: Request,
    body: Annotated[CancelIn | None, Body()] = None,
    x_actor: Actor = None,
) -> dict[str, Any]:
    """Only before dispatch (409 after)."""

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.cancel_transfer(uow, transfer_id, body.reason if body else "")

    return await _step(request, transfer_id, x_actor, step)
