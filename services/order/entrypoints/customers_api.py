"""Customers over HTTP: find, look up, change and merge them (docs/customers.md), and
erase one (crypto-shredding, docs/personal-data.md).

Registration, blocking and unblocking stay in api.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.values import Email, Phone
from libs.runtime.auth import context_for, requires
from libs.runtime.db import driver_connection
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.security.principal import Principal
from services.order.adapters import customer_desk, personal_data, queries
from services.order.app import customer_desk as desk
from services.order.app.handlers import OrderHandlers
from services.order.domain.customer import InvalidField, normalise_email, normalise_phone
from services.order.entrypoints.views import CustomerDetail, CustomerIds, ErasureDone, View

router = APIRouter(tags=["customers"])
# Shown instead of contact data to callers without customers:read_contact.
REDACTED = "[redacted]"


class Amount(View):
    currency: str = Field(examples=["EUR"])
    amount: str = Field(
        description="Decimal string, exact to the currency's smallest unit", examples=["120.50"]
    )


class CustomerOverview(CustomerDetail):
    order_count: int = Field(description="Orders of the customer and of the customers merged into them")
    total_spent: list[Amount] = Field(description="Paid minus refunded, per currency")
    open_balance: list[Amount] = Field(
        description="Invoiced and not yet paid on orders not cancelled or rejected, per currency"
    )
    merged_into: str | None = Field(
        default=None, description="Merged into this customer (a duplicate): look there for their orders"
    )
    merged_from: list[str] = Field(default_factory=list, description="Customers merged into this one")


class CustomerItem(View):
    customer_id: str
    name: str | None = Field(description="[redacted] without customers:read_contact")
    email: str | None
    phone: str | None
    region: str | None
    blocked: bool


class CustomerPage(View):
    items: list[CustomerItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class DuplicateSuggestion(View):
    customers: list[CustomerItem] = Field(description="The two customers, the lower id first")
    reasons: list[str] = Field(
        description="same email, same phone, same name and region", examples=[["same phone"]]
    )


class DuplicateSuggestions(View):
    suggestions: list[DuplicateSuggestion]


class CustomerChange(BaseModel):
    """Only the fields sent change; null or "" removes an email, phone or region."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    phone: Phone | None = None
    region: str | None = Field(default=None, max_length=40)


class CustomerChanged(View):
    customer_id: str
    changed: list[str] = Field(description="The fields that changed (empty: nothing did)")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: str = Field(min_length=1, max_length=100, description="The customer that stays")
    reason: str = Field(default="duplicate customer", min_length=1, max_length=500)


class MergeDone(View):
    customer_id: str
    merged_into: str
    merged: bool = Field(description="False: it was merged into that customer before (nothing changed)")


def _redacted(principal: Principal, item: dict[str, Any]) -> dict[str, Any]:
    if principal.can("customers:read_contact"):
        return item
    return {**item, **{f: REDACTED for f in ("name", "email", "phone") if item.get(f)}}


@router.get("/customers", response_model=CustomerPage, responses=problems(422))
async def list_customers(
    request: Request,
    principal: Annotated[Principal, requires("customers:read")],
    query: Annotated[
        str | None,
        Query(max_length=200, description="A name (every word must match a word of it), an email or a phone"),
    ] = None,
    region: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Registered customers by id, a page at a time (merged and erased ones are not listed).
    Names, emails and phones are sealed, so `query` compares keyed hashes: whole words of the
    name in any order and case, an email (any case), a phone (E.164 with its country code).
    Contact fields read [redacted] without customers:read_contact."""
    async with runtime_of(request).engine.connect() as conn:
        page = await customer_desk.list_customers(
            await driver_connection(conn), query=query, region=region, cursor=cursor, limit=limit
        )
    page["items"] = [_redacted(principal, item) for item in page["items"]]
    return page


@router.get("/customers/duplicates", response_model=DuplicateSuggestions)
async def duplicate_customers(
    request: Request,
    principal: Annotated[Principal, requires("customers:read")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Pairs of customers that are likely one person: the same email (any case), the same
    phone (E.164), or the same name in the same region; those with most in common first.
    Merge one into the other with POST /customers/{customer_id}/merge."""
    async with runtime_of(request).engine.connect() as conn:
        suggestions = await customer_desk.duplicate_suggestions(await driver_connection(conn), limit)
    for suggestion in suggestions:
        suggestion["customers"] = [_redacted(principal, c) for c in suggestion["customers"]]
    return {"suggestions": suggestions}


@router.patch("/customers/{customer_id}", response_model=CustomerChanged, responses=problems(404, 409, 422))
async def change_customer(
    customer_id: str,
    body: CustomerChange,
    request: Request,
    principal: Annotated[Principal, requires("customers:write")],
) -> dict[str, Any]:
    """Change a registered customer's name, email, phone or region (only the fields sent).
    Recorded as CustomerDetailsChanged with the fields that differ; the same values again
    record nothing. 422 names a field that breaks a rule (a phone needs its country code),
    409 for an erased or merged customer."""
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise InvalidField("invalid_name", "cannot be removed", "name")
    context = context_for(principal, f"customer:{customer_id}")
    changed = await runtime_of(request).execute(
        context, lambda uow: desk.change(uow, customer_id, changes, principal.actor)
    )
    return {"customer_id": customer_id, "changed": changed}


@router.post("/customers/{customer_id}/merge", response_model=MergeDone, responses=problems(404, 409, 422))
async def merge_customer(
    customer_id: str,
    body: MergeRequest,
    request: Request,
    principal: Annotated[Principal, requires("customers:write")],
) -> dict[str, Any]:
    """Merge a duplicate customer into `into`: both keep their history (CustomerMerged on
    this one, CustomerAbsorbed on `into`), this one's orders count for `into` from now on,
    and GET /customers/{customer_id} says where it went. Merging again changes nothing; 409
    for an erased customer, or one already merged elsewhere (naming where)."""
    context = context_for(principal, f"customer:{customer_id}")
    merged = await runtime_of(request).execute(
        context, lambda uow: desk.merge(uow, customer_id, body.into, body.reason, principal.actor)
    )
    return {"customer_id": customer_id, "merged_into": body.into, "merged": merged}


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


@router.get("/customers/{customer_id}", response_model=CustomerOverview, responses=problems(404))
async def get_customer(
    customer_id: str,
    request: Request,
    principal: Annotated[Principal, requires("customers:read_contact")],
) -> dict[str, Any]:
    """A registered customer, or a guest who ordered here, with their contact data opened
    (permission customers:read_contact), or "[erased]"; their order count, total spent and
    open balance per currency (their own orders and those of customers merged into them);
    a merged customer names the one it was merged into."""
    async with runtime_of(request).engine.connect() as conn:
        db = await driver_connection(conn)
        detail = await queries.customer_detail(db, customer_id)
        if detail is None:
            raise NotFound("unknown_customer", f"customer {customer_id} is not known here")
        figures = await customer_desk.order_figures(db, customer_id)
        merged_into = await customer_desk.merged_into(db, customer_id)
    return {**detail, **figures, "merged_into": merged_into}


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
