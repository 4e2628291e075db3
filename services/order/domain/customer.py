"""Customers known to the order desk, and how a submitted contact is matched to one.

Name, email and phone in a Customer are as recorded: sealed with the customer's key (the app
layer seals and opens them; see libs.runtime.personal_data), or plaintext in events written
before sealing existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from libs.domain import AggregateKind, DomainError, NotFound
from libs.events.base import DomainEvent
from libs.events.order import CustomerBlocked, CustomerErased, CustomerRegistered, CustomerUnblocked


class RegistrationConflict(DomainError):
    """The id is registered with other details; `details` names the fields that differ."""

    def __init__(self, customer_id: str, differences: list[str]) -> None:
        super().__init__(
            "customer_exists",
            f"customer {customer_id} is already registered with a different {', '.join(differences)};"
            " register another id, or change the customer instead",
        )
        self.details = {"differences": differences}


@dataclass(frozen=True)
class Customer:
    customer_id: str = ""
    name: str = ""
    email: str | None = None
    phone: str | None = None
    region: str | None = None
    blocked: bool = False
    # Set by CustomerErased: the key is destroyed, the contact fields read as erased.
    erased: bool = False

    @property
    def exists(self) -> bool:
        return bool(self.customer_id)


def evolve(state: Customer, event: DomainEvent) -> Customer:
    if isinstance(event, CustomerRegistered):
        return Customer(event.customer_id, event.name, event.email, event.phone, event.region)
    if isinstance(event, CustomerBlocked):
        return replace(state, blocked=True)
    if isinstance(event, CustomerUnblocked):
        return replace(state, blocked=False)
    if isinstance(event, CustomerErased):
        return replace(state, erased=True)
    return state


CUSTOMER = AggregateKind[Customer]("customer", Customer, evolve)


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


def normalise_phone(phone: str | None) -> str | None:
    digits = re.sub(r"\D", "", phone or "")
    return digits or None


def guest_id(order_id: str) -> str:
    """The customer id of a guest's first order (the desk does not know them).

    Taken from the order, never from the contact: an id derived from an email would carry
    it (or a hash anyone holding the secret can test) into every event and every service, and
    outlive an erasure. Later orders with the same email or phone find this id through the
    contact's blind index, which erasure deletes.
    """
    return f"guest:{order_id}"


def decide_register(
    state: Customer,
    customer_id: str,
    name: str,
    email: str | None,
    phone: str | None,
    region: str | None,
    blocked: bool = False,
) -> list[DomainEvent]:
    """Register a customer; the same registration again changes nothing (`state` with its
    contact fields opened), one with other details is refused naming them."""
    if state.erased:
        raise DomainError("customer_erased", f"customer {customer_id} was erased; register another id")
    if state.exists:
        asked = (name, normalise_email(email), normalise_phone(phone), region, blocked)
        recorded = (state.name, state.email, state.phone, state.region, state.blocked)
        differences = [
            field
            for field, new, old in zip(
                ("name", "email", "phone", "region", "blocked"), asked, recorded, strict=True
            )
            if new != old
        ]
        if differences:
            raise RegistrationConflict(customer_id, differences)
        return []
    return [
        CustomerRegistered(
            customer_id=customer_id,
            name=name,
            email=normalise_email(email),
            phone=normalise_phone(phone),
            region=region,
        )
    ]


def decide_erase(
    state: Customer, customer_id: str, known_elsewhere: bool, reason: str, actor: str
) -> list[DomainEvent]:
    """Erase a registered customer, or a guest (`known_elsewhere`: they have a key or orders
    but no registration). Erasing twice changes nothing."""
    if not state.exists and not state.erased and not known_elsewhere:
        raise NotFound("unknown_customer", f"customer {customer_id} is not known here")
    if state.erased:
        return []
    return [CustomerErased(customer_id=customer_id, reason=reason, erased_by=actor)]


def decide_block(state: Customer, customer_id: str, blocked: bool, reason: str) -> list[DomainEvent]:
    if not state.exists:
        raise NotFound("unknown_customer", f"customer {customer_id} is not registered")
    if state.blocked == blocked:
        return []
    if blocked:
        return [CustomerBlocked(customer_id=state.customer_id, reason=reason)]
    return [CustomerUnblocked(customer_id=state.customer_id)]
