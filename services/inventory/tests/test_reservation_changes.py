"""The order desk's changes to reservations (issue 15): amendments, splits and merges move only
the difference, keep queue places, refuse whole, and change nothing when repeated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderMoved,
    BackorderResized,
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    ShipmentCreated,
    StockAllocated,
    StockDeallocated,
    StockReceived,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain import reservation as reservation_domain
from services.inventory.domain import shipment as shipment_domain
from services.inventory.domain import stock as stock_domain
from services.inventory.domain.reservation import Reservation, decide_reserve
from services.inventory.domain.reservation_changes import (
    DeskDecision,
    Source,
    decide_adjust,
    decide_move,
    given_up,
)
from services.inventory.domain.shipment import Shipment
from services.inventory.domain.stock import BackorderPolicy, SkuStock


def lines(**quantities: int) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())


@dataclass
class World:
    """Every SKU and reservation, changed only through the deciders' events, as the handlers do."""

    stocks: dict[str, SkuStock] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    policy: BackorderPolicy = field(default_factory=BackorderPolicy)

    def receive(self, sku: str, warehouse: str, quantity: int) -> None:
        receipt = StockReceived(
            sku=sku, warehouse=warehouse, quantity=quantity, receipt_id=f"{sku}{warehouse}"
        )
        self._fold_sku(sku, [receipt])

    def _fold_sku(self, sku: str, events: Sequence[DomainEvent]) -> None:
        state = self.stocks.get(sku, SkuStock(sku=sku))
        for event in events:
            state = stock_domain.evolve(state, event)
        self.stocks[sku] = state

    def _fold_reservation(self, order_id: str, events: Sequence[DomainEvent]) -> None:
        state = self.reservation(order_id)
        for event in events:
            state = reservation_domain.evolve(state, event)
        self.reservations[order_id] = state

    def reservation(self, order_id: str) -> Reservation:
        return self.reservations.get(order_id, Reservation())

    def reserve(self, order_id: str, **quantities: int) -> Reservation:
        for sku in quantities:
            self.stocks.setdefault(sku, SkuStock(sku=sku))
        decision = decide_reserve(
            self.reservation(order_id),
            order_id,
            lines(**quantities),
            None,
            True,
            self.stocks,
            [],
            self.policy,
        )
        for sku, events in decision.skus.items():
            self._fold_sku(sku, events)
        self._fold_reservation(order_id, decision.reservation)
        return self.reservation(order_id)

    def ship(self, order_id: str) -> list[str]:
        created = shipment_domain.decide_create_shipments(
            order_id, "standard", self.reservation(order_id).allocations, {}, []
        )
        for event in created:
            self.shipments[event.shipment_id] = shipment_domain.evolve(Shipment(), event)
        return [event.shipment_id for event in created]

    def shipments_of(self, order_id: str) -> list[Shipment]:
        return [s for s in self.shipments.values() if s.order_id == order_id]

    def apply(self, decision: DeskDecision) -> DeskDecision:
        for sku, events in decision.skus.items():
            self._fold_sku(sku, events)
        for order_id, events in decision.reservations.items():
            self._fold_reservation(order_id, events)
        for shipment_id, events in decision.shipments.items():
            for event in events:
                self.shipments[shipment_id] = shipment_domain.evolve(self.shipments[shipment_id], event)
        return decision

    def amend(
        self,
        order_id: str,
        amendment_id: str,
        backorder: bool = True,
        cancel_shipments: bool = False,
        **quantities: int,
    ) -> DeskDecision:
        reservation = self.reservation(order_id)
        for sku in quantities:
            self.stocks.setdefault(sku, SkuStock(sku=sku))
        return self.apply(
            decide_adjust(
                reservation,
                order_id,
                amendment_id,
                lines(**quantities),
                backorder,
                self.stocks,
                [],
                self.policy,
                self.shipments_of(order_id),
                cancel_shipments,
            )
        )

    def move(
        self, target: str, move_id: str, moves: dict[str, dict[str, int]], backorder: bool = True
    ) -> DeskDecision:
        sources = [
            Source(order_id, self.reservation(order_id), units, (), self.shipments_of(order_id))
            for order_id, units in moves.items()
        ]
        return self.apply(
            decide_move(
                self.reservation(target),
                target,
                move_id,
                sources,
                None,
                backorder,
                self.stocks,
                [],
                self.policy,
            )
        )

    def held(self, order_id: str, sku: str) -> dict[str, int]:
        return dict(self.stocks[sku].allocations.get(order_id, {}))

    def queue(self, sku: str) -> list[tuple[str, int]]:
        return list(self.stocks[sku].backorders)

    def available(self, sku: str) -> int:
        return self.stocks[sku].total_available()


def answer(decision: DeskDecision, order_id: str) -> DomainEvent:
    return decision.reservations[order_id][-1]


def adjusted(decision: DeskDecision, order_id: str) -> ReservationAdjusted:
    event = answer(decision, order_id)
    assert isinstance(event, ReservationAdjusted), event
    return event


# -- the units an order gives up --------------------------------------------------------------


def test_an_order_gives_up_units_from_its_smallest_holdings_first() -> None:
    assert given_up({"NORTH": 5, "SOUTH": 2, "EAST": 2}, 3) == {"EAST": 2, "SOUTH": 1}
    assert given_up({"NORTH": 1}, 2) is None


def test_a_partial_deallocation_leaves_the_rest_of_the_allocation_where_it_was() -> None:
    world = World()
    world.receive("A", "NORTH", 10)
    world.reserve("o-1", A=6)
    world.reserve("o-2", A=1)

    world._fold_sku("A", [StockDeallocated(sku="A", order_id="o-1", warehouses={"NORTH": 4})])

    assert list(world.stocks["A"].allocations.items()) == [("o-1", {"NORTH": 2}), ("o-2", {"NORTH": 1})]
    assert world.available("A") == 7


# -- amending a reserved order ----------------------------------------------------------------


def test_amending_up_reserves_just_the_extra_units_and_leaves_unchanged_lines_alone() -> None:
    world = World()
    world.receive("A", "NORTH", 10)
    world.receive("B", "NORTH", 10)
    world.reserve("o-1", A=2, B=3)
    untouched = world.stocks["B"]

    decision = world.amend("o-1", "am-1", A=5, B=3)

    reply = adjusted(decision, "o-1")
    assert "B" not in decision.skus and world.stocks["B"] == untouched
    assert world.held("o-1", "A") == {"NORTH": 5} and world.available("A") == 5
    assert reply.added == lines(A=3) and reply.released == () and not reply.waiting
    assert reply.lines == lines(A=5, B=3)
    assert set(reply.allocations) == {
        Allocation(sku="A", warehouse="NORTH", quantity=5),
        Allocation(sku="B", warehouse="NORTH", quantity=3),
    }
    assert world.reservation("o-1").status == "reserved" and world.reservation("o-1").lines == lines(A=5, B=3)


def test_amending_down_gives_back_just_the_units_no_longer_wanted_and_frees_them() -> None:
    world = World()
    world.receive("A", "NORTH", 4)
    world.receive("A", "SOUTH", 2)
    world.reserve("o-1", A=6)

    decision = world.amend("o-1", "am-1", A=3)

    assert decision.skus["A"] == [
        StockDeallocated(sku="A", order_id="o-1", warehouses={"SOUTH": 2, "NORTH": 1})
    ]
    assert world.held("o-1", "A") == {"NORTH": 3}
    assert adjusted(decision, "o-1").released == lines(A=3)
    assert decision.to_serve == {"A"}


def test_a_mixed_amendment_drops_a_line_raises_another_and_adds_a_new_sku() -> None:
    world = World()
    for sku in ("A", "B", "C"):
        world.receive(sku, "NORTH", 10)
    world.reserve("o-1", A=2, B=2)

    decision = world.amend("o-1", "am-1", B=4, C=1)

    reply = adjusted(decision, "o-1")
    assert world.held("o-1", "A") == {} and world.available("A") == 10
    assert world.held("o-1", "B") == {"NORTH": 4} and world.held("o-1", "C") == {"NORTH": 1}
    assert reply.added == lines(B=2, C=1) and reply.released == lines(A=2)
    assert decision.to_serve == {"A"}


def test_an_amendment_whose_extra_units_are_not_in_stock_is_refused_whole_and_changes_nothing() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.receive("B", "NORTH", 3)
    world.reserve("o-1", A=5, B=1)
    before = (dict(world.stocks), world.reservation("o-1"))

    decision = world.amend("o-1", "am-1", A=1, B=4)

    refused = answer(decision, "o-1")
    assert isinstance(refused, ReservationAdjustmentRefused)
    assert refused.missing == lines(B=1)
    assert decision.skus == {} and decision.shipments == {}
    assert world.stocks == before[0]
    assert world.reservation("o-1").lines == before[1].lines
    assert world.reservation("o-1").allocations == before[1].allocations


def test_extra_units_wait_their_turn_behind_orders_already_queued_for_the_sku() -> None:
    world = World()
    world.receive("A", "NORTH", 3)
    world.reserve("o-1", A=2)
    world.reserve("o-waiting", A=5)  # short: queued
    world.receive("A", "NORTH", 1)  # 2 available now, but o-waiting wants 5 and is first

    decision = world.amend("o-1", "am-1", A=3)

    assert isinstance(answer(decision, "o-1"), ReservationAdjustmentRefused)
    assert world.held("o-1", "A") == {"NORTH": 2}


def test_an_amendment_of_a_shipped_to_order_cancels_its_shipments_that_have_not_left() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    shipment_ids = world.ship("o-1")

    decision = world.amend("o-1", "am-1", A=3)

    assert adjusted(decision, "o-1").shipments_cancelled == tuple(shipment_ids)
    assert [world.shipments[s].status for s in shipment_ids] == ["cancelled"]


def test_an_amendment_that_changes_no_allocation_cancels_no_shipment() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    world.ship("o-1")

    decision = world.amend("o-1", "am-1", A=2)

    assert adjusted(decision, "o-1").shipments_cancelled == () and decision.skus == {}


def test_an_amendment_of_the_delivery_alone_cancels_the_shipments_when_asked_to() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    shipment_ids = world.ship("o-1")

    decision = world.amend("o-1", "am-1", cancel_shipments=True, A=2)

    assert adjusted(decision, "o-1").shipments_cancelled == tuple(shipment_ids) and decision.skus == {}
    assert world.held("o-1", "A") == {"NORTH": 2}


def test_the_same_amendment_again_changes_nothing_and_is_answered_the_same() -> None:
    world = World()
    world.receive("A", "NORTH", 10)
    world.reserve("o-1", A=2)
    first = adjusted(world.amend("o-1", "am-1", A=5), "o-1")

    again = world.amend("o-1", "am-1", A=5)

    assert again.repeated == (first,)
    assert again.skus == {} and again.reservations == {}
    assert world.held("o-1", "A") == {"NORTH": 5}


def test_a_refused_amendment_is_refused_again_even_once_the_stock_is_there() -> None:
    world = World()
    world.receive("A", "NORTH", 2)
    world.reserve("o-1", A=2)
    refused = answer(world.amend("o-1", "am-1", A=4), "o-1")
    world.receive("A", "SOUTH", 5)

    again = world.amend("o-1", "am-1", A=4)

    assert again.repeated == (refused,) and world.held("o-1", "A") == {"NORTH": 2}


# -- amending an order that waits for stock ---------------------------------------------------


def test_a_waiting_order_keeps_its_place_for_the_skus_it_still_wants() -> None:
    world = World()
    world.receive("B", "NORTH", 1)
    world.reserve("o-first", A=2, B=1)  # A short: queued
    world.reserve("o-second", A=1)

    decision = world.amend("o-first", "am-1", A=3)

    reply = adjusted(decision, "o-first")
    assert world.queue("A") == [("o-first", 3), ("o-second", 1)]
    assert BackorderResized(sku="A", order_id="o-first", quantity=3) in decision.skus["A"]
    assert reply.waiting and reply.missing == lines(A=3) and reply.allocations == ()
    assert world.reservation("o-first").status == "backordered"


def test_a_waiting_order_leaves_the_queue_of_a_dropped_sku_and_queues_last_for_a_new_short_one() -> None:
    world = World()
    world.reserve("o-1", A=2, C=1)  # A and C short
    world.reserve("o-other", D=1)

    world.amend("o-1", "am-1", C=1, D=4)

    assert world.queue("A") == []
    assert world.queue("C") == [("o-1", 1)]
    assert world.queue("D") == [("o-other", 1), ("o-1", 4)]


def test_a_waiting_order_that_drops_a_sku_lets_the_next_in_its_queue_through() -> None:
    world = World()
    world.receive("B", "NORTH", 3)
    world.reserve("o-big", A=1, B=5)  # waits for A and B
    world.reserve("o-small", B=2)  # 3 available, but o-big waits first (fifo)

    decision = world.amend("o-big", "am-1", A=1)

    assert world.queue("B") == [("o-small", 2)]
    assert "B" in decision.to_serve  # the handler serves o-small in the same transaction


def test_a_waiting_order_whose_new_lines_are_all_in_stock_is_allocated_at_once() -> None:
    world = World()
    world.receive("B", "NORTH", 3)
    world.reserve("o-1", A=2, B=1)  # A short

    decision = world.amend("o-1", "am-1", B=3)

    reply = adjusted(decision, "o-1")
    assert not reply.waiting and reply.allocations == (Allocation(sku="B", warehouse="NORTH", quantity=3),)
    assert world.queue("A") == [] and world.held("o-1", "B") == {"NORTH": 3}
    assert world.reservation("o-1").status == "reserved"


# -- splits -----------------------------------------------------------------------------------


def test_a_split_moves_allocated_units_with_their_warehouses() -> None:
    world = World()
    world.receive("A", "NORTH", 3)
    world.receive("A", "SOUTH", 2)
    world.receive("B", "NORTH", 2)
    world.reserve("o-1", A=5, B=2)
    shipment_ids = world.ship("o-1")
    available = world.available("A")

    decision = world.move("o-new", "mv-1", {"o-1": {"A": 2}})

    target = answer(decision, "o-new")
    assert isinstance(target, StockReserved)
    assert target.allocations == (Allocation(sku="A", warehouse="SOUTH", quantity=2),)
    source = adjusted(decision, "o-1")
    assert source.moved_to == "o-new" and source.lines == lines(A=3, B=2) and not source.waiting
    assert world.held("o-1", "A") == {"NORTH": 3} and world.held("o-new", "A") == {"SOUTH": 2}
    assert world.available("A") == available and decision.to_serve == frozenset()
    assert set(source.shipments_cancelled) == set(shipment_ids)
    assert world.reservation("o-new").status == "reserved"
    assert world.reservation("o-1").lines == lines(A=3, B=2)


def test_a_split_of_the_short_part_lets_the_source_ship_what_is_in_stock_now() -> None:
    world = World()
    world.receive("A", "NORTH", 2)
    world.reserve("o-early", B=1)  # B short: o-early waits first
    world.reserve("o-1", A=2, B=3)  # waits for B, behind o-early
    world.reserve("o-late", B=1)

    decision = world.move("o-new", "mv-1", {"o-1": {"B": 3}})

    source = adjusted(decision, "o-1")
    assert not source.waiting and source.allocations == (Allocation(sku="A", warehouse="NORTH", quantity=2),)
    assert world.reservation("o-1").status == "reserved"
    target = answer(decision, "o-new")
    assert isinstance(target, StockShortage) and target.backordered and target.missing == lines(B=3)
    assert world.queue("B") == [("o-early", 1), ("o-new", 3), ("o-late", 1)]
    assert BackorderMoved(sku="B", from_order_id="o-1", to_order_id="o-new", quantity=3) in decision.skus["B"]
    assert world.reservation("o-new").status == "backordered"


def test_a_split_of_part_of_a_queued_line_shares_the_place() -> None:
    world = World()
    world.reserve("o-1", B=5)
    world.reserve("o-late", B=1)

    world.move("o-new", "mv-1", {"o-1": {"B": 2}})

    assert world.queue("B") == [("o-new", 2), ("o-1", 3), ("o-late", 1)]


# -- merges -----------------------------------------------------------------------------------


def test_a_merge_of_two_reserved_orders_reserves_the_new_one_and_releases_both() -> None:
    world = World()
    world.receive("A", "NORTH", 2)
    world.receive("A", "SOUTH", 1)
    world.receive("B", "NORTH", 1)
    world.reserve("o-1", A=2)
    world.reserve("o-2", A=1, B=1)
    reserved_before = world.stocks["A"].reserved("NORTH") + world.stocks["A"].reserved("SOUTH")

    decision = world.move("o-merged", "mv-1", {"o-1": {"A": 2}, "o-2": {"A": 1, "B": 1}})

    target = answer(decision, "o-merged")
    assert isinstance(target, StockReserved)
    assert set(target.allocations) == {
        Allocation(sku="A", warehouse="NORTH", quantity=2),
        Allocation(sku="A", warehouse="SOUTH", quantity=1),
        Allocation(sku="B", warehouse="NORTH", quantity=1),
    }
    for order_id in ("o-1", "o-2"):
        reply = adjusted(decision, order_id)
        assert reply.lines == () and reply.allocations == () and reply.moved_to == "o-merged"
        assert world.reservation(order_id).status == "released"
    assert world.stocks["A"].reserved("NORTH") + world.stocks["A"].reserved("SOUTH") == reserved_before
    assert list(world.stocks["A"].allocations) == ["o-merged"]
    assert world.reservation("o-merged").lines == lines(A=3, B=1)


def test_a_merge_of_a_reserved_and_a_waiting_order_waits_whole_and_gives_the_stock_back() -> None:
    world = World()
    world.receive("A", "NORTH", 2)
    world.reserve("o-1", A=2)
    world.reserve("o-2", B=1)  # B short

    decision = world.move("o-merged", "mv-1", {"o-1": {"A": 2}, "o-2": {"B": 1}})

    target = answer(decision, "o-merged")
    assert isinstance(target, StockShortage) and target.missing == lines(B=1)
    assert world.queue("B") == [("o-merged", 1)]
    assert world.stocks["A"].allocations == {} and decision.to_serve == {"A", "B"}


def test_a_merge_of_two_waiting_orders_waits_at_the_earlier_of_their_places() -> None:
    world = World()
    world.reserve("o-1", B=2)
    world.reserve("o-between", B=1)
    world.reserve("o-2", B=3)

    decision = world.move("o-merged", "mv-1", {"o-1": {"B": 2}, "o-2": {"B": 3}})

    assert world.queue("B") == [("o-merged", 5), ("o-between", 1)]
    target = answer(decision, "o-merged")
    assert isinstance(target, StockShortage) and target.missing == lines(B=5)
    assert [world.reservation(o).status for o in ("o-1", "o-2")] == ["released", "released"]


def test_a_source_that_does_not_hold_the_units_refuses_the_whole_move() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    world.reserve("o-2", A=1)
    before = dict(world.stocks)

    decision = world.move("o-merged", "mv-1", {"o-1": {"A": 2}, "o-2": {"A": 2}})

    refused = answer(decision, "o-merged")
    assert isinstance(refused, ReservationAdjustmentRefused) and refused.order_id == "o-merged"
    assert refused.missing == lines(A=1)
    assert decision.skus == {}
    assert world.stocks == before
    # Each source hears it too (its order's change ends) and keeps what it held.
    for source in ("o-1", "o-2"):
        told = answer(decision, source)
        assert isinstance(told, ReservationAdjustmentRefused) and told.amendment_id == "mv-1"
        assert world.reservation(source).status == "reserved"
    assert list(decision.reservations) == ["o-merged", "o-1", "o-2"]


def test_the_same_move_again_changes_nothing_and_gives_every_answer_again() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    world.reserve("o-2", A=1)
    first = world.move("o-merged", "mv-1", {"o-1": {"A": 2}, "o-2": {"A": 1}})
    stocks = dict(world.stocks)

    again = world.move("o-merged", "mv-1", {"o-1": {"A": 2}, "o-2": {"A": 1}})

    assert again.repeated == (answer(first, "o-1"), answer(first, "o-2"), answer(first, "o-merged"))
    assert again.skus == {} and again.reservations == {} and world.stocks == stocks


def test_a_move_to_an_order_that_already_has_a_reservation_is_refused() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    world.reserve("o-2", A=1)

    decision = world.move("o-2", "mv-1", {"o-1": {"A": 1}})

    assert isinstance(answer(decision, "o-2"), ReservationAdjustmentRefused)
    assert world.held("o-1", "A") == {"NORTH": 2}


# -- shipments after an amendment --------------------------------------------------------------


def test_create_shipments_again_ships_the_warehouses_whose_shipments_were_cancelled() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.reserve("o-1", A=2)
    first = world.ship("o-1")
    world.amend("o-1", "am-1", A=3)

    created = shipment_domain.decide_create_shipments(
        "o-1", "standard", world.reservation("o-1").allocations, {}, world.shipments_of("o-1")
    )

    assert [(c.warehouse, c.lines) for c in created] == [("NORTH", lines(A=3))]
    assert created[0].shipment_id not in first
    for event in created:
        world.shipments[event.shipment_id] = shipment_domain.evolve(Shipment(), event)
    again = shipment_domain.decide_create_shipments(
        "o-1", "standard", world.reservation("o-1").allocations, {}, world.shipments_of("o-1")
    )
    assert again == []


def test_create_shipments_never_ships_a_warehouse_twice() -> None:
    created = shipment_domain.decide_create_shipments(
        "o-1", "standard", (Allocation(sku="A", warehouse="NORTH", quantity=1),), {}, []
    )
    live = [shipment_domain.evolve(Shipment(), event) for event in created]

    assert shipment_domain.decide_create_shipments("o-1", "standard", (), {}, live) == []
    assert isinstance(created[0], ShipmentCreated)


def test_an_allocation_event_for_a_new_sku_is_a_plain_allocation() -> None:
    world = World()
    world.receive("A", "NORTH", 5)
    world.receive("C", "NORTH", 5)
    world.reserve("o-1", A=1)

    decision = world.amend("o-1", "am-1", A=1, C=2)

    assert decision.skus["C"] == [StockAllocated(sku="C", order_id="o-1", warehouses={"NORTH": 2})]
