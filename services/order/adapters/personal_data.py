"""The order service's personal data: which fields are sealed, with whose key, and the one
key store of the process (docs/personal-data.md).

Sealed: the customer's name, email and phone, and the delivery address lines. In clear: the
region and the country (reports and tax need them), the customer id, amounts and lines.
The key is the customer's: the `customer_id` on the order (a registered customer, a channel's
own customer id, or a guest's id).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from libs.events.order import (
    CustomerRegistered,
    OrderPlaced,
    StoredAddress,
    StoredCustomer,
    StoredShipping,
)
from libs.events.values import Address, CustomerSnapshot, Shipping
from libs.runtime.personal_data import SubjectKey, SubjectKeys, blind_index, seal, unseal

KEYS = SubjectKeys()
BLIND_INDEX = "blind-index"
CUSTOMER_FIELDS = ("name", "email", "phone")
ADDRESS_FIELDS = ("line1", "line2", "city", "postal_code")


async def contact_indexes(
    db: asyncpg.Connection, email: str | None, phone: str | None
) -> tuple[str | None, str | None]:
    """Blind indexes of a normalised email and phone (None where there is none)."""
    if not email and not phone:
        return None, None
    secret = await KEYS.service_secret(db, BLIND_INDEX)
    return blind_index(secret, "email", email), blind_index(secret, "phone", phone)


def sealed_customer(key: SubjectKey, customer: CustomerSnapshot) -> StoredCustomer:
    return StoredCustomer(
        id=customer.id,
        name=seal(key, customer.name) or "",
        email=seal(key, customer.email),
        phone=seal(key, customer.phone),
        region=customer.region,
    )


def sealed_shipping(key: SubjectKey, shipping: Shipping) -> StoredShipping:
    address = shipping.address
    if address is None:
        return StoredShipping(method=shipping.method)
    stored = StoredAddress(
        country=address.country, **{name: seal(key, getattr(address, name)) for name in ADDRESS_FIELDS}
    )
    return StoredShipping(method=shipping.method, address=stored)


def sealed_registration(key: SubjectKey, event: CustomerRegistered) -> CustomerRegistered:
    return event.model_copy(update={name: seal(key, getattr(event, name)) for name in CUSTOMER_FIELDS})


def opened_shipping(key: SubjectKey | None, shipping: Shipping) -> Shipping:
    """The delivery as the warehouse needs it: address lines in clear (or erased)."""
    address = shipping.address
    if address is None:
        return Shipping(method=shipping.method)
    lines = {name: unseal(key, getattr(address, name)) for name in ADDRESS_FIELDS}
    return Shipping(method=shipping.method, address=Address(country=address.country, **lines))


def opened_payload(key: SubjectKey | None, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An event's payload (as stored, JSON) with its personal fields opened."""
    if event_type == OrderPlaced.message_type:
        customer = payload.get("customer") or {}
        opened = {**payload, "customer": _opened(key, customer, CUSTOMER_FIELDS)}
        shipping = payload.get("shipping") or {}
        if shipping.get("address"):
            address = _opened(key, shipping["address"], ADDRESS_FIELDS)
            opened["shipping"] = {**shipping, "address": address}
        return opened
    if event_type == CustomerRegistered.message_type:
        return _opened(key, payload, CUSTOMER_FIELDS)
    return payload


def _opened(key: SubjectKey | None, fields: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {**fields, **{name: unseal(key, fields.get(name)) for name in names if name in fields}}
