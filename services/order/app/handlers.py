"""Order use cases: place (HTTP or intake topic, app/intake.py), person decisions, participant replies and
deadlines. Each runs in one unit of work: load the order, ask the saga, record its events and
queue its commands."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

from sqlalchemy import text

from libs.domain import DomainError, NotFound
from libs.events import Decoded
from libs.events.base import DomainEvent
from libs.events.inventory import CreateShipments
from libs.events.order import (
    CustomerRegistered,
    OrderApproved,
    OrderAwaitingStock,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderCreditLimitOverridden,
    OrderHeld,
    OrderNeedsAttention,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRejected,
    OrderReplyIgnored,
    OrderStockWaitOverdue,
    SubmitOrder,
)
from libs.events.production import ProductionOrderCreated, is_production_order_id
from libs.runtime.auth import Forbidden
from libs.runtime.db import is_transient
from libs.runtime.metrics import NEEDS_ATTENTION, SAGA_OUTCOMES
from libs.runtime.personal_data import unseal
from libs.runtime.service import ServiceRuntime
from libs.runtime.uow import MessageContext, UnitOfWork
from services.order.adapters import personal_data, projections, queries
from services.order.adapters.personal_data import KEYS
from services.order.domain import customer as customer_domain
from services.order.domain import desk, saga
from services.order.domain.order import ORDER, Order, evolve
from services.order.domain.review import ReviewFacts
from services.order.domain.saga import Reaction, SagaPolicy

log = logging.getLogger(__name__)
# Saga outcomes and important transitions, one line each (order id, status, reason).
saga_log = logging.getLogger("ordermesh.saga")
# Overriding a customer's credit limit for one order is a credit decision: finance's.
CREDIT_OVERRIDE = "credit:grant"

OUTCOME_EVENTS = {
    "OrderConfirmed": "confirmed",
    "OrderCompleted": "completed",
    "OrderCancelled": "cancelled",
    "OrderRejected": "rejected",
}


@dataclass(frozen=True)
class Placement:
    order_id: str
    status: str
    created: bool
    # Why review held the order for a person (status on_hold); empty otherwise.
    hold_reasons: tuple[str, ...] = ()


def submission_keys(submission: SubmitOrder) -> list[str]:
    """What identifies a submission: its Idempotency-Key and the channel's own reference."""
    keys = []
    if submission.idempotency_key:
        keys.append(f"idem:{submission.idempotency_key}")
    if submission.external_id:
        keys.append(f"ext:{submission.channel}:{submission.external_id}")
    return keys


def body_hash(submission: SubmitOrder) -> str:
    body = submission.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class OrderHandlers:
    policy: SagaPolicy
    duplicate_window: timedelta
    # Deadlines of the order's other aggregates, by the prefix of their kind ("return:<id>"):
    # the saga_deadlines table and its loop serve them too.
    other_deadlines: dict[str, Callable[[UnitOfWork, str, str], Awaitable[None]]] = field(
        default_factory=dict
    )

    async def apply(self, uow: UnitOfWork, order: Order, version: int, reaction: Reaction) -> None:
        if reaction.events:
            await uow.record(ORDER, order.order_id, version, reaction.events)
        for outgoing in reaction.commands:
            command = outgoing.command
            if isinstance(command, CreateShipments):
                command = await _with_address_opened(uow, order, command)
            # Every command the saga sends is about this order, and keyed by it.
            await uow.send(command, order.order_id, uuid5(NAMESPACE_URL, outgoing.dedupe_key))
        for event in reaction.events:
            uow.after_commit(partial(_report_outcome, order.order_id, event))

    # -- placing -------------------------------------------------------------------------

    async def place(self, uow: UnitOfWork, submission: SubmitOrder) -> Placement:
        keys = submission_keys(submission)
        order_id = str(uuid5(NAMESPACE_URL, f"ordermesh:{keys[0]}")) if keys else str(uuid4())
        customer = submission.customer
        skus = sorted({line.sku for line in submission.lines})
        db = await uow.db()
        contact = await _contact(db, customer.email, customer.phone)
        lookup = await queries.placement_lookup(db, keys, customer.id, contact, skus)
        if keys:
            digest = body_hash(submission)
            if lookup.earlier is not None:
                earlier_order_id, earlier_digest = lookup.earlier
                if earlier_digest != digest:
                    raise DomainError(
                        "idempotency_conflict",
                        "this idempotency key (or channel + external_id) was used for a different"
                        " order; send a new key for a new order",
                    )
                existing, _ = await uow.load(ORDER, earlier_order_id)
                return Placement(earlier_order_id, existing.status, False, existing.hold_reasons)
            await queries.claim_submission_keys(await uow.db(), keys, order_id, digest)
        known = lookup.known_customer
        # A registered customer, else the channel's own customer id, else a guest seen before
        # with this email or phone, else a new guest (found by that contact from now on).
        customer_id = known[0] if known else customer.id or lookup.guest_id
        new_guest = [] if customer_id else [i for i in (contact.email_index, contact.phone_index) if i]
        customer_id = customer_id or customer_domain.guest_id(order_id)
        key = await KEYS.for_writing(db, customer_id, uow.after_commit, new_guest)
        placed = OrderPlaced(
            order_id=order_id,
            channel=submission.channel,
            customer_id=customer_id,
            external_id=submission.external_id,
            customer=personal_data.sealed_customer(key, customer),
            lines=submission.lines,
            currency=submission.currency,
            payment_terms=submission.payment_terms,
            shipping=personal_data.sealed_shipping(key, submission.shipping),
            subtotal=sum((line.unit_price * line.quantity for line in submission.lines), Decimal("0")),
            unknown_skus=tuple(sku for sku in skus if sku not in lookup.products),
            weight_kg=_weight(submission, lookup.products),
        )
        facts = ReviewFacts(
            customer_blocked=bool(known and known[1]),
            # issue 10 (on-account terms): a registered customer or earlier guest found by
            # email/phone, not by the id the channel sent
            customer_matched_by_contact_only=customer_id != customer.id
            and (known is not None or customer_id == lookup.guest_id),
            possible_duplicate_of=await self._recent_duplicate(uow, placed),
            list_prices={
                sku: price
                for sku, entry in lookup.products.items()
                if (price := entry.list_prices.get(submission.currency)) is not None
            },
        )
        reaction = saga.start(placed, facts, self.policy, uow.now)
        await self.apply(uow, Order(order_id=order_id), 0, reaction)
        final = ORDER.replay(reaction.events)
        return Placement(order_id, final.status, True, final.hold_reasons)

    async def _recent_duplicate(self, uow: UnitOfWork, placed: OrderPlaced) -> str | None:
        fingerprint = projections.fingerprint(placed)
        # Orders placed earlier in this same unit of work (a consumed batch) are not in the
        # orders table until it flushes.
        for event in uow.recorded:
            if isinstance(event, OrderPlaced) and projections.fingerprint(event) == fingerprint:
                return event.order_id
        return await queries.recent_duplicate(
            await uow.db(), fingerprint, placed.order_id, uow.now - self.duplicate_window
        )

    # -- people --------------------------------------------------------------------------

    async def _load_existing(self, uow: UnitOfWork, order_id: str) -> tuple[Order, int]:
        order, version = await uow.load(ORDER, order_id)
        if not order.exists:
            raise NotFound("unknown_order", f"order {order_id} does not exist")
        return order, version

    async def approve(
        self, uow: UnitOfWork, order_id: str, actor: str, may_override_credit: bool = False
    ) -> Order:
        """`may_override_credit`: the caller holds CREDIT_OVERRIDE, which approving an order
        held over its customer's credit limit needs besides the right to decide on orders."""
        order, version = await self._load_existing(uow, order_id)
        if order.change is not None and order.held_at == "change":
            # A change (amendment) held for a person: over the credit limit needs finance.
            if order.change.awaiting == "credit" and not may_override_credit:
                raise Forbidden(
                    f"order {order_id}'s change {order.change.change_id} is held over its customer's"
                    f" credit limit: approving it needs the permission {CREDIT_OVERRIDE} (finance)",
                    missing_permission=CREDIT_OVERRIDE,
                )
            reaction = desk.approve_change(order, actor, uow.now, self.policy)
            await self.apply(uow, order, version, reaction)
            return _after(order, reaction)
        if order.held_for_credit and not may_override_credit:
            raise Forbidden(
                f"order {order_id} is held over its customer's credit limit: approving it needs"
                f" the permission {CREDIT_OVERRIDE} (finance)",
                missing_permission=CREDIT_OVERRIDE,
            )
        reaction = saga.approve(order, actor, self.policy, uow.now)
        await self.apply(uow, order, version, reaction)
        return _after(order, reaction)

    async def reject(self, uow: UnitOfWork, order_id: str, reason: str, actor: str) -> Order:
        order, version = await self._load_existing(uow, order_id)
        if order.change is not None and order.held_at == "change":
            reaction = desk.reject_change(order, reason, actor, uow.now, self.policy)
        else:
            reaction = saga.reject(order, reason, actor, uow.now, self.policy)
        await self.apply(uow, order, version, reaction)
        return _after(order, reaction)

    async def cancel(self, uow: UnitOfWork, order_id: str, reason: str, actor: str) -> Order:
        order, version = await self._load_existing(uow, order_id)
        reaction = saga.cancel(order, reason, actor, uow.now, self.policy)
        await self.apply(uow, order, version, reaction)
        return _after(order, reaction)

    # -- participants and deadlines ------------------------------------------------------

    async def on_participant_event(self, uow: UnitOfWork, decoded: Decoded) -> None:
        order_id: str = decoded.message.order_id  # type: ignore[attr-defined]
        if is_production_order_id(order_id):
            return  # inventory's answer to production (its components), not to an order
        order, version = await uow.load(ORDER, order_id)
        reply_id = str(decoded.envelope.event_id)
        if not order.exists:
            unknown = f"{decoded.envelope.event_type} {reply_id} names unknown order {order_id}"
            uow.after_commit(partial(log.warning, unknown))
            return
        reaction = Reaction()
        if isinstance(decoded.message, desk.CHANGE_REPLIES):
            reaction = desk.react(order, decoded.message, uow.now, self.policy)
        if not reaction.events:  # not the change's: the saga's, or recorded as ignored
            reaction = saga.react(order, decoded.message, uow.now, self.policy, reply_id)
        await self.apply(uow, order, version, reaction)

    async def on_production_planned(self, uow: UnitOfWork, decoded: Decoded) -> None:
        """Make-to-order: the order's timeline names the production order made for it."""
        created = decoded.message
        if not isinstance(created, ProductionOrderCreated) or created.sales_order_id is None:
            return
        order, version = await uow.load(ORDER, created.sales_order_id)
        await self.apply(uow, order, version, saga.production_planned(order, created))

    async def on_product_changed(self, uow: UnitOfWork, decoded: Decoded) -> None:
        """The order service's copy of the catalogue (weights, list prices) follows inventory's."""
        await queries.remember_product(
            await uow.db(), decoded.envelope.payload, decoded.envelope.aggregate_version
        )

    async def on_deadline(self, uow: UnitOfWork, order_id: str, kind: str) -> None:
        prefix, _, rest = kind.partition(":")
        if (other := self.other_deadlines.get(prefix)) is not None:
            await other(uow, order_id, rest)
            return
        order, version = await uow.load(ORDER, order_id)
        if kind == desk.DEADLINE:
            reaction = desk.chase(order, uow.now, self.policy)
        else:
            reaction = saga.deadline_reached(order, kind, uow.now, self.policy)
        await self.apply(uow, order, version, reaction)

    # -- customers -----------------------------------------------------------------------

    async def register_customer(
        self,
        uow: UnitOfWork,
        customer_id: str,
        name: str,
        email: str | None,
        phone: str | None,
        region: str | None,
        blocked: bool,
    ) -> bool:
        """Register a customer: True; False if registered before with exactly this (nothing
        recorded); refused naming the differences if registered with other details."""
        state, version = await uow.load(customer_domain.CUSTOMER, customer_id)
        db = await uow.db()
        if state.exists and not state.erased:
            key = (await KEYS.for_reading(db, [customer_id]))[customer_id]
            state = replace(
                state,
                name=unseal(key, state.name) or "",
                email=unseal(key, state.email),
                phone=unseal(key, state.phone),
            )
        events = customer_domain.decide_register(state, customer_id, name, email, phone, region, blocked)
        if not events:
            return False
        state = customer_domain.CUSTOMER.replay(events)
        if blocked:
            events += customer_domain.decide_block(state, customer_id, True, "blocked at registration")
        key = await KEYS.for_writing(db, customer_id, uow.after_commit)
        registered = events[0]
        if not isinstance(registered, CustomerRegistered):
            raise TypeError("customer registration decided something other than CustomerRegistered first")
        events[0] = personal_data.sealed_registration(key, registered)
        await uow.record(customer_domain.CUSTOMER, customer_id, version, events)
        await uow.flush()  # the customers row exists: now it can be found by email and phone
        contact = await _contact(db, registered.email, registered.phone)
        await queries.index_customer(db, customer_id, contact)
        return True

    async def erase_customer(
        self, uow: UnitOfWork, customer_id: str, reason: str, actor: str
    ) -> customer_domain.Customer:
        """Crypto-shred a customer (registered, or a guest's id): destroy their key and blind
        indexes, and record CustomerErased. Their orders and events stay, amounts and all;
        their contact fields read as erased from then on."""
        state, version = await uow.load(customer_domain.CUSTOMER, customer_id)
        db = await uow.db()
        had_key = await KEYS.destroy(db, customer_id)
        known = had_key or await queries.customer_known(db, customer_id)
        events = customer_domain.decide_erase(state, customer_id, known, reason, actor)
        await uow.record(customer_domain.CUSTOMER, customer_id, version, events)
        # This replica forgets the key at once (again after the commit, in case a read
        # cached it meanwhile); the others within KEYS.ttl.
        uow.after_commit(partial(KEYS.forget, customer_id))
        for event in events:
            state = customer_domain.evolve(state, event)
        return state

    async def set_blocked(self, uow: UnitOfWork, customer_id: str, blocked: bool, reason: str) -> None:
        state, version = await uow.load(customer_domain.CUSTOMER, customer_id)
        events = customer_domain.decide_block(state, customer_id, blocked, reason)
        await uow.record(customer_domain.CUSTOMER, customer_id, version, events)


async def _contact(db: Any, email: str | None, phone: str | None) -> queries.Contact:
    email, phone = customer_domain.normalise_email(email), customer_domain.normalise_phone(phone)
    email_index, phone_index = await personal_data.contact_indexes(db, email, phone)
    return queries.Contact(email, phone, email_index, phone_index)


async def _with_address_opened(uow: UnitOfWork, order: Order, command: CreateShipments) -> CreateShipments:
    """The warehouse ships to the address, so it gets it in clear (the order keeps it sealed);
    after an erasure the lines read as erased."""
    if order.placed is None or command.shipping.address is None:
        return command
    subject = order.placed.customer_id
    key = (await KEYS.for_reading(await uow.db(), [subject]))[subject]
    return command.model_copy(update={"shipping": personal_data.opened_shipping(key, command.shipping)})


def _weight(submission: SubmitOrder, products: dict[str, queries.CatalogueEntry]) -> Decimal | None:
    """The lines' total weight, when the catalogue knows every SKU (else no weight at all:
    a partial weight would make a shipping fee look right when it is not)."""
    if any(line.sku not in products for line in submission.lines):
        return None
    return sum((products[line.sku].weight_kg * line.quantity for line in submission.lines), Decimal("0"))


def _report_outcome(order_id: str, event: DomainEvent) -> None:
    """Metrics and log lines for the saga's outcomes: run after the commit, so an attempt
    that is rolled back and run again (a conflict, a group commit re-run) counts once."""
    if (outcome := OUTCOME_EVENTS.get(event.message_type)) is not None:
        SAGA_OUTCOMES.labels(outcome).inc()
    if (transition := _transition(event)) is not None:
        level, status, reason = transition
        saga_log.log(
            level,
            "order %s %s%s",
            order_id,
            status,
            f": {reason}" if reason else "",
            extra={"order_id": order_id, "status": status, "reason": reason},
        )
    if isinstance(event, OrderStockWaitOverdue):
        NEEDS_ATTENTION.inc()
    elif isinstance(event, OrderNeedsAttention):
        NEEDS_ATTENTION.inc()
        log.error("order %s needs attention: %s", order_id, event.reason, extra={"order_id": order_id})
    elif isinstance(event, OrderReplyIgnored):
        log.info(
            "order %s: %s %s ignored (stage %s)",
            order_id,
            event.reply_type,
            event.reply_id,
            event.stage,
            extra={"order_id": order_id},
        )


def _by(actor: str, reason: str) -> str:
    """The saga's own reasons name SKUs, amounts and references; a person's is free text that
    may name anyone, so it stays in the timeline, out of the logs."""
    return (
        reason if actor == "rules" else f"by {actor.partition(':')[0] or 'a person'} (reason in the timeline)"
    )


def _transition(event: DomainEvent) -> tuple[int, str, str] | None:  # noqa: PLR0911 - one per event
    """The log level, status and reason of a saga outcome or important transition, if `event`
    is one."""
    match event:
        case OrderConfirmed():
            return logging.INFO, "confirmed", ""
        case OrderCompleted():
            return logging.INFO, "completed", ""
        case OrderCancelled():
            return logging.INFO, "cancelled", _by(event.cancelled_by, event.reason)
        case OrderRejected():
            return logging.INFO, "rejected", _by(event.rejected_by, event.reason)
        case OrderHeld():
            return logging.INFO, "on_hold", "; ".join(event.reasons)
        case OrderApproved() if event.approved_by != "rules":
            return logging.INFO, "approved", "held order approved by a person"
        case OrderCreditLimitOverridden():
            return logging.INFO, "approved", "credit limit overridden by finance"
        case OrderAwaitingStock():
            missing = ", ".join(f"{m.sku} (short {m.quantity})" for m in event.missing)
            return logging.INFO, "awaiting_stock", f"backordered: {missing}"
        case OrderStockWaitOverdue():
            return logging.WARNING, "needs_attention", event.reason
        case OrderPaymentFailed():
            attempts = f"attempt {event.attempt} of {event.max_attempts}"
            return logging.INFO, "awaiting_payment", f"payment {event.reference} declined ({attempts})"
    return None


def _after(order: Order, reaction: Reaction) -> Order:
    for event in reaction.events:
        order = evolve(order, event)
    return order


async def run_deadlines(runtime: ServiceRuntime, handlers: OrderHandlers, poll_seconds: float) -> None:
    """Fire persisted saga deadlines that are due, one per transaction, oldest first.

    SKIP LOCKED lets several replicas share the work; a restarted service simply finds the
    rows again. A deadline whose handling fails for a reason of its own is pushed back a
    minute (and logged) so it cannot block the others.
    """
    pause = poll_seconds
    while True:
        try:
            fired = await _fire_next_deadline(runtime, handlers)
            pause = poll_seconds
        except Exception as error:
            fired = False
            if is_transient(error):
                pause = min(pause * 2, 5.0)
            log.warning("deadline handling failed: %s", error, exc_info=not is_transient(error))
        if not fired:
            await asyncio.sleep(pause)


async def _fire_next_deadline(runtime: ServiceRuntime, handlers: OrderHandlers) -> bool:
    context = MessageContext(correlation_id="deadline", actor="service:order-deadlines")
    async with runtime.unit_of_work(context) as uow:
        row = (
            await uow.conn.execute(
                text(
                    "SELECT order_id, kind FROM saga_deadlines WHERE due_at <= :now"
                    " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                ),
                {"now": uow.now},
            )
        ).first()
        if row is None:
            return False
        uow.context = MessageContext(correlation_id=row.order_id, actor="service:order-deadlines")
        await uow.conn.execute(
            text("DELETE FROM saga_deadlines WHERE order_id = :o AND kind = :k"),
            {"o": row.order_id, "k": row.kind},
        )
        try:
            async with uow.conn.begin_nested():
                await handlers.on_deadline(uow, row.order_id, row.kind)
                await uow.flush()  # inside the savepoint, so a failing write is caught here too
        except Exception as error:
            if is_transient(error):
                raise
            log.error(
                "deadline %s of order %s failed; retrying in a minute",
                row.kind,
                row.order_id,
                exc_info=True,
                extra={"order_id": row.order_id},
            )
            await uow.conn.execute(
                text("INSERT INTO saga_deadlines VALUES (:o, :k, :due) ON CONFLICT DO NOTHING"),
                {"o": row.order_id, "k": row.kind, "due": uow.now + timedelta(minutes=1)},
            )
        return True
