"""Stock counts: the variance is counted - (expected + movements since the snapshot), so stock
that moves while a count is open is never taken for a difference."""

from __future__ import annotations

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import SkuDelta, SkuLevel, StockCounted, StockCountPosted, StockCountStarted
from services.inventory.domain import stock_count as counts
from services.inventory.domain.stock_count import StockCount


def count_after(*events: DomainEvent) -> StockCount:
    state = StockCount()
    for event in events:
        state = counts.evolve(state, event)
    return state


def started(whole_warehouse: bool = False, **expected: int) -> StockCount:
    return count_after(*counts.decide_start("c-1", "NORTH", expected, whole_warehouse))


def counted(state: StockCount, sku: str, quantity: int, book: int) -> StockCount:
    for event in counts.decide_count(state, sku, quantity, book):
        state = counts.evolve(state, event)
    return state


def test_a_count_snapshots_what_the_books_expect() -> None:
    events = counts.decide_start("c-1", "NORTH", {"B": 0, "A": 10}, whole_warehouse=False)

    assert events == [
        StockCountStarted(
            count_id="c-1",
            warehouse="NORTH",
            expected=(SkuLevel(sku="A", quantity=10), SkuLevel(sku="B", quantity=0)),
            whole_warehouse=False,
        )
    ]


def test_movements_while_the_count_is_open_are_not_a_variance() -> None:
    state = started(A=10)

    # 5 were received after the snapshot, before the shelf was counted: the books say 15
    state = counted(state, "A", 14, book=15)

    line = state.lines["A"]
    assert (line.expected, line.movements, line.counted, line.variance) == (10, 5, 14, -1)
    assert line.variance == 14 - (10 + 5)


def test_the_last_count_of_a_sku_wins() -> None:
    state = counted(counted(started(A=10), "A", 7, book=10), "A", 9, book=10)

    assert state.lines["A"].variance == -1
    assert state.variances() == {"A": -1}


def test_posting_books_each_variance_and_only_counted_differences() -> None:
    state = started(A=10, B=4, C=2)
    state = counted(counted(counted(state, "A", 12, book=10), "B", 4, book=4), "C", 1, book=3)

    events = counts.decide_post(state, "user:lee")

    assert events == [
        StockCountPosted(
            count_id="c-1",
            warehouse="NORTH",
            adjustments=(SkuDelta(sku="A", delta=2), SkuDelta(sku="C", delta=-2)),
            approved_by="user:lee",
        )
    ]


def test_a_posted_count_is_not_posted_again_nor_counted_further() -> None:
    state = counted(started(A=10), "A", 12, book=10)
    state = counts.evolve(state, counts.decide_post(state, "user:lee")[0])

    assert counts.decide_post(state, "user:lee") == []
    with pytest.raises(DomainError) as refused:
        counts.decide_count(state, "A", 11, 12)
    assert (refused.value.status, refused.value.code) == (409, "count_posted")


def test_a_sku_outside_a_partial_count_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        counts.decide_count(started(A=10), "B", 1, 0)

    assert (refused.value.status, refused.value.code) == (422, "sku_not_in_count")


def test_a_sku_found_in_a_whole_warehouse_count_is_counted_against_the_books() -> None:
    state = started(True, A=10)

    events = counts.decide_count(state, "NEW", 3, 0)

    assert events == [StockCounted(count_id="c-1", sku="NEW", counted=3, book=0)]
    assert counts.evolve(state, events[0]).variances() == {"NEW": 3}
