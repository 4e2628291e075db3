"""Stock counts: a snapshot of what the books expect on hand in one warehouse, the quantities
people count (the last count of a SKU wins), and the variances posted as adjustments.

Stock may move while a count is open (receipts, dispatches, transfers). Each count keeps what
the books said at the moment the SKU was counted (`book`), so those movements are not taken
for a variance: variance = counted - (expected + movements since the snapshot)
= counted - book.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from libs.domain import AggregateKind, DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.inventory import (
    MAX_LINES_PER_COUNT,
    SkuDelta,
    SkuLevel,
    StockCounted,
    StockCountPosted,
    StockCountStarted,
)

CountStatus = Literal["new", "open", "posted"]


@dataclass(frozen=True)
class CountLine:
    expected: int
    counted: int | None = None
    book: int | None = None  # on hand by the books when it was counted

    @property
    def movements(self) -> int | None:
        return None if self.book is None else self.book - self.expected

    @property
    def variance(self) -> int | None:
        return None if self.counted is None or self.book is None else self.counted - self.book


@dataclass(frozen=True)
class StockCount:
    count_id: str = ""
    warehouse: str = ""
    whole_warehouse: bool = False
    status: CountStatus = "new"
    lines: Mapping[str, CountLine] = field(default_factory=dict)

    def variances(self) -> dict[str, int]:
        """The counted SKUs whose count differs from the books, with the difference."""
        return {sku: line.variance for sku, line in sorted(self.lines.items()) if line.variance}


def evolve(state: StockCount, event: DomainEvent) -> StockCount:
    if isinstance(event, StockCountStarted):
        return StockCount(
            count_id=event.count_id,
            warehouse=event.warehouse,
            whole_warehouse=event.whole_warehouse,
            status="open",
            lines={level.sku: CountLine(level.quantity) for level in event.expected},
        )
    if isinstance(event, StockCounted):
        line = state.lines.get(event.sku, CountLine(0))
        counted = replace(line, counted=event.counted, book=event.book)
        return replace(state, lines={**state.lines, event.sku: counted})
    if isinstance(event, StockCountPosted):
        return replace(state, status="posted")
    return state


STOCK_COUNT = AggregateKind[StockCount]("stock_count", StockCount, evolve)


def check_size(warehouse: str, skus: int) -> None:
    if skus > MAX_LINES_PER_COUNT:
        raise InvalidRequest(
            "count_too_large",
            f"a count of {skus} SKUs at {warehouse} is too large; a count takes at most"
            f" {MAX_LINES_PER_COUNT}: count in parts by giving `skus`",
        )


def decide_start(
    count_id: str, warehouse: str, expected: Mapping[str, int], whole_warehouse: bool
) -> list[DomainEvent]:
    check_size(warehouse, len(expected))
    return [
        StockCountStarted(
            count_id=count_id,
            warehouse=warehouse,
            expected=tuple(SkuLevel(sku=sku, quantity=q) for sku, q in sorted(expected.items())),
            whole_warehouse=whole_warehouse,
        )
    ]


def _refuse_unless_open(count: StockCount) -> None:
    if count.status == "posted":
        raise DomainError("count_posted", f"stock count {count.count_id} was posted; start a new count")


def decide_count(count: StockCount, sku: str, counted: int, book: int) -> list[DomainEvent]:
    """Record a counted quantity, with what the books say is on hand right now."""
    _refuse_unless_open(count)
    if sku not in count.lines and not count.whole_warehouse:
        raise InvalidRequest(
            "sku_not_in_count",
            f"SKU {sku} is not part of stock count {count.count_id}; count it in a count of its own",
        )
    if sku not in count.lines and len(count.lines) >= MAX_LINES_PER_COUNT:
        raise InvalidRequest(
            "count_too_large", f"stock count {count.count_id} already holds {MAX_LINES_PER_COUNT} SKUs"
        )
    return [StockCounted(count_id=count.count_id, sku=sku, counted=counted, book=book)]


def decide_post(count: StockCount, approved_by: str) -> list[DomainEvent]:
    """Close the count; the caller books each variance as an adjustment (reason `count`).
    A count posted before is not posted again."""
    if count.status == "posted":
        return []
    adjustments = tuple(SkuDelta(sku=sku, delta=delta) for sku, delta in count.variances().items())
    return [
        StockCountPosted(
            count_id=count.count_id,
            warehouse=count.warehouse,
            adjustments=adjustments,
            approved_by=approved_by,
        )
    ]
