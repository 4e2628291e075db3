"""Transfers between warehouses: requested, dispatched (the stock leaves and is in transit),
received in parts, the rest written off with a reason; or cancelled before it leaves.

The Transfer aggregate keeps what was asked for and how far each line got. The stock itself
moves on each SKU's aggregate (StockTransferredOut, StockTransferredIn, StockTransitWrittenOff),
which keeps it out of both warehouses' available stock while it is on the way, and keeps on
hand + in transit the same from request to receipt.

Pure: no I/O, no clock. `decide_*` functions return the events a command produces (none when
the command was already carried out: a repeat); `evolve` folds an event into the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal
from uuid import UUID, uuid5

from libs.domain import AggregateKind, DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import (
    StockTransferredIn,
    StockTransferredOut,
    StockTransitWrittenOff,
    TransferCancelled,
    TransferDispatched,
    TransferReceived,
    TransferRequested,
    TransferWrittenOff,
)
from libs.events.values import SkuQuantity
from services.inventory.domain.stock import SkuStock

# A transfer's id is derived from the requester's reference, so the same request sent again
# names the same transfer (and is answered, not booked twice).
TRANSFER_NAMESPACE = UUID("0b7c61a2-51f4-4f0e-8a3e-6f0d2c1b9e47")

TransferStatus = Literal["new", "requested", "dispatched", "partially_received", "completed", "cancelled"]
ON_THE_WAY: frozenset[TransferStatus] = frozenset({"dispatched", "partially_received"})


def transfer_id_for(reference: str) -> str:
    return str(uuid5(TRANSFER_NAMESPACE, reference))


@dataclass(frozen=True)
class TransferLine:
    sku: str
    quantity: int
    received: int = 0
    written_off: int = 0

    @property
    def outstanding(self) -> int:
        """Neither received nor written off: in transit once the transfer is dispatched."""
        return self.quantity - self.received - self.written_off


@dataclass(frozen=True)
class Transfer:
    transfer_id: str = ""
    reference: str = ""
    from_warehouse: str = ""
    to_warehouse: str = ""
    lines: tuple[TransferLine, ...] = ()
    status: TransferStatus = "new"
    # receipt id -> the lines it booked, so a repeated receipt is recognised
    receipts: Mapping[str, tuple[SkuQuantity, ...]] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.status != "new"

    def line(self, sku: str) -> TransferLine | None:
        return next((line for line in self.lines if line.sku == sku), None)

    def describe(self) -> str:
        goods = ", ".join(f"{line.sku} x {line.quantity}" for line in self.lines)
        return f"{self.from_warehouse} -> {self.to_warehouse}: {goods}"


def _progressed(state: Transfer, lines: Sequence[SkuQuantity], *, received: bool) -> Transfer:
    moved = {line.sku: line.quantity for line in lines}
    updated = tuple(
        replace(line, received=line.received + moved.get(line.sku, 0))
        if received
        else replace(line, written_off=line.written_off + moved.get(line.sku, 0))
        for line in state.lines
    )
    done = all(line.outstanding == 0 for line in updated)
    status: TransferStatus = "completed" if done else "partially_received" if received else state.status
    return replace(state, lines=updated, status=status)


def evolve(state: Transfer, event: DomainEvent) -> Transfer:
    if isinstance(event, TransferRequested):
        return Transfer(
            transfer_id=event.transfer_id,
            reference=event.reference,
            from_warehouse=event.from_warehouse,
            to_warehouse=event.to_warehouse,
            lines=tuple(TransferLine(line.sku, line.quantity) for line in event.lines),
            status="requested",
        )
    if isinstance(event, TransferDispatched):
        return replace(state, status="dispatched")
    if isinstance(event, TransferReceived):
        after = _progressed(state, event.lines, received=True)
        if event.receipt_id is not None:
            after = replace(after, receipts={**state.receipts, event.receipt_id: event.lines})
        return after
    if isinstance(event, TransferWrittenOff):
        return _progressed(state, event.lines, received=False)
    if isinstance(event, TransferCancelled):
        return replace(state, status="cancelled")
    return state


TRANSFER = AggregateKind[Transfer]("transfer", Transfer, evolve)


@dataclass(frozen=True)
class TransferDecision:
    """Events to append, per aggregate: the transfer's and each SKU's it moves."""

    transfer: list[DomainEvent]
    skus: dict[str, list[DomainEvent]]


NOTHING = TransferDecision([], {})


def _single_lines(lines: Sequence[SkuQuantity]) -> None:
    seen: set[str] = set()
    for line in lines:
        if line.sku in seen:
            raise InvalidRequest(
                "duplicate_sku", f"SKU {line.sku} appears on more than one line; give it once"
            )
        seen.add(line.sku)


def check_available(stocks: Mapping[str, SkuStock], warehouse: str, lines: Sequence[SkuQuantity]) -> None:
    """Only available stock can move: what is on hand and not reserved for an order."""
    short = [
        f"SKU {line.sku}: {stocks[line.sku].available(warehouse)} available at {warehouse},"
        f" the transfer asks for {line.quantity}"
        for line in lines
        if stocks[line.sku].available(warehouse) < line.quantity
    ]
    if short:
        raise DomainError("insufficient_stock", "; ".join(short))


def _differences(
    booked: Transfer, from_warehouse: str, to_warehouse: str, lines: Sequence[SkuQuantity]
) -> str:
    differs = []
    if booked.from_warehouse != from_warehouse:
        differs.append(f"from_warehouse {from_warehouse} instead of {booked.from_warehouse}")
    if booked.to_warehouse != to_warehouse:
        differs.append(f"to_warehouse {to_warehouse} instead of {booked.to_warehouse}")
    asked = {line.sku: line.quantity for line in lines}
    before = {line.sku: line.quantity for line in booked.lines}
    for sku in sorted(asked.keys() | before.keys()):
        if asked.get(sku) != before.get(sku):
            differs.append(f"{sku} x {asked.get(sku, 0)} instead of {before.get(sku, 0)}")
    return "; ".join(differs)


def decide_request(
    transfer: Transfer,
    transfer_id: str,
    reference: str,
    from_warehouse: str,
    to_warehouse: str,
    lines: Sequence[SkuQuantity],
    stocks: Mapping[str, SkuStock],
) -> list[DomainEvent]:
    if transfer.exists:
        differs = _differences(transfer, from_warehouse, to_warehouse, lines)
        if differs:
            raise DomainError(
                "transfer_reference_reused",
                f"reference {reference} already names transfer {transfer.transfer_id}"
                f" ({transfer.describe()}); this request differs: {differs}",
            )
        return []  # the same request again
    if from_warehouse == to_warehouse:
        raise InvalidRequest(
            "same_warehouse", f"a transfer moves stock between two warehouses, not {to_warehouse} to itself"
        )
    _single_lines(lines)
    check_available(stocks, from_warehouse, lines)
    return [
        TransferRequested(
            transfer_id=transfer_id,
            reference=reference,
            from_warehouse=from_warehouse,
            to_warehouse=to_warehouse,
            lines=tuple(lines),
        )
    ]


def _refuse_unless_on_the_way(transfer: Transfer, doing: str) -> None:
    if transfer.status == "requested":
        raise DomainError(
            "transfer_not_dispatched",
            f"transfer {transfer.transfer_id} has not been dispatched; nothing to {doing}",
        )
    if transfer.status == "cancelled":
        raise DomainError(
            "transfer_cancelled", f"transfer {transfer.transfer_id} was cancelled; nothing to {doing}"
        )
    if transfer.status == "completed":
        raise DomainError(
            "transfer_completed",
            f"nothing of transfer {transfer.transfer_id} is in transit any more; nothing to {doing}",
        )


def decide_dispatch(transfer: Transfer, stocks: Mapping[str, SkuStock]) -> TransferDecision:
    if transfer.status in ON_THE_WAY or transfer.status == "completed":
        return NOTHING  # dispatched before
    if transfer.status == "cancelled":
        raise DomainError(
            "transfer_cancelled", f"transfer {transfer.transfer_id} was cancelled; it cannot be dispatched"
        )
    lines = tuple(SkuQuantity(sku=line.sku, quantity=line.quantity) for line in transfer.lines)
    check_available(stocks, transfer.from_warehouse, lines)
    return TransferDecision(
        [TransferDispatched(transfer_id=transfer.transfer_id, lines=lines)],
        {
            line.sku: [
                StockTransferredOut(
                    sku=line.sku,
                    transfer_id=transfer.transfer_id,
                    from_warehouse=transfer.from_warehouse,
                    to_warehouse=transfer.to_warehouse,
                    quantity=line.quantity,
                )
            ]
            for line in lines
        },
    )


def _check_in_transit(transfer: Transfer, lines: Sequence[SkuQuantity], doing: str) -> None:
    _single_lines(lines)
    for asked in lines:
        line = transfer.line(asked.sku)
        if line is None:
            raise InvalidRequest(
                "sku_not_in_transfer", f"SKU {asked.sku} is not on transfer {transfer.transfer_id}"
            )
        if asked.quantity > line.outstanding:
            raise DomainError(
                "more_than_in_transit",
                f"SKU {asked.sku}: {line.outstanding} in transit on transfer {transfer.transfer_id},"
                f" this request would {doing} {asked.quantity}",
            )


def decide_receive(
    transfer: Transfer, lines: Sequence[SkuQuantity], receipt_id: str | None
) -> TransferDecision:
    """Book what arrived at the destination. Partial receipts are fine; the rest stays in
    transit until it arrives or is written off."""
    if receipt_id is not None and receipt_id in transfer.receipts:
        booked = transfer.receipts[receipt_id]
        if sorted(booked, key=lambda line: line.sku) != sorted(lines, key=lambda line: line.sku):
            raise DomainError(
                "receipt_reused",
                f"receipt {receipt_id} of transfer {transfer.transfer_id} already booked"
                f" {_listed(booked)}; this request says {_listed(lines)}",
            )
        return NOTHING
    _refuse_unless_on_the_way(transfer, "receive")
    _check_in_transit(transfer, lines, "receive")
    return TransferDecision(
        [TransferReceived(transfer_id=transfer.transfer_id, lines=tuple(lines), receipt_id=receipt_id)],
        {
            line.sku: [
                StockTransferredIn(
                    sku=line.sku,
                    transfer_id=transfer.transfer_id,
                    from_warehouse=transfer.from_warehouse,
                    to_warehouse=transfer.to_warehouse,
                    quantity=line.quantity,
                )
            ]
            for line in lines
        },
    )


def decide_write_off(
    transfer: Transfer, lines: Sequence[SkuQuantity] | None, reason: str
) -> TransferDecision:
    """Take stock that will never arrive off the books: the lines given, else everything
    still in transit."""
    _refuse_unless_on_the_way(transfer, "write off")
    if lines is None:
        lines = tuple(
            SkuQuantity(sku=line.sku, quantity=line.outstanding)
            for line in transfer.lines
            if line.outstanding
        )
    _check_in_transit(transfer, lines, "write off")
    return TransferDecision(
        [TransferWrittenOff(transfer_id=transfer.transfer_id, lines=tuple(lines), reason=reason)],
        {
            line.sku: [
                StockTransitWrittenOff(
                    sku=line.sku,
                    transfer_id=transfer.transfer_id,
                    from_warehouse=transfer.from_warehouse,
                    to_warehouse=transfer.to_warehouse,
                    quantity=line.quantity,
                    reason=reason,
                )
            ]
            for line in lines
        },
    )


def decide_cancel(transfer: Transfer, reason: str) -> list[DomainEvent]:
    if transfer.status == "cancelled":
        return []
    if transfer.status != "requested":
        raise DomainError(
            "transfer_dispatched",
            f"transfer {transfer.transfer_id} was dispatched and can no longer be cancelled:"
            " receive what arrives and write off the rest",
        )
    return [TransferCancelled(transfer_id=transfer.transfer_id, reason=reason)]


def _listed(lines: Sequence[SkuQuantity]) -> str:
    return ", ".join(f"{line.sku} x {line.quantity}" for line in sorted(lines, key=lambda line: line.sku))
