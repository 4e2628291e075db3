"""Stock adjustments: on hand booked to what is really there. Below what is reserved, the
newest reservations lose what no longer fits and their orders are reserved again at once:
elsewhere, or backordered or refused by the policy their request carried."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import (
    AdjustmentReason,
    BackorderQueued,
    ReservationRevoked,
    StockAdjusted,
    StockAllocated,
    StockDeallocated,
    StockDispatched,
    StockReceived,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain import adjustment
from services.inventory.domain import reservation as reservations
from services.inventory.domain import stock as stock_domain
from services.inventory.domain.adjustment import Revocation
from services.inventory.domain.reservation import Decision, Reservation, decide_reserve
from services.inventory.domain.stock import SkuStock

REASON = "stock adjusted at NORTH: damage (-5)"


def stock(sku: str, on_hand: Mapping[str, int]) -> SkuStock:
    state = SkuStock(sku=sku)
    for number, (warehouse, quantity) in enumerate(on_hand.items()):
        receipt = StockReceived(sku=sku, warehouse=warehouse, quantity=quantity, receipt_id=f"r-{number}")
        state = stock_domain.evolve(state, receipt)
    return state


def folded(state: SkuStock, *events: DomainEvent) -> SkuStock:
    for event in events:
        state = stock_domain.evolve(state, event)
    return state


def lines(**quantities: int) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())


class World:
    """SKUs and reservations, moved on by decisions as the handlers append them."""

    def __init__(self, **stocks: SkuStock) -> None:
        self.stocks: dict[str, SkuStock] = dict(stocks)
        self.reservations: dict[str, Reservation] = {}

    def apply(self, order_id: str, decision: Decision) -> None:
        for sku, events in decision.skus.items():
            self.stocks[sku] = folded(self.stocks[sku], *events)
        state = self.reservations.get(order_id, Reservation())
        for event in decision.reservation:
            state = reservations.evolve(state, event)
        self.reservations[order_id] = state

    def reserve(self, order_id: str, wanted: tuple[SkuQuantity, ...], *, backorder: bool = True) -> None:
        decision = decide_reserve(Reservation(), order_id, wanted, "north", backorder, self.stocks, ["NORTH"])
        self.apply(order_id, decision)

    def adjust(self, sku: str, warehouse: str, delta: int, reason: AdjustmentReason = "damage") -> None:
        events = adjustment.decide_adjustment(self.stocks[sku], sku, warehouse, delta, reason, "", "user:kim")
        self.stocks[sku] = folded(self.stocks[sku], *events)

    def revoke(self, sku: str, warehouse: str) -> list[Revocation]:
        revoked = adjustment.revocations(self.stocks[sku], warehouse)
        self.stocks[sku] = folded(self.stocks[sku], *adjustment.release_revoked(self.stocks[sku], revoked))
        return revoked

    def replan(self, revocation: Revocation) -> Decision:
        order_id = revocation.order_id
        decision = adjustment.decide_replan(
            self.reservations[order_id], order_id, [revocation], REASON, self.stocks, ["NORTH"]
        )
        self.apply(order_id, decision)
        return decision


# -- the adjustment itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "delta"),
    [("damage", 3), ("loss", 1), ("found", -2), ("correction", 0)],
    ids=["damage_up", "loss_up", "found_down", "zero"],
)
def test_an_adjustment_against_its_reason_is_invalid(reason: AdjustmentReason, delta: int) -> None:
    with pytest.raises(DomainError) as refused:
        adjustment.decide_adjustment(stock("A", {"NORTH": 10}), "A", "NORTH", delta, reason, "", "user:kim")

    assert refused.value.status == 422


def test_an_adjustment_below_zero_on_hand_is_refused_naming_what_is_on_hand() -> None:
    with pytest.raises(DomainError) as refused:
        adjustment.decide_adjustment(stock("A", {"NORTH": 4}), "A", "NORTH", -5, "loss", "", "user:kim")

    assert (refused.value.status, refused.value.code) == (409, "below_zero")
    assert "4 on hand at NORTH" in refused.value.message


def test_an_adjustment_books_on_hand_with_its_reason_and_approver() -> None:
    events = adjustment.decide_adjustment(
        stock("A", {"NORTH": 10}), "A", "NORTH", -2, "damage", "forklift", "user:kim"
    )

    assert events == [
        StockAdjusted(
            sku="A", warehouse="NORTH", delta=-2, reason="damage", note="forklift", approved_by="user:kim"
        )
    ]
    assert folded(stock("A", {"NORTH": 10}), *events).on_hand == {"NORTH": 8}


def test_an_adjustment_that_leaves_reservations_covered_revokes_nothing() -> None:
    world = World(A=stock("A", {"NORTH": 10}))
    world.reserve("o-1", lines(A=6))

    world.adjust("A", "NORTH", -4)

    assert world.revoke("A", "NORTH") == []


# -- which reservations lose their stock -------------------------------------------------------


def test_the_newest_reservations_lose_only_what_no_longer_fits() -> None:
    world = World(A=stock("A", {"NORTH": 9}))
    for order_id, quantity in (("o-1", 3), ("o-2", 4), ("o-3", 2)):
        world.reserve(order_id, lines(A=quantity))
    world.adjust("A", "NORTH", -4)

    revoked = world.revoke("A", "NORTH")

    assert revoked == [Revocation("o-3", "A", "NORTH", 2), Revocation("o-2", "A", "NORTH", 2)]
    a = world.stocks["A"]
    assert dict(a.allocations) == {"o-1": {"NORTH": 3}, "o-2": {"NORTH": 2}}
    assert a.reserved("NORTH") == a.on_hand["NORTH"] == 5


def test_an_order_keeps_what_it_holds_elsewhere_while_it_is_planned_again() -> None:
    a = folded(
        stock("A", {"NORTH": 4, "SOUTH": 1}),
        StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 4, "SOUTH": 1}),
    )

    events = adjustment.release_revoked(a, [Revocation("o-1", "A", "NORTH", 2)])

    assert events == [
        StockDeallocated(sku="A", order_id="o-1", warehouses={"NORTH": 4, "SOUTH": 1}),
        StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 2, "SOUTH": 1}),
    ]


def test_no_order_is_allocated_again_while_more_is_reserved_than_on_hand() -> None:
    a = folded(
        stock("A", {"NORTH": 10, "SOUTH": 3}),
        StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 4}),
        StockAllocated(sku="A", order_id="o-2", warehouses={"NORTH": 3, "SOUTH": 2}),
        StockAllocated(sku="A", order_id="o-3", warehouses={"NORTH": 3, "SOUTH": 1}),
        StockAdjusted(sku="A", warehouse="NORTH", delta=-5, reason="loss", approved_by="user:kim"),
    )
    revoked = adjustment.revocations(a, "NORTH")
    assert revoked == [Revocation("o-3", "A", "NORTH", 3), Revocation("o-2", "A", "NORTH", 2)]

    for event in adjustment.release_revoked(a, revoked):
        a = folded(a, event)
        if isinstance(event, StockAllocated):
            assert all(a.reserved(w) <= a.on_hand[w] for w in a.on_hand), event

    assert dict(a.allocations) == {"o-1": {"NORTH": 4}, "o-3": {"SOUTH": 1}, "o-2": {"NORTH": 1, "SOUTH": 2}}


def test_a_partly_dispatched_order_keeps_its_place_so_a_newer_reservation_is_revoked_first() -> None:
    a = folded(
        stock("A", {"NORTH": 6, "SOUTH": 2}),
        StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 3, "SOUTH": 2}),
        StockAllocated(sku="A", order_id="o-2", warehouses={"NORTH": 3}),
        StockDispatched(sku="A", order_id="o-1", warehouse="SOUTH", quantity=2, shipment_id="s-1"),
        StockAdjusted(sku="A", warehouse="NORTH", delta=-1, reason="damage", approved_by="user:kim"),
    )

    assert list(a.allocations) == ["o-1", "o-2"]
    assert adjustment.revocations(a, "NORTH") == [Revocation("o-2", "A", "NORTH", 1)]


def test_a_dispatched_quantity_is_gone_and_never_revoked() -> None:
    world = World(A=stock("A", {"NORTH": 5}))
    world.reserve("o-1", lines(A=5))
    dispatched = StockDispatched(sku="A", order_id="o-1", warehouse="NORTH", quantity=3, shipment_id="s-1")
    world.stocks["A"] = folded(world.stocks["A"], dispatched)
    world.adjust("A", "NORTH", -2, "loss")

    revoked = world.revoke("A", "NORTH")

    assert revoked == [Revocation("o-1", "A", "NORTH", 2)]
    assert world.stocks["A"].reserved("NORTH") == 0


# -- the order is reserved again at once ---------------------------------------------------------


def test_a_revoked_order_is_reserved_again_elsewhere_with_its_whole_allocation() -> None:
    world = World(A=stock("A", {"NORTH": 5, "SOUTH": 10}), B=stock("B", {"NORTH": 3}))
    world.reserve("o-1", lines(A=5, B=1))
    world.adjust("A", "NORTH", -5)
    (revocation,) = world.revoke("A", "NORTH")

    decision = world.replan(revocation)

    assert decision.reservation == [
        ReservationRevoked(order_id="o-1", sku="A", warehouse="NORTH", quantity=5, reason=REASON),
        StockReserved(
            order_id="o-1",
            allocations=(
                Allocation(sku="A", warehouse="SOUTH", quantity=5),
                Allocation(sku="B", warehouse="NORTH", quantity=1),
            ),
        ),
    ]
    assert decision.skus == {"A": [StockAllocated(sku="A", order_id="o-1", warehouses={"SOUTH": 5})]}
    assert world.reservations["o-1"].status == "reserved"
    assert world.stocks["A"].reserved("SOUTH") == 5


def test_a_partly_revoked_order_is_planned_again_as_a_whole_one_warehouse_rather_than_a_split() -> None:
    world = World(A=stock("A", {"NORTH": 5, "SOUTH": 10}))
    world.reserve("o-1", lines(A=5))
    world.adjust("A", "NORTH", -2)
    (revocation,) = world.revoke("A", "NORTH")

    decision = world.replan(revocation)

    assert decision.skus == {
        "A": [
            StockDeallocated(sku="A", order_id="o-1", warehouses={"NORTH": 3}),
            StockAllocated(sku="A", order_id="o-1", warehouses={"SOUTH": 5}),
        ]
    }
    assert decision.reservation[-1] == StockReserved(
        order_id="o-1", allocations=(Allocation(sku="A", warehouse="SOUTH", quantity=5),)
    )
    assert world.stocks["A"].available("NORTH") == 3


def test_a_partly_revoked_order_keeps_what_is_left_in_its_region_and_takes_the_rest_elsewhere() -> None:
    world = World(A=stock("A", {"NORTH": 5, "SOUTH": 3}))
    world.reserve("o-1", lines(A=5))
    world.adjust("A", "NORTH", -3)
    (revocation,) = world.revoke("A", "NORTH")

    world.replan(revocation)

    assert world.stocks["A"].allocations["o-1"] == {"NORTH": 2, "SOUTH": 3}
    assert world.reservations["o-1"].allocations == (
        Allocation(sku="A", warehouse="NORTH", quantity=2),
        Allocation(sku="A", warehouse="SOUTH", quantity=3),
    )


def test_a_revoked_order_with_no_stock_left_is_backordered_and_lets_go_of_everything() -> None:
    world = World(A=stock("A", {"NORTH": 5}), B=stock("B", {"NORTH": 3}))
    world.reserve("o-1", lines(A=5, B=1), backorder=True)
    world.adjust("A", "NORTH", -3)
    (revocation,) = world.revoke("A", "NORTH")

    decision = world.replan(revocation)

    assert decision.reservation == [
        ReservationRevoked(order_id="o-1", sku="A", warehouse="NORTH", quantity=3, reason=REASON),
        StockShortage(
            order_id="o-1", lines=lines(A=5, B=1), region="north", missing=lines(A=3), backordered=True
        ),
    ]
    assert decision.skus == {
        "A": [
            StockDeallocated(sku="A", order_id="o-1", warehouses={"NORTH": 2}),
            BackorderQueued(sku="A", order_id="o-1", quantity=5),
        ],
        "B": [StockDeallocated(sku="B", order_id="o-1", warehouses={"NORTH": 1})],
    }
    assert world.reservations["o-1"].status == "backordered"
    assert world.stocks["B"].available("NORTH") == 3  # nothing is promised to a waiting order


def test_a_revoked_order_whose_policy_refuses_shortages_is_refused() -> None:
    world = World(A=stock("A", {"NORTH": 5}))
    world.reserve("o-1", lines(A=5), backorder=False)
    world.adjust("A", "NORTH", -5, "loss")
    (revocation,) = world.revoke("A", "NORTH")

    decision = world.replan(revocation)

    shortage = decision.reservation[-1]
    assert isinstance(shortage, StockShortage)
    assert (shortage.backordered, shortage.missing) == (False, lines(A=5))
    assert world.stocks["A"].backorders == ()
    assert world.reservations["o-1"].status == "refused"


def test_a_reservation_answered_before_requests_were_kept_is_planned_from_its_allocations() -> None:
    a = stock("A", {"SOUTH": 4})  # NORTH's 4 are gone, and no longer allocated to o-1
    legacy = reservations.evolve(
        Reservation(),
        StockReserved(order_id="o-1", allocations=(Allocation(sku="A", warehouse="NORTH", quantity=4),)),
    )

    decision = adjustment.decide_replan(
        legacy, "o-1", [Revocation("o-1", "A", "NORTH", 4)], REASON, {"A": a}, []
    )

    assert decision.reservation[-1] == StockReserved(
        order_id="o-1", allocations=(Allocation(sku="A", warehouse="SOUTH", quantity=4),)
    )
