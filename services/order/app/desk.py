"""The order desk's changes (services/order/domain/desk.py): amend, split, merge. Each runs in
one unit of work: load the orders, ask the desk, record every order's events and queue the
commands. The participants' answers come back through OrderHandlers.on_participant_event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import NAMESPACE_URL, uuid4, uuid5

from libs.domain import InvalidRequest, NotFound
from libs.events.base import DomainEvent
from libs.events.values import OrderLine, Shipping, require_minor_units
from libs.runtime.uow import UnitOfWork
from services.order.adapters import personal_data, queries
from services.order.adapters.personal_data import KEYS
from services.order.app.handlers import OrderHandlers
from services.order.domain import desk
from services.order.domain.order import ORDER, Order, evolve
from services.order.domain.review import ReviewFacts


def change_id_for(order_key: str, idempotency_key: str | None) -> str:
    """The same Idempotency-Key for the same order(s) names the same change."""
    if idempotency_key is None:
        return f"CHG-{uuid4().hex[:16].upper()}"
    return "CHG-" + uuid5(NAMESPACE_URL, f"change:{order_key}:{idempotency_key}").hex[:16].upper()


def new_order_id_for(change_id: str) -> str:
    """The order a split or merge makes, named by the change: asked again, the same order."""
    return str(uuid5(NAMESPACE_URL, f"ordermesh:desk:{change_id}"))


@dataclass(frozen=True)
class ChangeOutcome:
    """The order as the request left it, the change's id, and the order it made (split, merge)."""

    order: Order
    change_id: str
    new_order_id: str | None = None
    repeated: bool = False


@dataclass
class DeskHandlers:
    orders: OrderHandlers

    async def _existing(self, uow: UnitOfWork, order_id: str) -> tuple[Order, int]:
        order, version = await uow.load(ORDER, order_id)
        if not order.exists:
            raise NotFound("unknown_order", f"order {order_id} does not exist")
        return order, version

    async def _catalogue(
        self, uow: UnitOfWork, customer_id: str, lines: Sequence[OrderLine]
    ) -> queries.PlacementLookup:
        skus = sorted({line.sku for line in lines})
        return await queries.placement_lookup(
            await uow.db(), [], customer_id, queries.Contact(None, None, None, None), skus
        )

    @staticmethod
    def _weight(lookup: queries.PlacementLookup, lines: Sequence[OrderLine]) -> Decimal | None:
        if any(line.sku not in lookup.products for line in lines):
            return None
        return sum((lookup.products[line.sku].weight_kg * line.quantity for line in lines), Decimal("0"))

    async def amend(
        self,
        uow: UnitOfWork,
        order_id: str,
        lines: tuple[OrderLine, ...] | None,
        shipping: Shipping | None,
        reason: str,
        actor: str,
        idempotency_key: str | None,
    ) -> ChangeOutcome:
        order, version = await self._existing(uow, order_id)
        change_id = change_id_for(order_id, idempotency_key)
        if change_id in order.change_ids:
            return ChangeOutcome(order, change_id, repeated=True)
        placed = order.placed
        if placed is None:
            raise AssertionError("an existing order has its placement")
        if lines is not None:
            # The order's currency decides the smallest unit a price may have (JPY: whole yen).
            prices = [(("lines", i, "unit_price"), line.unit_price) for i, line in enumerate(lines)]
            try:
                require_minor_units("Amendment", placed.currency, prices)
            except ValueError as error:
                raise InvalidRequest("invalid_price", str(error)) from None
        new_lines = lines if lines is not None else placed.lines
        lookup = await self._catalogue(uow, placed.customer_id, new_lines)
        sealed = None
        if shipping is not None:
            key = await KEYS.for_writing(await uow.db(), placed.customer_id, uow.after_commit)
            sealed = personal_data.sealed_shipping(key, shipping)
        facts = ReviewFacts(
            customer_blocked=bool(lookup.known_customer and lookup.known_customer[1]),
            list_prices={
                sku: price
                for sku, entry in lookup.products.items()
                if (price := entry.list_prices.get(placed.currency)) is not None
            },
        )
        request = desk.Amendment(change_id, lines, sealed, self._weight(lookup, new_lines), reason, actor)
        reaction = desk.amend(order, request, facts, uow.now, self.orders.policy)
        await self.orders.apply(uow, order, version, reaction)
        return ChangeOutcome(_folded(order, reaction.events), change_id)

    async def split(
        self,
        uow: UnitOfWork,
        order_id: str,
        moved: dict[str, int],
        reason: str,
        actor: str,
        idempotency_key: str | None,
    ) -> ChangeOutcome:
        order, version = await self._existing(uow, order_id)
        change_id = change_id_for(order_id, idempotency_key)
        new_order_id = new_order_id_for(change_id)
        if change_id in order.change_ids:
            return ChangeOutcome(order, change_id, new_order_id, repeated=True)
        placed = order.placed
        if placed is None:
            raise AssertionError("an existing order has its placement")
        goes = [line for line in placed.lines if line.sku in moved]
        lookup = await self._catalogue(uow, placed.customer_id, goes)
        weight = None
        if all(sku in lookup.products for sku in moved):
            weight = sum((lookup.products[sku].weight_kg * q for sku, q in moved.items()), Decimal("0"))
        source, target = desk.split(
            order,
            moved,
            desk.NewOrder(new_order_id, weight),
            change_id,
            reason,
            actor,
            uow.now,
            self.orders.policy,
        )
        await self.orders.apply(uow, order, version, source)
        await self.orders.apply(uow, Order(order_id=new_order_id), 0, target)
        return ChangeOutcome(_folded(order, source.events), change_id, new_order_id)

    async def merge(
        self, uow: UnitOfWork, order_ids: Sequence[str], reason: str, actor: str, idempotency_key: str | None
    ) -> ChangeOutcome:
        change_id = change_id_for(",".join(sorted(order_ids)), idempotency_key)
        new_order_id = new_order_id_for(change_id)
        loaded = [await self._existing(uow, order_id) for order_id in order_ids]
        orders = [order for order, _ in loaded]
        if all(change_id in order.change_ids for order in orders):
            merged, _ = await uow.load(ORDER, new_order_id)
            return ChangeOutcome(merged, change_id, new_order_id, repeated=True)
        placements = [order.placed for order in orders if order.placed is not None]
        customer_id = placements[0].customer_id
        key = (await KEYS.for_reading(await uow.db(), [customer_id]))[customer_id]
        addresses = {
            personal_data.opened_shipping(key, p.shipping).model_dump_json(include={"address"})
            for p in placements
        }
        lines = [line for p in placements for line in p.lines]
        lookup = await self._catalogue(uow, customer_id, lines)
        sources, target = desk.merge(
            orders,
            len(addresses) == 1,
            desk.NewOrder(new_order_id, self._weight(lookup, lines)),
            change_id,
            reason,
            actor,
            uow.now,
            self.orders.policy,
        )
        for order, version in loaded:
            await self.orders.apply(uow, order, version, sources[order.order_id])
        await self.orders.apply(uow, Order(order_id=new_order_id), 0, target)
        return ChangeOutcome(ORDER.replay(target.events), change_id, new_order_id)


def _folded(order: Order, events: Sequence[DomainEvent]) -> Order:
    for event in events:
        order = evolve(order, event)
    return order
