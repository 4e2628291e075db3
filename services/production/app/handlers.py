"""Production use cases: each loads aggregates, asks the domain, records the events in the
caller's unit of work (one transaction) and queues the commands inventory is sent.

Inventory is reached by commands and its events only: components are reserved with
ReserveStock under the production order's id (inventory keeps one reservation per id, for a
sales order or a production order alike), consumed with ConsumeStock, released with
ReleaseStock; finished goods are put into stock with ReceiveStock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from uuid import NAMESPACE_URL, uuid4, uuid5

from libs.domain import InvalidRequest, NotFound
from libs.events import Decoded
from libs.events.base import DomainEvent
from libs.events.inventory import (
    LowStockDetected,
    ProductRegistered,
    ProductUpdated,
    ReservationConsumed,
    StockReceived,
    StockReserved,
    StockShortage,
    WarehouseRegistered,
)
from libs.events.order import OrderStatusChanged
from libs.events.production import (
    PRODUCTION_ORDER_ID_PREFIX,
    BomComponent,
    BomOperation,
    Disposition,
    Origin,
    ProductionCompleted,
    ProductionEvent,
    ProductionOrderCreated,
    ProductionTaskCompleted,
    QualityCheckFailed,
    WorkCalendar,
    is_production_order_id,
)
from libs.runtime.uow import UnitOfWork
from services.production.adapters import queries
from services.production.domain import bom as bom_domain
from services.production.domain import production_order as po
from services.production.domain import work_center as work_center_domain
from services.production.domain.bom import BOM
from services.production.domain.production_order import PRODUCTION_ORDER, ProductionOrder
from services.production.domain.saga import AFTER_COMPLETION, request_for
from services.production.domain.schedule import behind, schedule

log = logging.getLogger(__name__)

# Sales order statuses that end its demand: what production makes for it is no longer wanted.
DEMAND_ENDED = frozenset({"cancelled", "rejected"})


@dataclass(frozen=True)
class ProductionPolicy:
    lead_time: timedelta = timedelta(days=7)
    cancel_in_progress: bool = False
    default_warehouse: str | None = None


def new_production_order_id(seed: str | None = None) -> str:
    """A fresh id, or one derived from what caused it (the same cause: the same id)."""
    unique = uuid5(NAMESPACE_URL, f"ordermesh:production:{seed}") if seed else uuid4()
    return f"{PRODUCTION_ORDER_ID_PREFIX}{unique.hex[:20]}"


async def _send_step(uow: UnitOfWork, step: str, state: ProductionOrder) -> None:
    """Send the command the production saga's table names for `step`, if the order needs it.
    The same step of the same production order has the same command id: a resent one is
    dropped by inventory's inbox."""
    request = request_for(step, state)
    if request is not None:
        command, key = request
        command_id = uuid5(NAMESPACE_URL, f"ordermesh:production:{step}:{state.production_order_id}")
        await uow.send(command, key, command_id)


# -- master data -------------------------------------------------------------------------------


async def register_work_center(
    uow: UnitOfWork, code: str, name: str, capacity_minutes_per_day: int, calendar: WorkCalendar
) -> bool:
    state, version = await uow.load(work_center_domain.WORK_CENTER, code)
    events = work_center_domain.decide_register(state, code, name, capacity_minutes_per_day, calendar)
    await uow.record(work_center_domain.WORK_CENTER, code, version, events)
    return bool(events)


async def define_bom(
    uow: UnitOfWork,
    sku: str,
    components: Sequence[BomComponent],
    output_quantity: int,
    scrap_rate: Decimal,
    operations: Sequence[BomOperation],
) -> bool:
    state, version = await uow.load(BOM, sku)
    others = {s: c for s, c in (await queries.bom_components(uow.conn)).items() if s != sku}
    centres = set(await queries.work_centers(uow.conn))
    catalogue = await queries.catalogue_says_manufactured(uow.conn, sku)
    events = bom_domain.decide_define(
        state, sku, components, output_quantity, scrap_rate, operations, others, centres, catalogue
    )
    await uow.record(BOM, sku, version, events)
    return bool(events)


# -- production orders -------------------------------------------------------------------------


async def create_production_order(
    uow: UnitOfWork,
    production_order_id: str,
    sku: str,
    quantity: int,
    warehouse: str,
    due: datetime,
    origin: Origin,
    sales_order_id: str | None = None,
    parent_production_order_id: str | None = None,
    replaces: str | None = None,
) -> ProductionOrder:
    """Create a production order and ask inventory for its components."""
    bom, _ = await uow.load(BOM, sku)
    state, version = await uow.load(PRODUCTION_ORDER, production_order_id)
    events = po.decide_create(
        state,
        production_order_id,
        bom,
        quantity,
        warehouse,
        due,
        origin,
        sales_order_id,
        parent_production_order_id,
        replaces,
    )
    if not events:
        return state
    await uow.record(PRODUCTION_ORDER, production_order_id, version, events)
    state = _folded(state, events)
    await _send_step(uow, "reserve_components", state)
    reschedule_before_commit(uow)
    return state


async def create_by_hand(
    uow: UnitOfWork, sku: str, quantity: int, warehouse: str, due: datetime
) -> ProductionOrder:
    if not await queries.warehouse_known(uow.conn, warehouse):
        raise InvalidRequest("unknown_warehouse", f"warehouse {warehouse!r} is not registered in inventory")
    bom, _ = await uow.load(BOM, sku)
    if not bom.exists:
        raise InvalidRequest("not_manufactured", f"{sku} has no bill of materials: PUT /boms/{sku} first")
    return await create_production_order(
        uow, new_production_order_id(), sku, quantity, warehouse, due, "manual"
    )


async def cancel_production_order(
    uow: UnitOfWork, production_order_id: str, reason: str, stop_in_progress: bool
) -> ProductionOrder:
    state, version = await uow.load(PRODUCTION_ORDER, production_order_id)
    events = po.decide_cancel(state, reason, stop_in_progress)
    if not events:
        return state
    await uow.record(PRODUCTION_ORDER, production_order_id, version, events)
    state = _folded(state, events)
    await _send_step(uow, "release_components", state)
    reschedule_before_commit(uow)
    return state


async def _act(
    uow: UnitOfWork,
    production_order_id: str,
    decide: Callable[[ProductionOrder], list[DomainEvent]],
    policy: ProductionPolicy,
) -> ProductionOrder:
    state, version = await uow.load(PRODUCTION_ORDER, production_order_id)
    if not state.exists:
        raise NotFound("unknown_production_order", f"no production order {production_order_id}")
    events = decide(state)
    if not events:
        return state
    await uow.record(PRODUCTION_ORDER, production_order_id, version, events)
    state = _folded(state, events)
    if any(isinstance(e, ProductionCompleted) for e in events):
        await _after_completion(uow, state, policy)
    if any(isinstance(e, REPLANNED_AFTER) for e in events):
        reschedule_before_commit(uow)
    return state


async def assign_task(
    uow: UnitOfWork, task_id: str, assignee: str, policy: ProductionPolicy
) -> ProductionOrder:
    return await _act(
        uow, po.production_order_of_task(task_id), lambda s: po.decide_assign(s, task_id, assignee), policy
    )


async def start_task(uow: UnitOfWork, task_id: str, policy: ProductionPolicy) -> ProductionOrder:
    return await _act(
        uow, po.production_order_of_task(task_id), lambda s: po.decide_start(s, task_id), policy
    )


async def record_progress(
    uow: UnitOfWork, task_id: str, quantity_done: int, policy: ProductionPolicy
) -> ProductionOrder:
    return await _act(
        uow,
        po.production_order_of_task(task_id),
        lambda s: po.decide_progress(s, task_id, quantity_done),
        policy,
    )


async def complete_task(uow: UnitOfWork, task_id: str, policy: ProductionPolicy) -> ProductionOrder:
    return await _act(
        uow, po.production_order_of_task(task_id), lambda s: po.decide_complete_task(s, task_id), policy
    )


async def record_quality_check(
    uow: UnitOfWork,
    production_order_id: str,
    check_id: str,
    operation: str | None,
    passed: int,
    failed: int,
    disposition: Disposition | None,
    measurements: dict[str, Decimal],
    note: str,
    policy: ProductionPolicy,
) -> ProductionOrder:
    return await _act(
        uow,
        production_order_id,
        lambda s: po.decide_quality_check(
            s, check_id, operation, passed, failed, disposition, measurements, note
        ),
        policy,
    )


async def _after_completion(uow: UnitOfWork, state: ProductionOrder, policy: ProductionPolicy) -> None:
    """Made: its components leave stock (scrapped units used them too), the passed units go
    into stock, and a make-to-order shortfall gets a production order of its own, so the
    demand it was for is never forgotten."""
    order_id = state.production_order_id
    for step in AFTER_COMPLETION:
        await _send_step(uow, step, state)
    shortfall = state.quantity - state.passed
    if shortfall and state.origin == "make_to_order":
        await create_production_order(
            uow,
            new_production_order_id(f"shortfall:{order_id}"),
            state.sku,
            shortfall,
            state.warehouse,
            max(state.due or uow.now, uow.now),
            "make_to_order",
            state.sales_order_id,
            state.parent_production_order_id,
            replaces=order_id,
        )


# -- inventory's and the order service's events -------------------------------------------------


async def on_components_reserved(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    reply = decoded.message
    if not isinstance(reply, StockReserved) or not is_production_order_id(reply.order_id):
        return  # a sales order's reservation
    state, version = await uow.load(PRODUCTION_ORDER, reply.order_id)
    events = po.decide_components_reserved(state, reply.allocations)
    if events:
        await uow.record(PRODUCTION_ORDER, reply.order_id, version, events)
        reschedule_before_commit(uow)


async def on_shortage(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    """A reservation fell short. A production order's components: it waits for them. Either
    way, each manufactured SKU among the missing is made for that demand (make-to-order)."""
    shortage = decoded.message
    if not isinstance(shortage, StockShortage):
        raise TypeError(f"on_shortage was given a {type(shortage).__name__}")
    parent: ProductionOrder | None = None
    if is_production_order_id(shortage.order_id):
        waiting, version = await uow.load(PRODUCTION_ORDER, shortage.order_id)
        if not waiting.exists:
            return
        events = po.decide_components_short(waiting, shortage.missing)
        await uow.record(PRODUCTION_ORDER, shortage.order_id, version, events)
        parent = _folded(waiting, events)
    if not shortage.backordered:
        return  # refused, not waiting: nothing will take what would be made
    made = await queries.manufactured(uow.conn, [m.sku for m in shortage.missing])
    for item in shortage.missing:
        if item.sku not in made:
            continue
        open_quantity = await queries.open_quantity_for(uow.conn, shortage.order_id, item.sku)
        open_quantity += _created_in(uow, shortage.order_id, item.sku)
        needed = item.quantity - open_quantity
        if needed <= 0:
            continue  # already being made for it (a shortage answered again)
        seed = f"make-to-order:{decoded.envelope.event_id}:{item.sku}"
        if parent is not None:
            await create_production_order(
                uow,
                new_production_order_id(seed),
                item.sku,
                needed,
                parent.warehouse,
                parent.due or uow.now + policy.lead_time,
                "make_to_order",
                sales_order_id=parent.sales_order_id,
                parent_production_order_id=parent.production_order_id,
            )
            continue
        warehouse = await queries.warehouse_for(uow.conn, shortage.region, policy.default_warehouse)
        if warehouse is None:
            log.warning("no warehouse known to make %s for order %s into", item.sku, shortage.order_id)
            continue
        await create_production_order(
            uow,
            new_production_order_id(seed),
            item.sku,
            needed,
            warehouse,
            uow.now + policy.lead_time,
            "make_to_order",
            sales_order_id=shortage.order_id,
        )


def _created_in(uow: UnitOfWork, demand_id: str, sku: str) -> int:
    """Units this unit of work already ordered for the demand (not in the tables yet)."""
    return sum(
        e.quantity
        for e in uow.recorded
        if isinstance(e, ProductionOrderCreated)
        and e.sku == sku
        and e.origin == "make_to_order"
        and (e.parent_production_order_id or e.sales_order_id) == demand_id
    )


async def on_low_stock(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    """Make-to-stock: one production order per low-stock alert of a manufactured SKU, and
    none while one for that SKU and warehouse is still open."""
    alert = decoded.message
    if not isinstance(alert, LowStockDetected):
        raise TypeError(f"on_low_stock was given a {type(alert).__name__}")
    bom, _ = await uow.load(BOM, alert.sku)
    if not bom.exists or alert.sku not in await queries.manufactured(uow.conn, [alert.sku]):
        return
    in_this_batch = any(
        isinstance(e, ProductionOrderCreated)
        and e.origin == "make_to_stock"
        and (e.sku, e.warehouse) == (alert.sku, alert.warehouse)
        for e in uow.recorded
    )
    if in_this_batch or await queries.open_to_stock(uow.conn, alert.sku, alert.warehouse):
        return
    await create_production_order(
        uow,
        new_production_order_id(f"make-to-stock:{decoded.envelope.event_id}"),
        alert.sku,
        max(alert.suggested_quantity, bom.output_quantity),
        alert.warehouse,
        uow.now + policy.lead_time,
        "make_to_stock",
    )


async def on_sales_order_status(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    """A cancelled (or rejected) sales order no longer wants what is made for it."""
    change = decoded.message
    if not isinstance(change, OrderStatusChanged) or change.status not in DEMAND_ENDED:
        return
    reason = f"sales order {change.order_id} {change.status}"
    for production_order_id in await queries.serving(uow.conn, change.order_id):
        await cancel_production_order(uow, production_order_id, reason, policy.cancel_in_progress)


async def on_components_consumed(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    reply = decoded.message
    if not isinstance(reply, ReservationConsumed) or not is_production_order_id(reply.order_id):
        return
    state, version = await uow.load(PRODUCTION_ORDER, reply.order_id)
    await uow.record(
        PRODUCTION_ORDER, reply.order_id, version, po.decide_components_consumed(state, reply.consumed)
    )


async def on_stock_received(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    received = decoded.message
    if not isinstance(received, StockReceived) or not received.receipt_id.startswith("production:"):
        return
    production_order_id = received.receipt_id.removeprefix("production:")
    state, version = await uow.load(PRODUCTION_ORDER, production_order_id)
    events = po.decide_goods_received(state, received.receipt_id, received.quantity)
    await uow.record(PRODUCTION_ORDER, production_order_id, version, events)


async def on_warehouse_registered(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    registered = decoded.message
    if isinstance(registered, WarehouseRegistered):
        await queries.remember_warehouse(uow.conn, registered.code, registered.region)


async def on_product_changed(uow: UnitOfWork, decoded: Decoded, policy: ProductionPolicy) -> None:
    """The catalogue's `manufactured` flag, which a BOM must agree with where it is known."""
    product = decoded.message
    if isinstance(product, ProductRegistered | ProductUpdated):
        await queries.remember_product(
            uow.conn, product.sku, product.manufactured, decoded.envelope.aggregate_version
        )


def event_handlers(policy: ProductionPolicy) -> dict[type, Callable[[UnitOfWork, Decoded], object]]:
    """What the production service does with inventory's and the order service's events."""
    return {
        StockReserved: partial(on_components_reserved, policy=policy),
        StockShortage: partial(on_shortage, policy=policy),
        ReservationConsumed: partial(on_components_consumed, policy=policy),
        StockReceived: partial(on_stock_received, policy=policy),
        LowStockDetected: partial(on_low_stock, policy=policy),
        WarehouseRegistered: partial(on_warehouse_registered, policy=policy),
        ProductRegistered: partial(on_product_changed, policy=policy),
        ProductUpdated: partial(on_product_changed, policy=policy),
        OrderStatusChanged: partial(on_sales_order_status, policy=policy),
    }


# -- scheduling --------------------------------------------------------------------------------


# What frees or takes a work centre's time at once: an operation finished, or units sent back
# through one. Assigning, starting and progress leave the plan as it is until it falls behind
# (the scheduler loop), so a worker's every report does not re-plan every open order.
REPLANNED_AFTER = (ProductionTaskCompleted, ProductionCompleted, QualityCheckFailed)


def reschedule_before_commit(uow: UnitOfWork) -> None:
    """Orders were added, released, cancelled, progressed or completed: plan the work centres
    again, once per unit of work, on the state it leaves."""

    async def plan_again() -> None:
        await reschedule(uow)

    uow.before_flush(("production-schedule",), plan_again)


async def reschedule(uow: UnitOfWork, only_if_behind: bool = False) -> int:
    """Plan every released and in-progress order again; record the plans that changed. With
    `only_if_behind`, only when some operation fell behind its plan. Returns how many orders
    got a new plan."""
    ids = set(await queries.active_order_ids(uow.conn))
    ids |= {e.production_order_id for e in uow.recorded if isinstance(e, ProductionEvent)}
    loaded = {i: await uow.load(PRODUCTION_ORDER, i) for i in sorted(ids)}
    if only_if_behind and not any(behind(state, uow.now) for state, _ in loaded.values()):
        return 0
    plans = schedule([state for state, _ in loaded.values()], await queries.work_centers(uow.conn), uow.now)
    changed = 0
    for production_order_id, (state, version) in loaded.items():
        plan = plans.get(production_order_id)
        if plan is None:
            continue
        events = po.decide_schedule(state, plan.operations, plan.expected_finish)
        if events:
            await uow.record(PRODUCTION_ORDER, production_order_id, version, events)
            changed += 1
    return changed


def _folded(state: ProductionOrder, events: Sequence[DomainEvent]) -> ProductionOrder:
    for event in events:
        state = po.evolve(state, event)
    return state
