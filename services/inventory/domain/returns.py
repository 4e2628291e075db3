"""Goods a customer sent back (a return received by the order service): the resellable units
go back on hand in the warehouse that shipped them (a receipt like any other, so they serve
the SKU's backorders), the damaged ones are booked as a loss (ReturnedStockWrittenOff: they
left on hand when dispatched and never come back to it).

A return's receipt is an aggregate of its own ("return_receipt-<return_id>"), booked once:
its one event, ReturnedGoodsReceived, is the answer to the order service. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from libs.domain import AggregateKind
from libs.events.base import DomainEvent
from libs.events.inventory import ReceiveReturnedGoods, ReturnedGoodsReceived, ReturnedStockWrittenOff
from libs.events.values import Allocation


@dataclass(frozen=True)
class ReturnReceipt:
    booked: bool = False


def evolve(state: ReturnReceipt, event: DomainEvent) -> ReturnReceipt:
    if isinstance(event, ReturnedGoodsReceived):
        return replace(state, booked=True)
    return state


RETURN_RECEIPT = AggregateKind[ReturnReceipt]("return_receipt", ReturnReceipt, evolve)


def receipt_id_for(return_id: str, sku: str, warehouse: str) -> str:
    """The stock receipt of a return's resellable units of one SKU in one warehouse."""
    return f"return:{return_id}:{sku}:{warehouse}"


def restocked(command: ReceiveReturnedGoods) -> list[Allocation]:
    return [
        Allocation(sku=line.sku, warehouse=line.warehouse, quantity=line.resellable)
        for line in command.lines
        if line.resellable
    ]


def decide_write_offs(command: ReceiveReturnedGoods) -> dict[str, list[DomainEvent]]:
    """The damaged units, per SKU stream."""
    events: dict[str, list[DomainEvent]] = {}
    for line in command.lines:
        if line.damaged:
            events.setdefault(line.sku, []).append(
                ReturnedStockWrittenOff(
                    sku=line.sku,
                    warehouse=line.warehouse,
                    quantity=line.damaged,
                    return_id=command.return_id,
                    order_id=command.order_id,
                )
            )
    return events


def decide_booked(state: ReturnReceipt, command: ReceiveReturnedGoods) -> list[DomainEvent]:
    """The answer, once: a repeated command (booked before) changes nothing."""
    if state.booked:
        return []
    written_off = [
        Allocation(sku=line.sku, warehouse=line.warehouse, quantity=line.damaged)
        for line in command.lines
        if line.damaged
    ]
    return [
        ReturnedGoodsReceived(
            return_id=command.return_id,
            order_id=command.order_id,
            restocked=tuple(restocked(command)),
            written_off=tuple(written_off),
        )
    ]
