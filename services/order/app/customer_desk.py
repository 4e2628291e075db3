"""The order desk's customer commands: register (and index for search), change, merge.

Load, decide (services/order/domain/customer.py), seal what is personal, record; then make
the customer findable by the blind indexes of what they are now, in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from libs.events.order import CustomerDetailsChanged
from libs.runtime.db import is_transient
from libs.runtime.personal_data import seal, unseal
from libs.runtime.service import ServiceRuntime
from libs.runtime.uow import MessageContext, UnitOfWork
from services.order.adapters import customer_desk
from services.order.adapters.personal_data import KEYS
from services.order.app.handlers import OrderHandlers
from services.order.domain import customer as customer_domain
from services.order.domain.customer import CUSTOMER, Customer

log = logging.getLogger(__name__)
INDEX_BATCH = 200


async def register(uow: UnitOfWork, handlers: OrderHandlers, registration: dict[str, Any]) -> bool:
    """POST /customers: the registration as before, then its name indexed for search."""
    created = await handlers.register_customer(uow, **registration)
    if created:
        await customer_desk.index_customer(
            await uow.db(),
            registration["customer_id"],
            registration["name"],
            registration["email"],
            registration["phone"],
        )
    return created


async def _opened(uow: UnitOfWork, customer_id: str) -> tuple[Customer, int]:
    state, version = await uow.load(CUSTOMER, customer_id)
    if state.exists and not state.erased:
        key = (await KEYS.for_reading(await uow.db(), [customer_id]))[customer_id]
        state = replace(
            state,
            name=unseal(key, state.name) or "",
            email=unseal(key, state.email),
            phone=unseal(key, state.phone),
        )
    return state, version


def _normalised(changes: dict[str, str | None]) -> dict[str, str | None]:
    """A person's entries as the customer records them: email lower-cased, phone in E.164
    (or refused naming the field), name trimmed."""
    normalised = dict(changes)
    if normalised.get("email"):
        normalised["email"] = customer_domain.checked_email(str(normalised["email"]))
    if normalised.get("phone"):
        normalised["phone"] = customer_domain.checked_phone(str(normalised["phone"]))
    for field in ("email", "phone", "region"):
        if field in normalised and not (normalised[field] or "").strip():
            normalised[field] = None  # "" removes it, as null does
    if "name" in normalised:
        normalised["name"] = (normalised["name"] or "").strip()
    return normalised


async def change(uow: UnitOfWork, customer_id: str, changes: dict[str, str | None], actor: str) -> list[str]:
    """PATCH /customers/{id}: the fields that changed (none: nothing recorded)."""
    state, version = await _opened(uow, customer_id)
    events = customer_domain.decide_change(state, customer_id, _normalised(changes), actor)
    if not events:
        return []
    changed = events[0]
    if not isinstance(changed, CustomerDetailsChanged):
        raise TypeError("a customer change decided something other than CustomerDetailsChanged")
    db = await uow.db()
    key = await KEYS.for_writing(db, customer_id, uow.after_commit)
    sealed = changed.model_copy(
        update={f: seal(key, getattr(changed, f)) for f in ("name", "email", "phone") if f in changed.changed}
    )
    await uow.record(CUSTOMER, customer_id, version, [sealed])
    await uow.flush()  # the customers row holds the new values: index what they are now
    now = customer_domain.evolve(state, changed)
    await customer_desk.index_customer(db, customer_id, now.name, now.email, now.phone)
    return list(changed.changed)


async def merge(uow: UnitOfWork, customer_id: str, into: str, reason: str, actor: str) -> bool:
    """POST /customers/{id}/merge: True if merged now, False if it was merged into `into` before."""
    duplicate, duplicate_version = await uow.load(CUSTOMER, customer_id)
    survivor, survivor_version = await uow.load(CUSTOMER, into)
    on_duplicate, on_survivor = customer_domain.decide_merge(
        duplicate, survivor, customer_id, into, reason, actor
    )
    if not on_duplicate:
        return False
    await uow.record(CUSTOMER, customer_id, duplicate_version, on_duplicate)
    await uow.record(CUSTOMER, into, survivor_version, on_survivor)
    return True


async def index_customers_registered_before(runtime: ServiceRuntime, retry_seconds: float = 5.0) -> None:
    """Background loop: make the customers registered before name search findable (by name,
    and by email and phone in their current normalised form), a batch per transaction, then
    idle. Replicas share the rows (SKIP LOCKED); a restart finds what is left."""
    context = MessageContext(correlation_id="customer-index", actor="service:order-customer-index")
    while True:
        try:
            indexed = INDEX_BATCH
            while indexed == INDEX_BATCH:
                indexed = await runtime.execute(context, _index_batch)
                if indexed:
                    log.info("indexed %d customers registered before name search", indexed)
            await asyncio.Event().wait()  # every customer is indexed when registered from now on
        except Exception as error:
            log.warning("indexing customers failed: %s", error, exc_info=not is_transient(error))
            await asyncio.sleep(retry_seconds)


async def _index_batch(uow: UnitOfWork) -> int:
    return await customer_desk.index_unindexed(await uow.db(), INDEX_BATCH)
