"""Order HTTP API: submission, queries, the order desk's decisions, customers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.order import SubmitOrder
from libs.runtime.auth import Forbidden, context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.order.adapters import queries
from services.order.app import customer_desk
from services.order.app.handlers import OrderHandlers
from services.order.domain.order import Order
from services.order.domain.order import Status as OrderStatus
from services.order.domain.saga import COMPENSATIONS, FULFILMENT_SAGA
from services.order.entrypoints import order_export
from services.order.entrypoints.views import (
    ActionStatus,
    BlockState,
    CustomerRegistration,
    OrderAccepted,
    OrderActionResult,
    OrderDetail,
    OrderPage,
    SagaTable,
)

router = APIRouter()


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "customer asked"}]})
    reason: str = Field(min_length=1, max_length=500, description="Why, for the order's timeline")


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


# Shown instead of a customer's contact data to callers without customers:read_contact.
REDACTED = "[redacted]"


def _redact_contact(details: dict[str, Any]) -> None:
    customer = details.get("customer")
    if isinstance(customer, dict):
        for key in ("name", "email", "phone"):
            if customer.get(key):
                customer[key] = REDACTED
    shipping = details.get("shipping")
    address = shipping.get("address") if isinstance(shipping, dict) else None
    if isinstance(address, dict):
        # The country stays: reports and tax need it, and it identifies no one.
        for key, value in address.items():
            if key != "country" and value:
                address[key] = REDACTED
    if details.get("customer_name"):
        details["customer_name"] = REDACTED


def _visible_to(principal: Principal, detail: dict[str, Any]) -> dict[str, Any]:
    """The order as this caller may see it: contact data only with customers:read_contact."""
    if principal.can("customers:read_contact"):
        return detail
    _redact_contact(detail)
    for entry in detail.get("timeline") or ():
        if isinstance(entry, dict) and isinstance(entry.get("details"), dict):
            _redact_contact(entry["details"])
    return detail


@router.post(
    "/orders",
    status_code=202,
    tags=["orders"],
    responses=problems(
        409, on_409="This Idempotency-Key (or channel + external_id) was used for a different order"
    ),
)
async def submit_order(
    submission: SubmitOrder,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:submit")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> OrderAccepted:
    """Submit an order. 202: it was reviewed (approved, on_hold with `hold_reasons`, or
    rejected) and the saga goes on from there; follow it at the Location. The same
    Idempotency-Key (or channel + external_id) with the same body returns the same order
    (header Idempotent-Replayed); with a different body it is refused with 409. A channel's
    API key submits for its own channel only."""
    if not principal.sees_channel(submission.channel):
        raise Forbidden(
            f"this API key submits for channel {principal.channel}, not {submission.channel}",
            field="channel",
        )
    if idempotency_key:
        submission = submission.model_copy(update={"idempotency_key": idempotency_key})
    runtime, handlers = runtime_of(request), _handlers(request)
    correlation = idempotency_key or submission.external_id or "order-submission"

    context = context_for(principal, correlation)
    placement = await runtime.execute(context, lambda uow: handlers.place(uow, submission))
    if not placement.created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/orders/{placement.order_id}"
    return OrderAccepted.model_validate(
        {"order_id": placement.order_id, "status": placement.status, "hold_reasons": placement.hold_reasons}
    )


@router.get("/orders/{order_id}", tags=["orders"], response_model=OrderDetail, responses=problems(404))
async def get_order(
    order_id: str,
    request: Request,
    principal: Annotated[Principal, requires("orders:read")],
    as_of: Annotated[
        AwareDatetime | None,
        Query(
            description="ISO 8601 with a time zone (2026-03-01T12:00:00Z): the order as it was then,"
            " folded from its events recorded up to that time (404 if it was not placed yet)"
        ),
    ] = None,
) -> dict[str, Any]:
    """The order, its lines, shipments and timeline (every event, oldest first); with `as_of`,
    as it was at that time."""
    async with runtime_of(request).engine.connect() as conn:
        if as_of is None:
            detail = await queries.order_detail(conn, order_id)
        else:
            detail = await queries.order_as_of(conn, order_id, as_of)
    # Another channel's order is answered as unknown: a key must not learn which ids exist.
    if detail is None or not principal.sees_channel(str(detail.get("channel"))):
        when = f" at {as_of.isoformat()}" if as_of is not None else ""
        raise NotFound("unknown_order", f"order {order_id} does not exist{when}")
    return _visible_to(principal, detail)


@router.get("/orders", tags=["orders"], response_model=OrderPage, responses=order_export.FILES)
async def list_orders(
    request: Request,
    principal: Annotated[Principal, requires("orders:read")],
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status")] = None,
    customer_id: Annotated[str | None, Query(max_length=400)] = None,
    channel: Annotated[str | None, Query(max_length=40)] = None,
    placed_after: datetime | None = None,
    placed_before: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    format: Annotated[
        Literal["json", "csv", "xlsx"],
        Query(description="csv or xlsx: every order the filters select as a file (cursor and limit unused)"),
    ] = "json",
) -> dict[str, Any] | Response:
    """Orders, newest first, a page at a time; on_hold ones name each rule that held them in
    `hold_reasons`. An unknown `status` is refused with 422 listing the statuses there are.
    With `format=csv|xlsx`, all of them as a file, streamed (order_export.py)."""
    if principal.channel is not None:
        if channel is not None and channel != principal.channel:
            raise Forbidden(f"this API key reads channel {principal.channel}'s orders only", field="channel")
        channel = principal.channel
    if format != "json":
        filters = {
            "status": status,
            "customer_id": customer_id,
            "channel": channel,
            "placed_after": placed_after,
            "placed_before": placed_before,
        }
        redact = (lambda _: None) if principal.can("customers:read_contact") else _redact_contact
        return order_export.export_response(runtime_of(request).engine, format, filters, redact)
    async with runtime_of(request).engine.connect() as conn:
        page = await queries.list_orders(
            conn,
            status=status,
            customer_id=customer_id,
            channel=channel,
            placed_after=placed_after,
            placed_before=placed_before,
            cursor=cursor,
            limit=limit,
        )
    if not principal.can("customers:read_contact"):
        for item in page.get("items") or ():
            _redact_contact(item)
    return page


def action_result(order: Order, outcome: OrderStatus, response: Response) -> OrderActionResult:
    """What a person's decision produced: the outcome reached (200), or on its way while the
    compensations it started are awaited (202, naming them)."""
    compensation = order.compensation if order.stage == "compensating" else None
    pending = sorted(compensation.pending) if compensation is not None else []
    status: ActionStatus = order.status
    if pending:
        response.status_code = 202
        status = "rejecting" if outcome == "rejected" else "cancelling"
    reason = compensation.reason if compensation is not None else order.last_reason
    return OrderActionResult(
        order_id=order.order_id,
        status=status,
        stage=order.stage,
        outcome=outcome,
        pending=pending,
        reason=reason if outcome != "approved" else None,
    )


_ACTION_ANSWERS = {
    **answers(202, OrderActionResult, "Under way: `pending` names the compensations awaited"),
    **problems(404, 409, on_409="The order's state does not allow it (the detail says why)"),
}


@router.post(
    "/orders/{order_id}/approve",
    tags=["order desk"],
    response_model=OrderActionResult,
    responses=problems(404, 409),
)
async def approve_order(
    order_id: str,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:decide")],
) -> OrderActionResult:
    """Approve an order on hold: it goes on from where it was held (held at review: to stock
    reservation; held over its customer's credit limit: billing charges the credit anyway, which
    needs credit:grant too). Answers the order as approved."""
    actor, may_override_credit = principal.actor, principal.can("credit:grant")
    order = await runtime_of(request).execute(
        context_for(principal, order_id),
        lambda uow: _handlers(request).approve(uow, order_id, actor, may_override_credit),
    )
    return action_result(order, "approved", response)


@router.post(
    "/orders/{order_id}/reject",
    tags=["order desk"],
    response_model=OrderActionResult,
    responses=_ACTION_ANSWERS,
)
async def reject_order(
    order_id: str,
    body: Reason,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:decide")],
) -> OrderActionResult:
    """Reject an order on hold. 200: rejected. 202: what it held is being given back first."""
    actor = principal.actor
    order = await runtime_of(request).execute(
        context_for(principal, order_id),
        lambda uow: _handlers(request).reject(uow, order_id, body.reason, actor),
    )
    return action_result(order, "rejected", response)


@router.post(
    "/orders/{order_id}/cancel",
    tags=["order desk"],
    response_model=OrderActionResult,
    responses=_ACTION_ANSWERS,
)
async def cancel_order(
    order_id: str,
    body: Reason,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("orders:cancel")],
) -> OrderActionResult:
    """Cancel an order (409 once a shipment left the warehouse). 200: cancelled. 202: its stock
    is being released and its invoice voided (what was paid is refunded) first; `pending` names
    what is awaited and the order reads cancelled when they are done."""
    actor = principal.actor
    order = await runtime_of(request).execute(
        context_for(principal, order_id),
        lambda uow: _handlers(request).cancel(uow, order_id, body.reason, actor),
    )
    return action_result(order, "cancelled", response)


@router.post(
    "/customers",
    status_code=201,
    tags=["customers"],
    response_model=CustomerRegistration,
    responses={
        **answers(200, CustomerRegistration, "Registered before with exactly this: nothing changed"),
        **problems(409, on_409="Registered before with other details: `differences` names them"),
    },
)
async def register_customer(
    body: CustomerIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("customers:write")],
) -> CustomerRegistration:
    """Register a customer. 201: registered. 200: the same registration again (nothing
    recorded). 409: the id is registered with other details, named in `differences`."""
    context = context_for(principal, f"customer:{body.customer_id}")
    created = await runtime_of(request).execute(
        context,
        # Through the customer desk: registered, then indexed for GET /customers?query=.
        lambda uow: customer_desk.register(uow, _handlers(request), body.model_dump()),
    )
    if not created:
        response.status_code = 200
    return CustomerRegistration(**body.model_dump())


async def _set_blocked(
    request: Request, customer_id: str, blocked: bool, reason: str, principal: Principal
) -> BlockState:
    context = context_for(principal, f"customer:{customer_id}")
    await runtime_of(request).execute(
        context, lambda uow: _handlers(request).set_blocked(uow, customer_id, blocked, reason)
    )
    return BlockState(customer_id=customer_id, blocked=blocked)


@router.post("/customers/{customer_id}/block", tags=["customers"], responses=problems(404))
async def block_customer(
    customer_id: str,
    body: Reason,
    request: Request,
    principal: Annotated[Principal, requires("customers:write")],
) -> BlockState:
    """New orders of a blocked customer are held for the order desk. Blocking again changes nothing."""
    return await _set_blocked(request, customer_id, True, body.reason, principal)


@router.post("/customers/{customer_id}/unblock", tags=["customers"], responses=problems(404))
async def unblock_customer(
    customer_id: str, request: Request, principal: Annotated[Principal, requires("customers:write")]
) -> BlockState:
    return await _set_blocked(request, customer_id, False, "", principal)


@router.get("/saga", tags=["docs"], response_model=SagaTable)
async def saga_definition(
    request: Request, _: Annotated[Principal, requires("orders:read")]
) -> dict[str, Any]:
    """The fulfilment saga as a table of steps and compensations."""
    return {
        "parallel_steps": _handlers(request).policy.parallel_steps,
        "steps": [
            {
                "step": s.name,
                "participant": s.participant,
                "request": s.request,
                "succeeds_on": s.succeeds_on,
                "fails_on": s.fails_on,
                "compensation": s.compensation,
                "group": s.group,
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
