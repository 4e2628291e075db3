"""A production order's steps with inventory, as a table: which participant each step asks
and with what command, what answers it, and what undoes it. The handlers send each step's
command from here (`request_for`), and GET /saga on the production service shows the table.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from libs.events.base import Command
from libs.events.inventory import ConsumeStock, ReceiveStock, ReleaseStock, ReserveStock
from services.production.domain.production_order import ProductionOrder, receipt_id_of

# The command a step sends for a production order, and the key it is sent under; None when
# the order needs none (no components to reserve, no passed units to receive).
Request = Callable[[ProductionOrder], tuple[Command, str] | None]


@dataclass(frozen=True)
class ProductionStep:
    step: str
    participant: str
    request: str
    succeeds_on: str
    fails_on: str | None
    compensation: str | None
    status_after: str
    command: Request | None = None  # None: done by people, through the API


def _reserve(order: ProductionOrder) -> tuple[Command, str] | None:
    if not order.components:
        return None
    return ReserveStock(
        order_id=order.production_order_id, lines=order.components, backorder=True
    ), order.production_order_id


def _consume(order: ProductionOrder) -> tuple[Command, str] | None:
    if not order.components or order.consumed:
        return None
    reason = f"production order {order.production_order_id} completed"
    return ConsumeStock(order_id=order.production_order_id, reason=reason), order.production_order_id


def _receive(order: ProductionOrder) -> tuple[Command, str] | None:
    if not order.passed:
        return None
    receipt = ReceiveStock(
        receipt_id=receipt_id_of(order.production_order_id),
        sku=order.sku,
        warehouse=order.warehouse,
        quantity=order.passed,
    )
    return receipt, order.sku


def _release(order: ProductionOrder) -> tuple[Command, str] | None:
    if not order.components or order.consumed:
        return None
    reason = order.cancel_reason or f"production order {order.production_order_id} cancelled"
    return ReleaseStock(order_id=order.production_order_id, reason=reason), order.production_order_id


PRODUCTION_SAGA: tuple[ProductionStep, ...] = (
    ProductionStep(
        step="reserve_components",
        participant="inventory",
        request=ReserveStock.message_type,
        succeeds_on="StockReserved",
        # Not a failure that ends it: the order waits in inventory's backorder queue, and a
        # short manufactured component gets a production order of its own.
        fails_on="StockShortage (waits: awaiting_components)",
        compensation="release_components",
        status_after="released",
        command=_reserve,
    ),
    ProductionStep(
        step="make",
        participant="production (tasks: assign, start, progress, complete; quality checks)",
        request="POST /tasks/{id}/...",
        succeeds_on="ProductionCompleted (every unit passed or scrapped)",
        fails_on="QualityCheckFailed (rework: the units go back; scrap: a make-to-order shortfall"
        " gets a new production order)",
        compensation=None,
        status_after="completed",
    ),
    ProductionStep(
        step="consume_components",
        participant="inventory",
        request=ConsumeStock.message_type,
        succeeds_on="ReservationConsumed",
        fails_on=None,
        compensation=None,
        status_after="completed",
        command=_consume,
    ),
    ProductionStep(
        step="receive_goods",
        participant="inventory",
        request=ReceiveStock.message_type,
        succeeds_on="StockReceived (receipt production:<id>; fills waiting reservations first-in first-out)",
        fails_on=None,
        compensation=None,
        status_after="completed",
        command=_receive,
    ),
)


@dataclass(frozen=True)
class Compensation:
    participant: str
    request: str
    completed_by: str
    when: str
    command: Request


COMPENSATIONS: dict[str, Compensation] = {
    "release_components": Compensation(
        participant="inventory",
        request=ReleaseStock.message_type,
        completed_by="StockReleased",
        when="the sales order it serves is cancelled or rejected while it is planned, awaiting"
        " components or released (in progress: it goes on, unless OM_PRODUCTION_CANCEL_IN_PROGRESS)",
        command=_release,
    )
}

# What follows completion, in order.
AFTER_COMPLETION = ("consume_components", "receive_goods")


def request_for(name: str, order: ProductionOrder) -> tuple[Command, str] | None:
    """The command the step (or compensation) `name` sends for the order, with its key."""
    for step in PRODUCTION_SAGA:
        if step.step == name:
            return step.command(order) if step.command is not None else None
    return COMPENSATIONS[name].command(order)
