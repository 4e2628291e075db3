"""Returns over HTTP: the order desk asks for and decides on returns of delivered goods, the
warehouse receives them (docs/returns.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.order import ReturnCondition, ReturnLine, ReturnResolution
from libs.events.values import MAX_LINES_PER_ORDER, OrderId, Quantity, Sku
from libs.runtime.auth import context_for, requires
from libs.runtime.db import driver_connection
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.order.adapters import returns_queries
from services.order.app.returns import ReturnHandlers, return_id_for
from services.order.domain.returns import Receipt, ReturnStatus

router = APIRouter(tags=["returns"])

ListedStatus = Literal["requested", "approved", "rejected", "received", "completed"]


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: OrderId
    lines: Annotated[list[ReturnLine], Field(min_length=1, max_length=MAX_LINES_PER_ORDER)]
    resolution: ReturnResolution = Field(
        description="refund: credit note and refund; replace: ship them again"
    )


class ReceivedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    quantity: Quantity
    condition: ReturnCondition = Field(description="resellable: back into stock; damaged: booked as a loss")


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: Annotated[list[ReceivedIn], Field(min_length=1, max_length=MAX_LINES_PER_ORDER)]


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ReturnAccepted(BaseModel):
    return_id: str
    status: ReturnStatus


class ReceivedLineView(BaseModel):
    sku: str
    quantity: int
    condition: ReturnCondition
    warehouse: str


class ReturnLineView(BaseModel):
    sku: str
    quantity: int
    reason: str


class ReturnView(BaseModel):
    return_id: str
    order_id: str
    status: ReturnStatus
    resolution: ReturnResolution
    lines: list[ReturnLineView]
    received: list[ReceivedLineView] = Field(description="What came back, once received")
    reason: str | None = Field(description="Why it was rejected")
    credit_note_id: str | None = Field(description="Billing's credit note for the received lines")
    refund_id: str | None
    credit_amount: str | None = Field(description="What the received lines were invoiced at")
    refund_amount: str | None = Field(description="What was paid back (never more than was paid)")
    replacement_status: str | None = Field(description="resolution replace: where the replacement stands")
    attention: str | None = Field(
        default=None,
        description="Inventory or billing did not answer what the receipt asked after the last"
        " attempt (OM_ORDER_RETURN_MAX_ATTEMPTS): what a person must look at",
    )
    requested_by: str
    requested_at: datetime
    updated_at: datetime


def _handlers(request: Request) -> ReturnHandlers:
    handlers: ReturnHandlers = request.app.state.return_handlers
    return handlers


async def _view(request: Request, return_id: str) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await returns_queries.return_detail(await driver_connection(conn), return_id)
    if found is None:
        raise NotFound("unknown_return", f"return {return_id} does not exist")
    return found


@router.post(
    "/returns",
    status_code=201,
    response_model=ReturnAccepted,
    responses={
        **answers(200, ReturnAccepted, "This return (same Idempotency-Key) was asked for before"),
        **problems(404, 409),
    },
)
async def request_return(
    body: ReturnIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("returns:request")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Ask to return delivered goods, within the return window after delivery
    (OM_ORDER_RETURN_WINDOW_DAYS). 409 when the order is not delivered, the window closed, or
    more units are asked for than can still be returned. The same Idempotency-Key again
    answers the same return (200)."""
    return_id = return_id_for(idempotency_key)
    handlers = _handlers(request)
    state, created = await runtime_of(request).execute(
        context_for(principal, body.order_id),
        lambda uow: handlers.request(
            uow,
            return_id,
            body.order_id,
            body.lines,
            body.resolution,
            principal.actor,
            principal.sees_channel,
        ),
    )
    if not created:
        response.status_code = 200  # asked for before under this Idempotency-Key
    response.headers["Location"] = f"/returns/{return_id}"
    return {"return_id": state.return_id, "status": state.status}


@router.post("/returns/{return_id}/approve", response_model=ReturnView, responses=problems(404, 409))
async def approve_return(
    return_id: str, request: Request, principal: Annotated[Principal, requires("returns:decide")]
) -> dict[str, Any]:
    handlers = _handlers(request)
    await runtime_of(request).execute(
        context_for(principal, return_id), lambda uow: handlers.approve(uow, return_id, principal.actor)
    )
    return await _view(request, return_id)


@router.post("/returns/{return_id}/reject", response_model=ReturnView, responses=problems(404, 409))
async def reject_return(
    return_id: str,
    body: RejectIn,
    request: Request,
    principal: Annotated[Principal, requires("returns:decide")],
) -> dict[str, Any]:
    handlers = _handlers(request)
    await runtime_of(request).execute(
        context_for(principal, return_id),
        lambda uow: handlers.reject(uow, return_id, body.reason, principal.actor),
    )
    return await _view(request, return_id)


@router.post("/returns/{return_id}/receive", response_model=ReturnView, responses=problems(404, 409))
async def receive_return(
    return_id: str,
    body: ReceiveIn,
    request: Request,
    principal: Annotated[Principal, requires("returns:receive")],
) -> dict[str, Any]:
    """The goods arrived: resellable units go back into the stock of the warehouse that
    shipped them, damaged ones are booked as a loss; then billing credits and refunds the
    received lines (resolution refund), or they are shipped again (replace)."""
    receipts = [Receipt(line.sku, line.quantity, line.condition) for line in body.lines]
    handlers = _handlers(request)
    await runtime_of(request).execute(
        context_for(principal, return_id),
        lambda uow: handlers.receive(uow, return_id, receipts, principal.actor),
    )
    return await _view(request, return_id)


@router.get("/returns", response_model=list[ReturnView])
async def list_returns(
    request: Request,
    _: Annotated[Principal, requires("returns:read")],
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[ListedStatus | None, Query(description="Only returns in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Returns, newest first: of one order, in one status, or both."""
    async with runtime_of(request).engine.connect() as conn:
        return await returns_queries.list_returns(await driver_connection(conn), order_id, status, limit)


@router.get("/returns/{return_id}", response_model=ReturnView, responses=problems(404))
async def get_return(
    return_id: str, request: Request, _: Annotated[Principal, requires("returns:read")]
) -> dict[str, Any]:
    return await _view(request, return_id)
