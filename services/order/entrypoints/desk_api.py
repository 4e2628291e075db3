"""The order desk's changes over HTTP: amend, split and merge orders (docs/order-desk.md).

Each answers at once with the change's id: 200 when it is done already (an order still held at
review changes in place), 202 while inventory and billing do their part (GET /orders/{id} shows
`change` until it is applied, then the new lines in `lines` and the change in the timeline).
A change that crosses a review rule waits for a person: the order reads on_hold, and POST
/orders/{id}/approve or /reject decides it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.events.values import MAX_LINES_PER_ORDER, OrderId, OrderLine, Quantity, Shipping, Sku
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.order.app.desk import ChangeOutcome, DeskHandlers
from services.order.entrypoints.views import View

router = APIRouter(tags=["order desk"])
MAX_MERGED = 20


class AmendIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lines": [{"sku": "SKU-1", "quantity": 3, "unit_price": "12.50"}],
                    "reason": "customer called: one more",
                }
            ]
        },
    )
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES_PER_ORDER)] | None = Field(
        default=None, description="The order's whole new list of lines (absent: the lines stay)"
    )
    shipping: Shipping | None = Field(default=None, description="The new delivery (absent: it stays)")
    reason: str = Field(min_length=1, max_length=500, description="Why, for the order's timeline")

    @model_validator(mode="after")
    def _something_to_change(self) -> AmendIn:
        if self.lines is None and self.shipping is None:
            raise ValueError("lines: give the new lines, or shipping, or both")
        return self


class SplitLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    quantity: Quantity


class SplitIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"lines": [{"sku": "SKU-2", "quantity": 1}], "reason": "ship the rest now"}]
        },
    )
    lines: Annotated[list[SplitLine], Field(min_length=1, max_length=MAX_LINES_PER_ORDER)] = Field(
        description="The units that move into the new order"
    )
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _each_sku_once(self) -> SplitIn:
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("lines: a SKU appears more than once")
        return self


class MergeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"order_ids": ["o-1", "o-2"], "reason": "one parcel"}]},
    )
    order_ids: list[OrderId] = Field(min_length=2, max_length=MAX_MERGED, description="The orders to merge")
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _each_order_once(self) -> MergeIn:
        if len(set(self.order_ids)) != len(self.order_ids):
            raise ValueError("order_ids: an order appears more than once")
        return self


class ChangeResult(View):
    order_id: str = Field(description="The order changed (merge: the new order)")
    change_id: str
    state: str = Field(
        description="done: applied; under_way: inventory and billing are doing their part;"
        " on_hold: it crosses a review rule and waits for a person (POST /orders/{id}/approve or /reject)"
    )
    status: str = Field(description="The order's status now")
    hold_reasons: list[str] = Field(default_factory=list)
    new_order_id: str | None = Field(default=None, description="split: the new order with the moved units")
    merged_order_ids: list[str] = Field(default_factory=list, description="merge: the orders merged")


def _handlers(request: Request) -> DeskHandlers:
    handlers: DeskHandlers = request.app.state.desk_handlers
    return handlers


def _result(outcome: ChangeOutcome, response: Response) -> dict[str, Any]:
    order = outcome.order
    change = (
        order.change if order.change is not None and order.change.change_id == outcome.change_id else None
    )
    state = (
        "done" if change is None else ("on_hold" if change.awaiting in ("review", "credit") else "under_way")
    )
    response.status_code = 200 if state == "done" else 202
    return {
        "order_id": order.order_id,
        "change_id": outcome.change_id,
        "state": state,
        "status": order.status,
        "hold_reasons": list(order.hold_reasons) if order.status == "on_hold" else [],
        "new_order_id": outcome.new_order_id,
    }


_ANSWERS = {
    **answers(202, ChangeResult, "Under way, or held for a person (`state`)"),
    **problems(404, 409, 422, on_409="The order's state does not allow it (the detail says why)"),
}


@router.post("/orders/{order_id}/amend", response_model=ChangeResult, responses=_ANSWERS)
async def amend_order(
    order_id: str,
    body: AmendIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:amend")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Change the order's lines or delivery before any of its shipments left the warehouse
    (409 after). Only the difference is reserved or released, and invoiced (a supplementary
    invoice) or credited (a credit note; what was paid beyond the new total is refunded). Money
    paid is kept. The same Idempotency-Key again answers the same change."""
    handlers = _handlers(request)
    lines = tuple(body.lines) if body.lines is not None else None
    outcome = await runtime_of(request).execute(
        context_for(principal, order_id),
        lambda uow: handlers.amend(
            uow, order_id, lines, body.shipping, body.reason, principal.actor, idempotency_key
        ),
    )
    return _result(outcome, response)


@router.post("/orders/{order_id}/split", response_model=ChangeResult, responses=_ANSWERS)
async def split_order(
    order_id: str,
    body: SplitIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:amend")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Move these units into a new order of the same customer (ship what is in stock now, the
    rest later): their reservation (or place in the backorder queue), invoice amounts and the
    money paid for them go with them. Both orders' timelines name the other; GET /orders/{id}
    shows `split_from` / `split_into`."""
    moved = {line.sku: line.quantity for line in body.lines}
    handlers = _handlers(request)
    outcome = await runtime_of(request).execute(
        context_for(principal, order_id),
        lambda uow: handlers.split(uow, order_id, moved, body.reason, principal.actor, idempotency_key),
    )
    return _result(outcome, response)


@router.post("/orders/merge", response_model=ChangeResult, responses=_ANSWERS)
async def merge_orders(
    body: MergeIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:amend")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Merge orders of one customer, same currency and same delivery, none dispatched, into a
    new order: one shipment per warehouse, one invoice (one shipping fee; what was paid beyond
    it is refunded), payments carried over. The merged orders end `merged`, pointing at
    the new one (`merged_into`). 409 naming the reason otherwise."""
    handlers = _handlers(request)
    outcome = await runtime_of(request).execute(
        context_for(principal, body.order_ids[0]),
        lambda uow: handlers.merge(uow, body.order_ids, body.reason, principal.actor, idempotency_key),
    )
    result = _result(outcome, response)
    response.status_code = 202
    return {**result, "state": "under_way", "merged_order_ids": body.order_ids}
