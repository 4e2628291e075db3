"""Customers known to the order desk, and how a submitted contact is matched to one."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from libs.domain import AggregateKind, DomainError, NotFound
from libs.events.base import DomainEvent
from libs.events.order import CustomerBlocked, CustomerRegistered, CustomerUnblocked
from libs.events.values import CustomerSnapshot


@dataclass(frozen=True)
class Customer:
    customer_id: str = ""
    name: str = ""
    email: str | None = None
    phone: str | None = None
    blocked: bool = False

    @property
    def exists(self) -> bool:
        return bool(self.customer_id)


def evolve(state: Customer, event: DomainEvent) -> Customer:
    if isinstance(event, CustomerRegistered):
        return Customer(event.customer_id, event.name, event.email, event.phone)
    if isinstance(event, CustomerBlocked):
        return replace(state, blocked=True)
    if isinstance(event, CustomerUnblocked):
        return replace(state, blocked=False)
    return state


CUSTOMER = AggregateKind[Customer]("customer", Customer, evolve)


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


def normalise_phone(phone: str | None) -> str | None:
    digits = re.sub(r"\D", "", phone or "")
    return digits or None


def contact_key(customer: CustomerSnapshot, order_id: str) -> str:
    """A stable id for a customer the desk does not know yet: their id, email or phone."""
    if customer.id:
        return customer.id
    if email := normalise_email(customer.email):
        return f"email:{email}"
    if phone := normalise_phone(customer.phone):
        return f"phone:{phone}"
    return f"guest:{order_id}"


def decide_register(
    state: Customer, customer_id: str, name: str, email: str | None, phone: str | None, region: str | None
) -> list[DomainEvent]:
    if state.exists:
        raise DomainError("customer_exists", f"customer {customer_id} is already registered")
    return [
        CustomerRegistered(
            customer_id=customer_id,
            name=name,
            email=normalise_email(email),
            phone=normalise_phone(phone),
            region=region,
        )
    ]


def decide_block(state: Customer, customer_id: str, blocked: bool, reason: str) -> list[DomainEvent]:
    if not state.exists:
        raise NotFound("unknown_customer", f"customer {customer_id} is not registered")
    if state.blocked == blocked:
        return []
    if blocked:
        return [CustomerBlocked(customer_id=state.customer_id, reason=reason)]
    return [CustomerUnblocked(customer_id=state.customer_id)]
