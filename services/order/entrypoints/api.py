"""Order HTTP API: submission, queries, the order desk's decisions, customers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.order import SubmitOrder
from libs.runtime.http import runtime_of
from libs.runtime.uow import MessageContext
from services.order.adapters import queries
from services.order.app.handlers import OrderHandlers
from services.order.domain.saga import COMPENSATIONS, FULFILMENT_SAGA

router = APIRouter()


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    region: str | None = Field(default=None, max_length=40)
    blocked: bool = False


def _handlers(request: Request) -> OrderHandlers:
    handlers: OrderHandlers = request.app.state.handlers
    return handlers


def _actor(x_actor: str | None, fallback: str) -> str:
    return f"user:{x_actor}" if x_actor else fallback


@router.post("/orders", status_code=202, tags=["orders"])
async def submit_order(
    submission: SubmitOrder,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Submit an order. The same Idempotency-Key (or channel + external_id) with the same body
    returns the same order; with a different body it is refused with 409."""
    if idempotency_key:
        submission = submission.model_copy(update={"idempotency_key": idempotency_key})
    runtime, handlers = runtime_of(request), _handlers(request)
    correlation = idempotency_key or submission.external_id or "order-submission"

    context = MessageContext(correlation_id=correlation, actor=f"channel:{submission.channel}")
    placement = await runtime.execute(context, lambda uow: handlers.place(uow, submission))
    if not placement.created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/orders/{placement.order_id}"
    return {"order_id": placement.order_id, "status": placement.status}


@router.get("/orders/{order_id}", tags=["orders"])
async def get_order(order_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        detail = await queries.order_detail(conn, order_id)
    if detail is None:
        raise NotFound("unknown_order", f"order {order_id} does not exist")
    return detail


@router.get("/orders", tags=["orders"])
async def list_orders(
    request: Request,
    status: str | None = None,
    customer_id: str | None = None,
    channel: str | None = None,
    placed_after: datetime | None = None,
    placed_before: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.list_orders(
            conn,
            status=status,
            customer_id=customer_id,
            channel=channel,
            placed_after=placed_after,
            placed_before=placed_before,
            cursor=cursor,
            limit=limit,
        )


async def _decide(request: Request, order_id: str, actor: str, decide: Any) -> dict[str, Any]:
    context = MessageContext(correlation_id=order_id, actor=actor)
    order = await runtime_of(request).execute(context, decide)
    return {"order_id": order_id, "status": order.status}


@router.post("/orders/{order_id}/approve", tags=["order desk"])
async def approve_order(
    order_id: str, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    actor = _actor(x_actor, "user:order-desk")
    return await _decide(
        request, order_id, actor, lambda uow: _handlers(request).approve(uow, order_id, actor)
    )


@router.post("/orders/{order_id}/reject", tags=["order desk"])
async def reject_order(
    order_id: str, body: Reason, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    actor = _actor(x_actor, "user:order-desk")
    return await _decide(
        request, order_id, actor, lambda uow: _handlers(request).reject(uow, order_id, body.reason, actor)
    )


@router.post("/orders/{order_id}/cancel", tags=["order desk"])
async def cancel_order(
    order_id: str, body: Reason, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    actor = _actor(x_actor, "user:order-desk")
    return await _decide(
        request, order_id, actor, lambda uow: _handlers(request).cancel(uow, order_id, body.reason, actor)
    )


@router.post("/customers", status_code=201, tags=["customers"])
async def register_customer(
    body: CustomerIn, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    context = MessageContext(
        correlation_id=f"customer:{body.customer_id}", actor=_actor(x_actor, "api:order")
    )
    await runtime_of(request).execute(
        context,
        lambda uow: _handlers(request).register_customer(
            uow, body.customer_id, body.name, body.email, body.phone, body.region, body.blocked
        ),
    )
    return body.model_dump()


async def _set_blocked(
    request: Request, customer_id: str, blocked: bool, reason: str, actor: str
) -> dict[str, Any]:
    context = MessageContext(correlation_id=f"customer:{customer_id}", actor=actor)
    await runtime_of(request).execute(
        context, lambda uow: _handlers(request).set_blocked(uow, customer_id, blocked, reason)
    )
    return {"customer_id": customer_id, "blocked": blocked}


@router.post("/customers/{customer_id}/block", tags=["customers"])
async def block_customer(
    customer_id: str, body: Reason, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    return await _set_blocked(request, customer_id, True, body.reason, _actor(x_actor, "user:order-desk"))


@router.post("/customers/{customer_id}/unblock", tags=["customers"])
async def unblock_customer(
    customer_id: str, request: Request, x_actor: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    return await _set_blocked(request, customer_id, False, "", _actor(x_actor, "user:order-desk"))


@router.get("/saga", tags=["docs"])
async def saga_definition() -> dict[str, Any]:
    """The fulfilment saga as a table of steps and compensations."""
    return {
        "steps": [
            {
                "step": s.name,
                "participant": s.participant,
                "request": s.request,
                "succeeds_on": s.succeeds_on,
                "fails_on": s.fails_on,
                "compensation": s.compensation,
            }
            for s in FULFILMENT_SAGA
        ],
        "compensations": {
            name: {
                "participant": c.participant,
                "command": c.command.message_type,
                "completed_by": c.completed_by.message_type,
            }
            for name, c in COMPENSATIONS.items()
        },
    }
