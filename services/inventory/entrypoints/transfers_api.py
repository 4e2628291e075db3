"""Inventory HTTP API: transfers of stock between warehouses.

POST /transfers is idempotent by `reference`: the same request again answers 200 with the
transfer as it now is; the same reference with other content is refused (409 naming the
difference). Every step answers the transfer as it now is.

Staff scoped to some warehouses: the source warehouse is the one that requests, dispatches,
cancels and writes off a transfer (the goods are its stock until they arrive, and a loss on
the way is booked against it); the destination is the one that receives. A step at a
warehouse outside the caller's scope is refused with 403 naming it. A transfer is read by
staff of either end; to anyone else it answers 404 as if unknown.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import Note, Reference, SkuQuantities, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.runtime.uow import UnitOfWork
from libs.security.principal import Principal
from services.inventory.adapters import warehouse_ops_queries
from services.inventory.app import warehouse_ops
from services.inventory.entrypoints.views import TransferView
from services.inventory.entrypoints.warehouse_scope import require_warehouse

router = APIRouter(tags=["transfers"])

Manager = Annotated[Principal, requires("transfers:manage")]
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


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferView,
    responses={
        **answers(200, TransferView, "This transfer (same reference, same content) was requested before"),
        **problems(
            409,
            on_409="Another transfer was requested under this reference (the detail names the"
            " difference), or the stock is short",
        ),
    },
)
async def request_transfer(
    body: TransferIn, request: Request, response: Response, principal: Manager
) -> dict[str, Any]:
    require_warehouse(principal, body.from_warehouse, "transfer stock out of")
    transfer_id, created = await runtime_of(request).execute(
        context_for(principal, f"transfer:{body.reference}"),
        lambda uow: warehouse_ops.request_transfer(
            uow, body.reference, body.from_warehouse, body.to_warehouse, body.lines
        ),
    )
    if not created:
        response.status_code = 200  # this transfer was requested before
    return await _transfer_seen_by(principal, transfer_id, request)


@router.get("/transfers/{transfer_id}", response_model=TransferView, responses=problems(404))
async def get_transfer(
    transfer_id: TransferId, request: Request, principal: Annotated[Principal, requires("transfers:read")]
) -> dict[str, Any]:
    return await _transfer_seen_by(principal, transfer_id, request)


async def _transfer_seen_by(principal: Principal, transfer_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await warehouse_ops_queries.transfer(conn, transfer_id)
    if found is None or not (
        principal.sees_warehouse(found["from_warehouse"]) or principal.sees_warehouse(found["to_warehouse"])
    ):
        raise NotFound("unknown_transfer", f"no transfer {transfer_id!r}")
    return found


async def _step(
    request: Request, transfer_id: str, principal: Principal, end: Literal["from", "to"], step: Any
) -> dict[str, Any]:
    """Runs `step` if the caller may act at the transfer's `end` (source or destination); an
    unknown transfer is left to the step, which answers 404."""
    if principal.warehouses is not None:
        async with runtime_of(request).engine.connect() as conn:
            found = await warehouse_ops_queries.transfer(conn, transfer_id)
        if found is not None:
            action = "transfer stock out of" if end == "from" else "receive transfers into"
            require_warehouse(principal, found[f"{end}_warehouse"], action)
    await runtime_of(request).execute(context_for(principal, f"transfer:{transfer_id}"), step)
    return await _transfer_seen_by(principal, transfer_id, request)


@router.post("/transfers/{transfer_id}/dispatch", response_model=TransferView, responses=problems(404, 409))
async def dispatch(transfer_id: TransferId, request: Request, principal: Manager) -> dict[str, Any]:
    """The goods leave: checked again against available stock (409 naming each SKU short)."""

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.dispatch_transfer(uow, transfer_id)

    return await _step(request, transfer_id, principal, "from", step)


@router.post("/transfers/{transfer_id}/receive", response_model=TransferView, responses=problems(404, 409))
async def receive(
    transfer_id: TransferId, body: ReceiveIn, request: Request, principal: Manager
) -> dict[str, Any]:
    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.receive_transfer(uow, transfer_id, body.lines, body.receipt_id)

    return await _step(request, transfer_id, principal, "to", step)


@router.post("/transfers/{transfer_id}/write-off", response_model=TransferView, responses=problems(404, 409))
async def write_off(
    transfer_id: TransferId, body: WriteOffIn, request: Request, principal: Manager
) -> dict[str, Any]:
    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.write_off_transfer(uow, transfer_id, body.lines, body.reason)

    return await _step(request, transfer_id, principal, "from", step)


@router.post("/transfers/{transfer_id}/cancel", response_model=TransferView, responses=problems(404, 409))
async def cancel(
    transfer_id: TransferId,
    request: Request,
    principal: Manager,
    body: Annotated[CancelIn | None, Body()] = None,
) -> dict[str, Any]:
    """Only before dispatch (409 after)."""

    async def step(uow: UnitOfWork) -> None:
        await warehouse_ops.cancel_transfer(uow, transfer_id, body.reason if body else "")

    return await _step(request, transfer_id, principal, "from", step)
