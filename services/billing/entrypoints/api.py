"""Billing HTTP API: the payment gateway's callback, invoices, payments, refunds, credit."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import CustomerId, OrderId, PaymentMethod, Reference
from libs.runtime.http import request_context, runtime_of
from libs.runtime.uow import MessageContext
from services.billing.adapters import queries
from services.billing.app import handlers
from services.billing.domain.invoice import PaymentAttempt, PaymentOutcome
from services.billing.domain.policy import BillingPolicy

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


class CreditLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credit_limit: Annotated[Amount, Field(ge=0)]


def _policy(request: Request) -> BillingPolicy:
    policy: BillingPolicy = request.app.state.billing_policy
    return policy


def _context(actor: str | None, correlation: str) -> MessageContext:
    return request_context(actor, correlation, "billing")


@router.post("/payments", status_code=201)
async def record_payment(
    body: PaymentIn,
    request: Request,
    response: Response,
    x_actor: Annotated[str | None, Header(max_length=100)] = None,
) -> dict[str, Any]:
    """The payment gateway's callback. The answer shows where the invoice stands now."""
    runtime = runtime_of(request)
    attempt = PaymentAttempt(body.order_id, body.reference, body.method, body.amount, body.outcome)

    # The payment belongs to the order's story: correlate it with the order.
    context = _context(x_actor, body.order_id)
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


@router.get("/payments")
async def payments_of_order(order_id: str, request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.payments_of_order(conn, order_id)


@router.get("/invoices")
async def invoices_of_order(order_id: str, request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.invoices_of_order(conn, order_id)


@router.get("/invoices/{invoice_id}")
async def invoice(invoice_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await queries.invoice(conn, invoice_id)
    if found is None:
        raise NotFound("unknown_invoice", f"no invoice {invoice_id!r}")
    return found


@router.get("/refunds")
async def refunds_of_order(order_id: str, request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.refunds_of_order(conn, order_id)


@router.put("/customers/{customer_id}/credit-limit")
async def set_credit_limit(
    customer_id: Annotated[CustomerId, Path()],
    body: CreditLimitIn,
    request: Request,
    x_actor: Annotated[str | None, Header(max_length=100)] = None,
) -> dict[str, Any]:
    runtime = runtime_of(request)

    await runtime.execute(
        _context(x_actor, f"customer:{customer_id}"),
        lambda uow: handlers.set_credit_limit(uow, customer_id, body.credit_limit),
    )
    async with runtime.engine.connect() as conn:
        return await queries.account(conn, customer_id, _policy(request).default_credit_limit)


@router.get("/customers/{customer_id}/account")
async def account(customer_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.account(conn, customer_id, _policy(request).default_credit_limit)
