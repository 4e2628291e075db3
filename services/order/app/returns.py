"""Return use cases: request, approve, reject and receive (the order desk and the warehouse),
and the participants' answers (inventory's restock, billing's credit note, the replacement's
reservation and shipment). Each loads the return and its order, asks the domain, and records
both streams' events and the commands in the caller's unit of work."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from uuid import NAMESPACE_URL, uuid4, uuid5

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.domain import DomainError
from libs.events import Decoded
from libs.events.order import (
    RETURN_ID_PREFIX,
    ReturnLine,
    ReturnNeedsAttention,
    ReturnResolution,
    is_return_id,
)
from libs.runtime.metrics import NEEDS_ATTENTION
from libs.runtime.uow import UnitOfWork
from services.order.adapters import returns_queries
from services.order.app.handlers import OrderHandlers
from services.order.domain import returns as domain
from services.order.domain.order import ORDER, Order
from services.order.domain.returns import RETURN, Receipt, Return, ReturnDecision, ReturnPolicy
from services.order.domain.saga import Reaction

ReplyHandler = Callable[[UnitOfWork, Decoded], Awaitable[None]]
log = logging.getLogger(__name__)


class ReturnSettings(BaseSettings):
    """OM_ORDER_RETURN_* variables."""

    model_config = SettingsConfigDict(env_prefix="OM_ORDER_RETURN_", extra="ignore")

    # How long after delivery a customer may ask to return goods (fractions allowed).
    window_days: float = Field(default=30, gt=0)
    # What a receipt asks of inventory and billing is asked again when unanswered this long,
    # up to max_attempts times; then the return needs a person.
    reply_seconds: float = Field(default=120, gt=0)
    max_attempts: int = Field(default=3, ge=1)

    def policy(self) -> ReturnPolicy:
        return ReturnPolicy(
            window=timedelta(days=self.window_days),
            reply_after=timedelta(seconds=self.reply_seconds),
            max_attempts=self.max_attempts,
        )


def return_id_for(idempotency_key: str | None) -> str:
    """Derived from the caller's Idempotency-Key when it sends one, so a retried request
    names the same return."""
    if idempotency_key:
        return RETURN_ID_PREFIX + uuid5(NAMESPACE_URL, f"return:{idempotency_key}").hex[:16].upper()
    return RETURN_ID_PREFIX + uuid4().hex[:16].upper()


@dataclass
class ReturnHandlers:
    orders: OrderHandlers
    policy: ReturnPolicy

    async def request(
        self,
        uow: UnitOfWork,
        return_id: str,
        order_id: str,
        lines: Sequence[ReturnLine],
        resolution: ReturnResolution,
        actor: str,
        sees_channel: Callable[[str], bool] = lambda _: True,
    ) -> tuple[Return, bool]:
        """The return, and whether this request created it (False: the same Idempotency-Key
        was used before, and that return is answered)."""
        existing, _ = await uow.load(RETURN, return_id)
        if existing.exists and existing.order_id != order_id:
            raise DomainError(
                "idempotency_conflict",
                f"this Idempotency-Key named return {return_id} of another order; send a new key",
            )
        if existing.exists:
            return existing, False
        order, version = await uow.load(ORDER, order_id)
        if order.placed is None or not sees_channel(order.placed.channel):
            # Another channel's order is answered as unknown: a key must not learn which ids exist.
            order = Order(order_id=order_id)
        delivered_at = await returns_queries.delivered_at(await uow.db(), order_id)
        decision = domain.decide_request(
            order, return_id, lines, resolution, actor, uow.now, delivered_at, self.policy
        )
        return await self._apply(uow, Return(return_id=return_id), 0, order, version, decision), True

    async def approve(self, uow: UnitOfWork, return_id: str, actor: str) -> Return:
        state, version = await self._load(uow, return_id)
        order, order_version = await uow.load(ORDER, state.order_id)
        decision = domain.decide_approve(state, actor)
        return await self._apply(uow, state, version, order, order_version, decision)

    async def reject(self, uow: UnitOfWork, return_id: str, reason: str, actor: str) -> Return:
        state, version = await self._load(uow, return_id)
        order, order_version = await uow.load(ORDER, state.order_id)
        decision = domain.decide_reject(state, reason, actor)
        return await self._apply(uow, state, version, order, order_version, decision)

    async def receive(
        self, uow: UnitOfWork, return_id: str, receipts: Sequence[Receipt], actor: str
    ) -> Return:
        state, version = await self._load(uow, return_id)
        order, order_version = await uow.load(ORDER, state.order_id)
        decision = domain.decide_receive(state, order, receipts, actor, uow.now, self.policy)
        return await self._apply(uow, state, version, order, order_version, decision)

    async def on_reply(self, uow: UnitOfWork, decoded: Decoded) -> None:
        """A participant's answer about a return: named by its return_id (inventory's
        restock, billing's credit note), or by the return's id in place of an order's (the
        replacement's reservation and shipment)."""
        message = decoded.message
        return_id = getattr(message, "return_id", None) or getattr(message, "order_id", "")
        if not return_id or not is_return_id(return_id):
            return  # a credit note that is not a return's
        state, version = await uow.load(RETURN, return_id)
        if not state.exists:
            return
        order, order_version = await uow.load(ORDER, state.order_id)
        await self._apply(uow, state, version, order, order_version, domain.react(state, order, message))

    async def on_deadline(self, uow: UnitOfWork, order_id: str, return_id: str) -> None:
        """A received return's participants have not all answered by its deadline."""
        state, version = await uow.load(RETURN, return_id)
        if not state.exists:
            return
        order, order_version = await uow.load(ORDER, state.order_id)
        decision = domain.chase(state, order, uow.now, self.policy)
        for event in decision.returns:
            if isinstance(event, ReturnNeedsAttention):
                uow.after_commit(partial(_needs_attention, event))
        await self._apply(uow, state, version, order, order_version, decision)

    def routing_replies(self, order_replies: ReplyHandler) -> ReplyHandler:
        """Inventory's answers about a replacement name the return's id where an order's id
        goes: those go to the return, every other one to the order saga."""

        async def route(uow: UnitOfWork, decoded: Decoded) -> None:
            if is_return_id(getattr(decoded.message, "order_id", "")):
                await self.on_reply(uow, decoded)
            else:
                await order_replies(uow, decoded)

        return route

    async def _load(self, uow: UnitOfWork, return_id: str) -> tuple[Return, int]:
        state, version = await uow.load(RETURN, return_id)
        if not state.exists:
            state = Return(return_id=return_id)
        return state, version

    async def _apply(
        self,
        uow: UnitOfWork,
        state: Return,
        version: int,
        order: Order,
        order_version: int,
        decision: ReturnDecision,
    ) -> Return:
        if decision.returns:
            await uow.record(RETURN, state.return_id, version, decision.returns)
        # The order's events and the commands go the way the saga's do (the address opened
        # for a replacement's shipment, every command keyed by the order).
        await self.orders.apply(uow, order, order_version, Reaction(decision.order, decision.commands))
        for event in decision.returns:
            state = domain.evolve(state, event)
        return state


def _needs_attention(event: ReturnNeedsAttention) -> None:
    NEEDS_ATTENTION.inc()
    log.error(
        "return %s needs attention: %s", event.return_id, event.reason, extra={"order_id": event.order_id}
    )
