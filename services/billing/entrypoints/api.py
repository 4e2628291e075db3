"""Billing HTTP API: the payment gateway's callback, invoices, payments, refunds, credit."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import CustomerId, OrderId, PaymentMethod, Reference
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.runtime.uow import UnitOfWork
from libs.security.principal import Principal
from services.billing.adapters import queries
from services.billing.app import handlers
from services.billing.domain.invoice import PaymentAttempt, PaymentOutcome
from services.billing.domain.policy import BillingPolicy
from services.billing.domain.refunds import goodwill_refund_id
from services.billing.entrypoints.views import (
    AccountView,
    GoodwillRefundView,
    InvoiceView,
    PaymentResult,
    PaymentView,
    RefundView,
)

router = APIRouter(tags=["billing"])

# What the numeric(14,2) columns hold.
Amount = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: OrderId
    amount: Annotated[Amount, Field(gt=0)]
    method: PaymentMethod
    reference: Reference = Field(
        description="The gateway's reference: the same payment again is applied once;"
        " another payment under it is refused",
    )
    outcome: PaymentOutcome


class GoodwillRefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: OrderId
    amount: Annotated[Amount, Field(gt=0)]
    reason: str = Field(min_length=1, max_length=500, description="Why, for the refund and the audit trail")


class CreditLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credit_limit: Annotated[Amount, Field(ge=0)]


def _policy(request: Request) -> BillingPolicy:
    policy: BillingPolicy = request.app.state.billing_policy
    return policy


Reader = Annotated[Principal, requires("billing:read")]


@router.post(
    "/payments",
    status_code=201,
    response_model=PaymentResult,
    responses={
        **answers(200, PaymentResult, "This payment (same reference, same content) was applied before"),
        **problems(
            404,
            409,
            on_409="Another payment was recorded under this reference, or the invoice does not take it",
        ),
    },
)
async def record_payment(
    body: PaymentIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("payments:record")],
) -> dict[str, Any]:
    """The payment gateway's callback. The answer shows where the invoice stands now."""
    runtime = runtime_of(request)
    attempt = PaymentAttempt(body.order_id, body.reference, body.method, body.amount, body.outcome)

    # The payment belongs to the order's story: correlate it with the order.
    context = context_for(principal, body.order_id)
    invoice = await runtime.execute(context, lambda uow: handlers.record_payment(uow, attempt))
    if invoice is not None:
        # Answered from the invoice the decision left, not re-read: no second round trip.
        return {
            "reference": attempt.reference,
            "order_id": attempt.order_id,
            "invoice_id": invoice.invoice_id,
            "outcome": attempt.outcome,
            "amount": queries.money(attempt.amount),
            "amount_paid": queries.money(invoice.amount_paid),
            "invoice_status": invoice.status,
        }
    response.status_code = 200  # this reference was applied before
    async with runtime.engine.connect() as conn:
        result = await queries.payment_result(conn, body.reference)
    if result is None:
        raise RuntimeError(f"payment {body.reference} was recorded but has no row")
    return result


@router.get("/payments", response_model=list[PaymentView])
async def payments_of_order(order_id: str, request: Request, _: Reader) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.payments_of_order(conn, order_id)


@router.get("/invoices", response_model=list[InvoiceView])
async def invoices_of_order(order_id: str, request: Request, _: Reader) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.invoices_of_order(conn, order_id)


@router.get("/invoices/{invoice_id}", response_model=InvoiceView, responses=problems(404))
async def invoice(invoice_id: str, request: Request, _: Reader) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await queries.invoice(conn, invoice_id)
    if found is None:
        raise NotFound("unknown_invoice", f"no invoice {invoice_id!r}")
    return found


@router.get("/refunds", response_model=list[RefundView])
async def refunds_of_order(order_id: str, request: Request, _: Reader) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.refunds_of_order(conn, order_id)


@router.post(
    "/refunds",
    status_code=201,
    response_model=GoodwillRefundView,
    responses={
        **answers(200, GoodwillRefundView, "This refund (same Idempotency-Key) was issued before"),
        **problems(404, 409, on_409="More than was paid and not yet refunded (the limit is named)"),
    },
)
async def refund_goodwill(
    body: GoodwillRefundIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("refunds:issue")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """A goodwill refund by finance, possible whatever the order's state (also with nothing
    outstanding), never more than was paid and not yet refunded: 409 naming that limit. The
    same Idempotency-Key again answers the same refund (200) and pays nothing twice."""
    runtime = runtime_of(request)
    key = idempotency_key or str(uuid4())
    refund_id = goodwill_refund_id(body.order_id, key)

    async def refund(uow: UnitOfWork) -> tuple[bool, Decimal]:
        already = refund_id in (await handlers.load_billing(uow, body.order_id)).invoice.refund_ids
        invoice = await handlers.refund_goodwill(uow, body.order_id, body.amount, body.reason, refund_id)
        return already, invoice.refundable

    already, refundable = await runtime.execute(context_for(principal, body.order_id), refund)
    if already:
        response.status_code = 200
    async with runtime.engine.connect() as conn:
        issued = [
            r for r in await queries.refunds_of_order(conn, body.order_id) if r["refund_id"] == refund_id
        ]
    if not issued:
        raise RuntimeError(f"refund {refund_id} was recorded but has no row")
    return {**issued[0], "refundable": queries.money(refundable)}


@router.put("/customers/{customer_id}/credit-limit", response_model=AccountView)
async def set_credit_limit(
    customer_id: Annotated[CustomerId, Path()],
    body: CreditLimitIn,
    request: Request,
    principal: Annotated[Principal, requires("credit:grant")],
) -> dict[str, Any]:
    runtime = runtime_of(request)

    await runtime.execute(
        context_for(principal, f"customer:{customer_id}"),
        lambda uow: handlers.set_credit_limit(uow, customer_id, body.credit_limit),
    )
    async with runtime.engine.connect() as conn:
        return await queries.account(conn, customer_id, _policy(request).default_credit_limit)


@router.get("/customers/{customer_id}/account", response_model=AccountView)
async def account(customer_id: str, request: Request, _: Reader) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.account(conn, customer_id, _policy(request).default_credit_limit)
