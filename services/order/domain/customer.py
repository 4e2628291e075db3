"""Customers known to the order desk, and how a submitted contact is matched to one.

Name, email and phone in a Customer are as recorded: sealed with the customer's key (the app
layer seals and opens them; see libs.runtime.personal_data), or plaintext in events written
before sealing existed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import phonenumbers

from libs.domain import AggregateKind, DomainError, InvalidRequest, NotFound
from libs.events.base import DomainEvent
from libs.events.order import (
    CustomerAbsorbed,
    CustomerBlocked,
    CustomerDetailsChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnblocked,
)


class InvalidField(InvalidRequest):
    """A request's field breaks a rule: the problem's `errors` name it, as for a schema error."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(code, f"{field}: {message}")
        self.details = {"errors": [{"field": field, "message": message, "rule": code}]}


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
    # Merged into another customer (a duplicate): their orders count for that one.
    merged_into: str | None = None
    merged_from: tuple[str, ...] = ()

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
    if isinstance(event, CustomerDetailsChanged):
        return replace(state, **{field: getattr(event, field) for field in event.changed})
    if isinstance(event, CustomerMerged):
        return replace(state, merged_into=event.into)
    if isinstance(event, CustomerAbsorbed):
        return replace(state, merged_from=(*state.merged_from, event.merged_from))
    return state


CUSTOMER = AggregateKind[Customer]("customer", Customer, evolve)


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


def normalise_phone(phone: str | None) -> str | None:
    """E.164 ("+441615550199") for a number with its country code ("+44 161 ...", "0044 161
    ..."); the digits alone for one without (the desk knows no customer's country to read it
    in), so such a number is still found by the same digits."""
    text = (phone or "").strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = re.sub(r"\D", "", text)
    return digits or None


def checked_phone(phone: str) -> str:
    """A phone number a person enters at the desk: with its country code and possibly a
    number there, or refused naming the field."""
    normalised = normalise_phone(phone)
    if normalised is None or not normalised.startswith("+"):
        raise InvalidField(
            "invalid_phone",
            "phone must be a possible number with its country code (+44 161 555 0199)",
            "phone",
        )
    return normalised


def checked_email(email: str) -> str:
    normalised = normalise_email(email)
    local, _, domain = (normalised or "").partition("@")
    if not local or "." not in domain or any(c.isspace() for c in normalised or ""):
        raise InvalidField("invalid_email", "must be an address such as ada@example.org", "email")
    return normalised or ""


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


CHANGEABLE = ("name", "email", "phone", "region")


def decide_change(
    state: Customer, customer_id: str, changes: Mapping[str, str | None], actor: str
) -> list[DomainEvent]:
    """Change a registered customer's details (`state` with its contact fields opened;
    `changes` already normalised). Only fields whose value differs are recorded; none: nothing."""
    _require_active(state, customer_id)
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise InvalidField("unknown_field", f"{unknown[0]} cannot be changed", unknown[0])
    if "name" in changes and not (changes["name"] or "").strip():
        raise InvalidField("invalid_name", "cannot be empty", "name")
    changed = tuple(f for f in CHANGEABLE if f in changes and changes[f] != getattr(state, f))
    if not changed:
        return []
    return [
        CustomerDetailsChanged(
            customer_id=customer_id,
            changed=changed,
            changed_by=actor,
            **{f: changes[f] for f in changed},
        )
    ]


def decide_merge(
    duplicate: Customer, survivor: Customer, duplicate_id: str, survivor_id: str, reason: str, actor: str
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Merge `duplicate` into `survivor`: an event on each (both histories stay). Merging the
    same pair again changes nothing; into a customer that was itself merged, or the other
    way round, is refused naming where it went."""
    if duplicate_id == survivor_id:
        raise InvalidField("merge_into_itself", "a customer cannot be merged into itself", "into")
    if not survivor.exists:
        raise NotFound("unknown_customer", f"customer {survivor_id} is not registered")
    if duplicate.merged_into == survivor_id:
        return [], []
    _require_active(duplicate, duplicate_id)
    if survivor.erased:
        raise DomainError("customer_erased", f"customer {survivor_id} was erased")
    if survivor.merged_into is not None:
        raise DomainError(
            "customer_merged",
            f"customer {survivor_id} was merged into {survivor.merged_into}: merge into that one",
        )
    return (
        [CustomerMerged(customer_id=duplicate_id, into=survivor_id, reason=reason, merged_by=actor)],
        [CustomerAbsorbed(customer_id=survivor_id, merged_from=duplicate_id, reason=reason, merged_by=actor)],
    )


def _require_active(state: Customer, customer_id: str) -> None:
    if not state.exists:
        raise NotFound("unknown_customer", f"customer {customer_id} is not registered")
    if state.erased:
        raise DomainError("customer_erased", f"customer {customer_id} was erased")
    if state.merged_into is not None:
        raise DomainError("customer_merged", f"customer {customer_id} was merged into {state.merged_into}")
