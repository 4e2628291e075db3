"""Customers' personal data over HTTP: look a customer up, erase one (crypto-shredding).

Registration, blocking and unblocking stay in api.py. See docs/personal-data.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import Email, Phone
from libs.runtime.auth import context_for, requires
from libs.runtime.db import driver_connection
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.security.principal import Principal
from services.order.adapters import personal_data, queries
from services.order.app.handlers import OrderHandlers
from services.order.domain.customer import normalise_email, normalise_phone
from services.order.entrypoints.views import CustomerDetail, CustomerIds, ErasureDone

router = APIRouter(tags=["customers"])


class Erasure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="Why, for the audit trail")


class ContactQuery(BaseModel):
    """Sent in a body, not a query string: URLs end up in access logs, contacts must not."""

    model_config = ConfigDict(extra="forbid")
    email: Email | None = None
    phone: Phone | None = None


@router.post("/customers/{customer_id}/erase", response_model=ErasureDone, responses=problems(404))
async def erase_customer(
    customer_id: str,
    body: Erasure,
    request: Request,
    principal: Annotated[Principal, requires("customers:erase")],
) -> dict[str, Any]:
    """Erase a customer's personal data (permission customers:erase): their key is destroyed,
    so the name, email, phone and address lines in their orders, events and read models read
    as "[erased]" from now on; amounts, lines, region and country stay. Works for a registered
    customer id and a guest's id (the `customer_id` of their orders). Erasing again changes
    nothing. Recorded as CustomerErased with the caller as actor."""
    handlers: OrderHandlers = request.app.state.handlers
    context = context_for(principal, f"customer:{customer_id}")
    await runtime_of(request).execute(
        context, lambda uow: handlers.erase_customer(uow, customer_id, body.reason, principal.actor)
    )
    return {"customer_id": customer_id, "erased": True}


@router.get("/customers/{customer_id}", response_model=CustomerDetail, responses=problems(404))
async def get_customer(
    customer_id: str,
    request: Request,
    principal: Annotated[Principal, requires("customers:read_contact")],
) -> dict[str, Any]:
    """A registered customer, or a guest who ordered here, with their contact data opened
    (permission customers:read_contact), or "[erased]"."""
    async with runtime_of(request).engine.connect() as conn:
        detail = await queries.customer_detail(await driver_connection(conn), customer_id)
    if detail is None:
        raise NotFound("unknown_customer", f"customer {customer_id} is not known here")
    return detail


@router.post("/customers/search", response_model=CustomerIds)
async def find_customers(
    body: ContactQuery,
    request: Request,
    principal: Annotated[Principal, requires("customers:read_contact")],
) -> dict[str, Any]:
    """The ids of the customers (registered or guests) known by this email or phone, through
    their blind indexes (permission customers:read_contact): how a data subject's request
    for erasure finds their customer ids. An erased customer is not found."""
    email, phone = normalise_email(body.email), normalise_phone(body.phone)
    async with runtime_of(request).engine.connect() as conn:
        db = await driver_connection(conn)
        email_index, phone_index = await personal_data.contact_indexes(db, email, phone)
        found = await queries.find_customers(db, queries.Contact(email, phone, email_index, phone_index))
    return {"customer_ids": found}
