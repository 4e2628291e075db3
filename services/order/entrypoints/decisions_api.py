"""POST /orders/decisions: the order desk decides on many held orders at once.

Each order is decided in its own unit of work, as POST /orders/{id}/approve or /reject would
decide it, and answered on its own: one that cannot be decided (unknown, no longer on hold,
held over a credit limit the caller may not grant) never stops the others.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.domain import DomainError
from libs.runtime.auth import Forbidden, context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.uow import UnitOfWork
from libs.security.principal import Principal
from services.order.app.handlers import OrderHandlers
from services.order.domain.order import Order
from services.order.entrypoints.views import View

router = APIRouter(tags=["order desk"])
MAX_ORDERS = 200


class Decisions(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"order_ids": ["o-1", "o-2"], "decision": "approve", "reason": "checked by phone"}]
        },
    )
    order_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_ORDERS, description="Each decided once, in this order"
    )
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=500, description="Why, for each order's timeline")

    @model_validator(mode="after")
    def _each_order_once(self) -> Decisions:
        if len(set(self.order_ids)) != len(self.order_ids):
            raise ValueError("order_ids: an order appears more than once")
        return self


class DecisionResult(View):
    order_id: str
    status_code: int = Field(
        description="As the order's own endpoint would answer: 200 decided, 202 decided and giving"
        " back what it held, 403 needs another permission, 404 unknown, 409 its state does not allow it"
    )
    status: str | None = Field(default=None, description="The order's status after the decision")
    outcome: str | None = Field(default=None, description="approved or rejected, when decided")
    pending: list[str] = Field(default_factory=list, description="202: the compensations awaited")
    code: str | None = Field(default=None, description="Why not, when not decided (a stable code)")
    detail: str | None = Field(default=None, description="Why not, for a person")


class DecisionResults(View):
    results: list[DecisionResult] = Field(description="One per order, in the order asked")


def _decided(order: Order, outcome: str) -> dict[str, Any]:
    compensation = order.compensation if order.stage == "compensating" else None
    pending = sorted(compensation.pending) if compensation is not None else []
    return {
        "order_id": order.order_id,
        "status_code": 202 if pending else 200,
        "status": order.status,
        "outcome": outcome,
        "pending": pending,
    }


@router.post("/orders/decisions", response_model=DecisionResults)
async def decide_orders(
    body: Decisions, request: Request, principal: Annotated[Principal, requires("orders:decide")]
) -> dict[str, Any]:
    """Approve or reject held orders (`GET /orders?status=on_hold` lists them with the rules
    that held each). Answers 200 with one result per order, never all-or-nothing: each says
    what that order's own approve or reject would have answered."""
    runtime = runtime_of(request)
    handlers: OrderHandlers = request.app.state.handlers
    actor, may_override_credit = principal.actor, principal.can("credit:grant")

    async def decide(uow: UnitOfWork, order_id: str) -> Order:
        if body.decision == "approve":
            return await handlers.approve(uow, order_id, actor, may_override_credit)
        return await handlers.reject(uow, order_id, body.reason, actor)

    outcome = "approved" if body.decision == "approve" else "rejected"
    results = []
    for order_id in body.order_ids:
        try:
            order = await runtime.execute(
                context_for(principal, order_id), partial(decide, order_id=order_id)
            )
            results.append(_decided(order, outcome))
        except DomainError as refused:
            results.append(
                {
                    "order_id": order_id,
                    "status_code": refused.status,
                    "code": refused.code,
                    "detail": refused.message,
                }
            )
        except Forbidden as refused:
            results.append(
                {"order_id": order_id, "status_code": 403, "code": "forbidden", "detail": refused.detail}
            )
    return {"results": results}
