"""Reserving stock for orders: where it is taken from, who waits, and that nothing is oversold."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderQueued,
    ReservationRequested,
    StockAllocated,
    StockDeallocated,
    StockReceived,
    StockReleased,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain import reservation as reservations
from services.inventory.domain import stock as stocks_domain
from services.inventory.domain.reservation import (
    Decision,
    Reservation,
    allocation_events,
    decide_release,
    decide_reserve,
    merge_lines,
    try_allocate,
)
from services.inventory.domain.stock import SkuStock, plan_allocation

# -- helpers ---------------------------------------------------------------------------------


def stock(sku: str, on_hand: Mapping[str, int] | None = None) -> SkuStock:
    """A SKU's stock after receipts into the given warehouses."""
    state = SkuStock(sku=sku)
    for number, (warehouse, quantity) in enumerate((on_hand or {}).items()):
        receipt = StockReceived(sku=sku, warehouse=warehouse, quantity=quantity, receipt_id=f"r-{number}")
        state = stocks_domain.evolve(state, receipt)
    return state


def folded(state: SkuStock, *events: DomainEvent) -> SkuStock:
    for event in events:
        state = stocks_domain.evolve(state, event)
    return state


def applied(stocks: Mapping[str, SkuStock], decision: Decision) -> dict[str, SkuStock]:
    """The SKUs after the decision's per-SKU events are appended."""
    after = dict(stocks)
    for sku, events in decision.skus.items():
        after[sku] = folded(after[sku], *events)
    return after


def reservation_after(*events: DomainEvent) -> Reservation:
    state = Reservation()
    for event in events:
        state = reservations.evolve(state, event)
    return state


def lines(**quantities: int) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())


def reserve(
    order_id: str,
    wanted: tuple[SkuQuantity, ...],
    stocks: Mapping[str, SkuStock],
    *,
    backorder: bool = True,
    reservation: Reservation | None = None,
    preferred: tuple[str, ...] = (),
) -> Decision:
    return decide_reserve(
        reservation or Reservation(), order_id, wanted, "north", backorder, stocks, preferred
    )


# -- plan_allocation ---------------------------------------------------------------------------


def test_plan_takes_everything_from_a_preferred_warehouse_that_covers_it() -> None:
    sku = stock("A", {"wh-north": 5, "wh-east": 20})

    plan = plan_allocation(sku, 4, ["wh-north"])

    assert plan == {"wh-north": 4}


def test_plan_takes_everything_from_one_other_warehouse_when_no_preferred_one_covers_it() -> None:
    sku = stock("A", {"wh-north": 2, "wh-east": 5, "wh-west": 10})

    plan = plan_allocation(sku, 8, ["wh-north"])

    assert plan == {"wh-west": 8}


def test_plan_takes_everything_from_one_warehouse_rather_than_splitting() -> None:
    sku = stock("A", {"wh-1": 4, "wh-2": 7, "wh-3": 6})

    plan = plan_allocation(sku, 6, [])

    assert plan is not None
    assert len(plan) == 1
    assert sum(plan.values()) == 6


def test_plan_splits_across_warehouses_fullest_first() -> None:
    sku = stock("A", {"wh-1": 3, "wh-2": 5, "wh-3": 4})

    plan = plan_allocation(sku, 10, [])

    assert plan == {"wh-2": 5, "wh-3": 4, "wh-1": 1}


def test_plan_splits_starting_with_the_preferred_warehouse() -> None:
    sku = stock("A", {"wh-north": 3, "wh-east": 5, "wh-west": 4})

    plan = plan_allocation(sku, 10, ["wh-north"])

    assert plan == {"wh-north": 3, "wh-east": 5, "wh-west": 2}


def test_plan_only_counts_stock_not_reserved_for_other_orders() -> None:
    sku = folded(
        stock("A", {"wh-1": 10, "wh-2": 3}),
        StockAllocated(sku="A", order_id="o-other", warehouses={"wh-1": 8}),
    )

    plan = plan_allocation(sku, 4, [])

    assert plan == {"wh-2": 3, "wh-1": 1}


@pytest.mark.parametrize(
    "sku",
    [
        stock("A", {"wh-1": 3, "wh-2": 4}),
        folded(
            stock("A", {"wh-1": 10}),
            StockAllocated(sku="A", order_id="o-other", warehouses={"wh-1": 3}),
        ),
        stock("A"),
    ],
    ids=["total_short", "short_after_reservations", "never_received"],
)
def test_plan_is_none_when_all_warehouses_together_are_short(sku: SkuStock) -> None:
    plan = plan_allocation(sku, 8, [])

    assert plan is None


# -- decide_reserve -----------------------------------------------------------------------------


def test_merge_lines_adds_up_quantities_per_sku() -> None:
    merged = merge_lines((*lines(A=2, B=1), *lines(A=3)))

    assert merged == {"A": 5, "B": 1}


def test_order_with_every_line_available_is_reserved_and_allocated_per_sku() -> None:
    stocks = {"A": stock("A", {"wh-1": 10}), "B": stock("B", {"wh-1": 1, "wh-2": 5})}
    wanted = (*lines(A=2, B=4), *lines(A=1))

    decision = reserve("o-1", wanted, stocks, preferred=("wh-1",))

    assert decision.reservation == [
        ReservationRequested(order_id="o-1", lines=wanted, region="north", backorder=True),
        StockReserved(
            order_id="o-1",
            allocations=(
                Allocation(sku="A", warehouse="wh-1", quantity=3),
                Allocation(sku="B", warehouse="wh-2", quantity=4),
            ),
        ),
    ]
    assert decision.skus == {
        "A": [StockAllocated(sku="A", order_id="o-1", warehouses={"wh-1": 3})],
        "B": [StockAllocated(sku="B", order_id="o-1", warehouses={"wh-2": 4})],
    }


def test_shortage_with_backorder_queues_the_order_on_each_short_sku() -> None:
    stocks = {"A": stock("A", {"wh-1": 10}), "B": stock("B", {"wh-1": 1}), "C": stock("C")}
    wanted = lines(A=2, B=4, C=2)

    decision = reserve("o-1", wanted, stocks, backorder=True)

    assert decision.reservation == [
        ReservationRequested(order_id="o-1", lines=wanted, region="north", backorder=True),
        StockShortage(
            order_id="o-1",
            lines=wanted,
            region="north",
            missing=lines(B=3, C=2),
            backordered=True,
        ),
    ]
    assert decision.skus == {
        "B": [BackorderQueued(sku="B", order_id="o-1", quantity=4)],
        "C": [BackorderQueued(sku="C", order_id="o-1", quantity=2)],
    }
    assert reservation_after(*decision.reservation).status == "backordered"


def test_the_request_is_kept_with_the_reservation_for_a_later_replan() -> None:
    stocks = {"A": stock("A", {"wh-1": 10})}

    decision = reserve("o-1", lines(A=2), stocks, backorder=False)

    kept = reservation_after(*decision.reservation)
    assert (kept.lines, kept.region, kept.backorder) == (lines(A=2), "north", False)


def test_shortage_without_backorder_is_refused_and_queues_nothing() -> None:
    stocks = {"A": stock("A", {"wh-1": 10}), "B": stock("B", {"wh-1": 1})}

    decision = reserve("o-1", lines(A=2, B=4), stocks, backorder=False)

    (_, shortage) = decision.reservation
    assert isinstance(shortage, StockShortage)
    assert shortage.backordered is False
    assert shortage.missing == lines(B=3)
    assert decision.skus == {}
    assert reservation_after(shortage).status == "refused"


def test_lines_for_the_same_sku_are_reserved_together() -> None:
    stocks = {"A": stock("A", {"wh-1": 6})}

    decision = reserve("o-1", (*lines(A=3), *lines(A=4)), stocks)

    (_, shortage) = decision.reservation
    assert isinstance(shortage, StockShortage)
    assert shortage.missing == lines(A=1)
    assert decision.skus == {"A": [BackorderQueued(sku="A", order_id="o-1", quantity=7)]}


@pytest.mark.parametrize("backorder", [True, False], ids=["backordered", "refused"])
@pytest.mark.parametrize("available", [10, 1], ids=["reserved_before", "short_before"])
def test_a_second_reserve_request_for_the_same_order_changes_nothing(available: int, backorder: bool) -> None:
    stocks = {"A": stock("A", {"wh-1": available})}
    first = reserve("o-1", lines(A=2), stocks, backorder=backorder)
    stocks = applied(stocks, first)
    answered = reservation_after(*first.reservation)

    again = reserve("o-1", lines(A=2), stocks, backorder=backorder, reservation=answered)

    assert again == Decision([], {})


# -- first come, first served -----------------------------------------------------------------


def queued_behind_early_order() -> dict[str, SkuStock]:
    """SKU A has stock again, but o-early has been waiting for 5 since before it arrived."""
    return {"A": folded(stock("A", {"wh-1": 10}), BackorderQueued(sku="A", order_id="o-early", quantity=5))}


def test_new_order_queues_behind_a_waiting_order_even_when_stock_is_available() -> None:
    stocks = queued_behind_early_order()

    decision = reserve("o-late", lines(A=1), stocks)

    (_, shortage) = decision.reservation
    assert isinstance(shortage, StockShortage)
    assert shortage.missing == lines(A=1)
    assert decision.skus == {"A": [BackorderQueued(sku="A", order_id="o-late", quantity=1)]}
    assert applied(stocks, decision)["A"].backorders == (("o-early", 5), ("o-late", 1))


def test_new_order_without_backorder_is_refused_when_others_are_waiting() -> None:
    stocks = queued_behind_early_order()

    decision = reserve("o-late", lines(A=1), stocks, backorder=False)

    assert [type(e) for e in decision.reservation] == [ReservationRequested, StockShortage]
    assert decision.skus == {}


def test_head_of_the_queue_is_allocated_and_dequeued() -> None:
    stocks = queued_behind_early_order()
    stocks = applied(stocks, reserve("o-late", lines(A=1), stocks))

    plans = try_allocate("o-early", {"A": 5}, stocks, [])
    assert plans == {"A": {"wh-1": 5}}
    decision = allocation_events("o-early", plans, stocks)

    assert decision.reservation == [
        StockReserved(order_id="o-early", allocations=(Allocation(sku="A", warehouse="wh-1", quantity=5),))
    ]
    assert decision.skus == {
        "A": [
            StockAllocated(sku="A", order_id="o-early", warehouses={"wh-1": 5}),
            BackorderDequeued(sku="A", order_id="o-early"),
        ]
    }
    after = applied(stocks, decision)["A"]
    assert after.backorders == (("o-late", 1),)
    assert try_allocate("o-late", {"A": 1}, {"A": after}, []) == {"A": {"wh-1": 1}}


def test_an_order_behind_the_head_of_the_queue_cannot_be_allocated() -> None:
    stocks = queued_behind_early_order()
    stocks = applied(stocks, reserve("o-late", lines(A=1), stocks))

    plans = try_allocate("o-late", {"A": 1}, stocks, [])

    assert plans is None


def test_allocating_an_order_that_never_queued_dequeues_nothing() -> None:
    stocks = {"A": stock("A", {"wh-1": 10})}

    decision = allocation_events("o-1", {"A": {"wh-1": 2}}, stocks)

    assert decision.skus == {"A": [StockAllocated(sku="A", order_id="o-1", warehouses={"wh-1": 2})]}


# -- no oversell ------------------------------------------------------------------------------


@pytest.mark.parametrize("backorder", [True, False], ids=["backorder", "no_backorder"])
def test_two_hundred_orders_for_fifty_units_reserve_exactly_fifty(backorder: bool) -> None:
    stocks = {"A": stock("A", {"wh-1": 30, "wh-2": 20})}
    answers: dict[str, Reservation] = {}
    order_ids = [f"o-{n:03d}" for n in range(200)]

    for order_id in order_ids:
        decision = reserve(order_id, lines(A=1), stocks, backorder=backorder)
        stocks = applied(stocks, decision)
        answers[order_id] = reservation_after(*decision.reservation)
        sku = stocks["A"]
        for warehouse, on_hand in sku.on_hand.items():
            assert 0 <= sku.reserved(warehouse) <= on_hand

    statuses = [answers[order_id].status for order_id in order_ids]
    assert statuses.count("reserved") == 50
    assert statuses.count("backordered" if backorder else "refused") == 150
    assert statuses[:50] == ["reserved"] * 50  # first come, first served
    assert stocks["A"].total_available() == 0
    assert sum(sum(by_wh.values()) for by_wh in stocks["A"].allocations.values()) == 50
    expected_queue = tuple((order_id, 1) for order_id in order_ids[50:]) if backorder else ()
    assert stocks["A"].backorders == expected_queue


# -- decide_release ------------------------------------------------------------------------------


def test_release_deallocates_exactly_what_the_order_was_allocated() -> None:
    stocks = {"A": stock("A", {"wh-1": 10}), "B": stock("B", {"wh-1": 1, "wh-2": 5})}
    stocks = applied(stocks, reserve("o-other", lines(A=4), stocks))
    reserved = reserve("o-1", lines(A=3, B=4), stocks, preferred=("wh-1",))
    stocks = applied(stocks, reserved)
    reservation = reservation_after(*reserved.reservation)

    decision = decide_release(reservation, "o-1", "order cancelled", stocks)

    assert decision.reservation == [
        StockReleased(order_id="o-1", allocations=reservation.allocations, reason="order cancelled")
    ]
    assert decision.skus == {
        "A": [StockDeallocated(sku="A", order_id="o-1", warehouses={"wh-1": 3})],
        "B": [StockDeallocated(sku="B", order_id="o-1", warehouses={"wh-2": 4})],
    }
    after = applied(stocks, decision)
    assert after["A"].available("wh-1") == 6  # o-other keeps its 4
    assert after["B"].total_available() == 6
    assert reservations.evolve(reservation, decision.reservation[0]).status == "released"


def test_release_of_a_backordered_order_gives_up_its_place_in_each_queue() -> None:
    stocks = {"A": stock("A", {"wh-1": 10}), "B": stock("B")}
    waiting = reserve("o-1", lines(A=2, B=1), stocks)
    stocks = applied(stocks, waiting)
    reservation = reservation_after(*waiting.reservation)

    decision = decide_release(reservation, "o-1", "order cancelled", stocks)

    assert decision.reservation == [StockReleased(order_id="o-1", allocations=(), reason="order cancelled")]
    assert decision.skus == {"B": [BackorderDequeued(sku="B", order_id="o-1")]}
    assert applied(stocks, decision)["B"].backorders == ()


def test_release_of_an_unknown_reservation_still_answers_stock_released() -> None:
    decision = decide_release(Reservation(), "o-unknown", "order cancelled", {})

    assert decision.reservation == [
        StockReleased(order_id="o-unknown", allocations=(), reason="order cancelled")
    ]
    assert decision.skus == {}


def test_release_of_an_already_released_reservation_answers_again_and_changes_no_stock() -> None:
    stocks = {"A": stock("A", {"wh-1": 10})}
    reserved = reserve("o-1", lines(A=3), stocks)
    stocks = applied(stocks, reserved)
    first = decide_release(reservation_after(*reserved.reservation), "o-1", "cancelled", stocks)
    stocks = applied(stocks, first)
    released = reservation_after(*reserved.reservation, *first.reservation)

    again = decide_release(released, "o-1", "cancelled", stocks)

    assert [type(e) for e in again.reservation] == [StockReleased]
    assert again.skus == {}
    assert stocks["A"].total_available() == 10
