"""Shipments: one per warehouse holding part of an order, moved step by step through the
warehouse; every step that does not follow is refused naming both statuses, a repeated step
changes nothing, and the goods leave stock exactly once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import (
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentReadyForPickup,
    ShipmentTracked,
    StockAllocated,
    StockDeallocated,
    StockDispatched,
    StockReceived,
)
from libs.events.values import Allocation, ShippingMethod, SkuQuantity
from services.inventory.domain import stock as stock_domain
from services.inventory.domain.reservation import Reservation, decide_release
from services.inventory.domain.shipment import (
    SHIPMENT,
    CarrierReport,
    MissingFields,
    Shipment,
    decide_cancel,
    decide_collect,
    decide_create_shipments,
    decide_deliver,
    decide_dispatch,
    decide_pack,
    decide_pick,
    decide_ready_for_pickup,
    decide_track,
    evolve,
    goods_taken,
    shipment_id_for,
)
from services.inventory.domain.stock import SkuStock

ORDER = "order-1"
LINES = (SkuQuantity(sku="CHAIR", quantity=4), SkuQuantity(sku="TABLE", quantity=1))
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# -- helpers ---------------------------------------------------------------------------------


def new_shipment(method: ShippingMethod = "standard", warehouse: str = "NORTH") -> Shipment:
    return SHIPMENT.replay(
        [ShipmentCreated(shipment_id="s-1", order_id=ORDER, warehouse=warehouse, method=method, lines=LINES)]
    )


def after(shipment: Shipment, *events: DomainEvent) -> Shipment:
    for event in events:
        shipment = SHIPMENT.evolve(shipment, event)
    return shipment


def dispatch(shipment: Shipment) -> list[DomainEvent]:
    return decide_dispatch(shipment, "DHL", "TRACK-1")


# Each step, by the status it asks for.
STEPS: dict[str, Callable[[Shipment], list[DomainEvent]]] = {
    "picking": decide_pick,
    "packed": decide_pack,
    "dispatched": dispatch,
    "delivered": decide_deliver,
    "ready_for_pickup": decide_ready_for_pickup,
    "collected": decide_collect,
}
# What the warehouse may do, written out (not read from the domain's table): status -> next.
ALLOWED = {
    "standard": {
        ("pending", "picking"),
        ("picking", "packed"),
        ("packed", "dispatched"),
        ("dispatched", "delivered"),
    },
    "pickup": {
        ("pending", "picking"),
        ("picking", "packed"),
        ("packed", "ready_for_pickup"),
        ("ready_for_pickup", "collected"),
    },
}
ALLOWED["express"] = ALLOWED["standard"]
PATHS = {
    "standard": ["pending", "picking", "packed", "dispatched", "delivered"],
    "pickup": ["pending", "picking", "packed", "ready_for_pickup", "collected"],
}
PATHS["express"] = PATHS["standard"]


def at_status(method: ShippingMethod, status: str) -> Shipment:
    """A shipment moved along its method's path (or cancelled while pending) to `status`."""
    shipment = new_shipment(method)
    if status == "cancelled":
        return after(shipment, *decide_cancel(shipment, "order cancelled"))
    for target in PATHS[method][1 : PATHS[method].index(status) + 1]:
        shipment = after(shipment, *STEPS[target](shipment))
    assert shipment.status == status
    return shipment


def every_case(method: ShippingMethod) -> list[tuple[str, str]]:
    statuses = [*PATHS[method], "cancelled"]
    return [(status, target) for status in statuses for target in STEPS]


# -- creation ----------------------------------------------------------------------------------


def allocations(*rows: tuple[str, str, int]) -> tuple[Allocation, ...]:
    return tuple(Allocation(sku=sku, warehouse=wh, quantity=q) for sku, wh, q in rows)


def test_an_order_reserved_across_two_warehouses_ships_as_two_parcels() -> None:
    reserved = allocations(("CHAIR", "NORTH", 3), ("CHAIR", "SOUTH", 1), ("TABLE", "SOUTH", 1))

    created = decide_create_shipments(ORDER, "express", reserved, {}, [])

    assert created == [
        ShipmentCreated(
            shipment_id=shipment_id_for(ORDER, "NORTH"),
            order_id=ORDER,
            warehouse="NORTH",
            method="express",
            lines=(SkuQuantity(sku="CHAIR", quantity=3),),
        ),
        ShipmentCreated(
            shipment_id=shipment_id_for(ORDER, "SOUTH"),
            order_id=ORDER,
            warehouse="SOUTH",
            method="express",
            lines=(SkuQuantity(sku="CHAIR", quantity=1), SkuQuantity(sku="TABLE", quantity=1)),
        ),
    ]


def test_shipment_ids_are_derived_from_order_and_warehouse() -> None:
    assert shipment_id_for(ORDER, "NORTH") == shipment_id_for(ORDER, "NORTH")
    assert len({shipment_id_for(ORDER, "NORTH"), shipment_id_for(ORDER, "SOUTH")}) == 2
    assert shipment_id_for("order-2", "NORTH") != shipment_id_for(ORDER, "NORTH")


def test_an_order_with_shipments_gets_no_more() -> None:
    reserved = allocations(("CHAIR", "NORTH", 3))
    shipped = [
        evolve(Shipment(), event) for event in decide_create_shipments(ORDER, "standard", reserved, {}, [])
    ]

    assert decide_create_shipments(ORDER, "standard", reserved, {}, shipped) == []


def test_the_weight_comes_from_the_catalogue_when_every_sku_is_known() -> None:
    reserved = allocations(("CHAIR", "NORTH", 4), ("TABLE", "NORTH", 1))
    known = {"CHAIR": Decimal("6.250"), "TABLE": Decimal("23.5")}

    [created] = decide_create_shipments(ORDER, "standard", reserved, known, [])
    [unknown] = decide_create_shipments(ORDER, "standard", reserved, {"CHAIR": Decimal("6.25")}, [])
    [too_heavy] = decide_create_shipments(
        ORDER, "standard", reserved, {"CHAIR": Decimal("30000"), "TABLE": Decimal("1")}, []
    )

    assert created.weight_kg == Decimal("48.5")
    assert unknown.weight_kg is None
    assert too_heavy.weight_kg is None  # past what the contract carries: left unknown


# -- every step, allowed or refused ----------------------------------------------------------


@pytest.mark.parametrize("method", ["standard", "express", "pickup"])
def test_every_step_moves_only_from_the_status_before_it(method: ShippingMethod) -> None:
    for status, target in every_case(method):
        shipment = at_status(method, status)
        if (status, target) in ALLOWED[method]:
            moved = after(shipment, *STEPS[target](shipment))
            assert moved.status == target, (status, target)
        elif status == target:
            assert STEPS[target](shipment) == [], f"repeating {target} changed something"
        else:
            with pytest.raises(DomainError) as refused:
                STEPS[target](shipment)
            assert refused.value.status == 409, (status, target)
            assert refused.value.code == "shipment_transition_refused"
            assert f"is {status}" in refused.value.message, refused.value.message
            assert f"cannot become {target}" in refused.value.message, refused.value.message


def test_a_pickup_shipment_is_not_dispatched_and_a_carried_one_not_handed_over() -> None:
    with pytest.raises(DomainError) as pickup:
        dispatch(at_status("pickup", "packed"))
    with pytest.raises(DomainError) as carried:
        decide_ready_for_pickup(at_status("standard", "packed"))

    assert pickup.value.message == (
        "shipment s-1 is packed and ships by pickup: it cannot become dispatched"
        " (only express and standard shipments do)"
    )
    assert carried.value.message == (
        "shipment s-1 is packed and ships by standard: it cannot become ready_for_pickup"
        " (only pickup shipments do)"
    )


def test_a_refusal_says_which_status_the_step_needs() -> None:
    with pytest.raises(DomainError) as refused:
        decide_pack(at_status("standard", "pending"))

    assert refused.value.message == "shipment s-1 is pending: it cannot become packed (only from picking)"


# -- pack and dispatch details -----------------------------------------------------------------


def test_packing_records_the_weighed_weight_and_parcels() -> None:
    shipment = at_status("standard", "picking")

    events = decide_pack(shipment, Decimal("12.5"), 2)

    assert events == [ShipmentPacked(shipment_id="s-1", order_id=ORDER, weight_kg=Decimal("12.5"), parcels=2)]
    packed = after(shipment, *events)
    assert (packed.weight_kg, packed.parcels) == (Decimal("12.5"), 2)


def test_dispatch_carries_what_leaves_and_with_whom() -> None:
    events = dispatch(at_status("standard", "packed"))

    assert events == [
        ShipmentDispatched(
            shipment_id="s-1",
            order_id=ORDER,
            warehouse="NORTH",
            lines=LINES,
            carrier="DHL",
            tracking_number="TRACK-1",
        )
    ]


@pytest.mark.parametrize(
    ("carrier", "tracking_number", "missing"),
    [
        (None, "T-1", ("carrier",)),
        ("DHL", None, ("tracking_number",)),
        (None, None, ("carrier", "tracking_number")),
    ],
)
def test_a_carried_shipment_needs_carrier_and_tracking_number_to_leave(
    carrier: str | None, tracking_number: str | None, missing: tuple[str, ...]
) -> None:
    with pytest.raises(MissingFields) as refused:
        decide_dispatch(at_status("express", "packed"), carrier, tracking_number)

    assert refused.value.status == 422
    assert refused.value.fields == missing


def test_dispatching_again_with_the_same_or_no_tracking_is_a_repeat_and_with_another_is_refused() -> None:
    shipment = at_status("standard", "dispatched")

    assert decide_dispatch(shipment, "DHL", "TRACK-1") == []
    assert decide_dispatch(shipment, None, None) == []
    with pytest.raises(DomainError) as refused:
        decide_dispatch(shipment, "DHL", "TRACK-2")
    assert refused.value.status == 409
    assert refused.value.message == (
        "shipment s-1 was dispatched with DHL TRACK-1; this request says DHL TRACK-2"
    )


# -- cancellation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("standard", "pending"),
        ("standard", "picking"),
        ("standard", "packed"),
        ("pickup", "ready_for_pickup"),
    ],
)
def test_a_shipment_whose_goods_have_not_left_is_cancelled_with_its_order(
    method: ShippingMethod, status: str
) -> None:
    events = decide_cancel(at_status(method, status), "order cancelled")

    assert events == [ShipmentCancelled(shipment_id="s-1", order_id=ORDER, reason="order cancelled")]


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("standard", "dispatched"),
        ("standard", "delivered"),
        ("pickup", "collected"),
        ("standard", "cancelled"),
    ],
)
def test_a_shipment_that_left_or_was_cancelled_stays_as_it_is(method: ShippingMethod, status: str) -> None:
    assert decide_cancel(at_status(method, status), "order cancelled") == []


# -- carrier reports -------------------------------------------------------------------------------


def report(status: str = "in_transit", location: str = "Leipzig hub") -> CarrierReport:
    return CarrierReport(status, location, AT)  # type: ignore[arg-type]


def test_a_carrier_report_joins_the_history_once() -> None:
    shipment = at_status("standard", "dispatched")

    events = decide_track(shipment, "TRACK-1", report())
    again = decide_track(after(shipment, *events), "TRACK-1", report())

    assert events == [
        ShipmentTracked(
            shipment_id="s-1",
            order_id=ORDER,
            tracking_number="TRACK-1",
            status="in_transit",
            location="Leipzig hub",
            carrier_occurred_at=AT,
        )
    ]
    assert again == []
    assert decide_track(after(shipment, *events), "TRACK-1", report(location="Berlin")) != []


def test_a_delivered_report_delivers_the_shipment_once() -> None:
    shipment = at_status("standard", "dispatched")

    events = decide_track(shipment, "TRACK-1", report("delivered", "front door"))
    delivered = after(shipment, *events)
    late = decide_track(delivered, "TRACK-1", report("delivered", "porch"))

    assert [type(e) for e in events] == [ShipmentTracked, ShipmentDelivered]
    assert delivered.status == "delivered"
    assert [type(e) for e in late] == [ShipmentTracked]  # recorded, not delivered again


# -- the goods leave stock once ------------------------------------------------------------------


def stock_holding(order_id: str, north: int) -> SkuStock:
    state = SkuStock()
    for event in (
        StockReceived(sku="CHAIR", warehouse="NORTH", quantity=10, receipt_id="r-1"),
        StockReceived(sku="CHAIR", warehouse="SOUTH", quantity=5, receipt_id="r-2"),
        StockAllocated(sku="CHAIR", order_id=order_id, warehouses={"NORTH": north, "SOUTH": 1}),
        StockAllocated(sku="CHAIR", order_id="other", warehouses={"NORTH": 2}),
    ):
        state = stock_domain.evolve(state, event)
    return state


def test_dispatch_and_collection_take_the_shipped_lines_out() -> None:
    dispatched = dispatch(at_status("standard", "packed"))
    collected = decide_collect(at_status("pickup", "ready_for_pickup"))

    for events in (dispatched, collected):
        assert goods_taken(events) == [("s-1", ORDER, "NORTH", line) for line in LINES]
    assert collected == [ShipmentCollected(shipment_id="s-1", order_id=ORDER, warehouse="NORTH", lines=LINES)]
    assert goods_taken([ShipmentPicked(shipment_id="s-1", order_id=ORDER)]) == []
    assert goods_taken(decide_ready_for_pickup(at_status("pickup", "packed"))) == []
    assert goods_taken(decide_deliver(at_status("standard", "dispatched"))) == []
    assert isinstance(decide_ready_for_pickup(at_status("pickup", "packed"))[0], ShipmentReadyForPickup)


def test_dispatched_goods_leave_on_hand_and_reserved_together_and_available_stays() -> None:
    stock = stock_holding(ORDER, north=4)

    events = stock_domain.decide_dispatch(stock, ORDER, "NORTH", 4, "s-1")
    shipped = stock_domain.evolve(stock, events[0])

    assert events == [
        StockDispatched(sku="CHAIR", order_id=ORDER, warehouse="NORTH", quantity=4, shipment_id="s-1")
    ]
    assert (stock.on_hand["NORTH"], stock.reserved("NORTH"), stock.available("NORTH")) == (10, 6, 4)
    assert (shipped.on_hand["NORTH"], shipped.reserved("NORTH"), shipped.available("NORTH")) == (6, 2, 4)
    assert shipped.allocations[ORDER] == {"SOUTH": 1}
    assert shipped.allocations["other"] == {"NORTH": 2}


def test_goods_cannot_leave_twice_nor_more_than_the_order_holds() -> None:
    stock = stock_holding(ORDER, north=4)
    shipped = stock_domain.evolve(stock, *stock_domain.decide_dispatch(stock, ORDER, "NORTH", 4, "s-1"))

    with pytest.raises(DomainError) as twice:
        stock_domain.decide_dispatch(shipped, ORDER, "NORTH", 4, "s-1")
    with pytest.raises(DomainError) as more:
        stock_domain.decide_dispatch(stock, ORDER, "SOUTH", 2, "s-2")

    assert twice.value.message == "shipment s-1 takes 4 of CHAIR from NORTH, but order order-1 holds 0 there"
    assert more.value.message == "shipment s-2 takes 2 of CHAIR from SOUTH, but order order-1 holds 1 there"


def test_releasing_an_order_after_one_parcel_left_frees_only_what_is_still_reserved() -> None:
    stock = stock_holding(ORDER, north=4)
    shipped = stock_domain.evolve(stock, *stock_domain.decide_dispatch(stock, ORDER, "NORTH", 4, "s-1"))

    decision = decide_release(
        Reservation(order_id=ORDER, status="reserved"), ORDER, "cancelled", {"CHAIR": shipped}
    )

    assert decision.skus["CHAIR"] == [StockDeallocated(sku="CHAIR", order_id=ORDER, warehouses={"SOUTH": 1})]


def test_an_order_whose_whole_allocation_left_holds_nothing_to_release() -> None:
    stock = stock_holding(ORDER, north=4)
    for warehouse, quantity in (("NORTH", 4), ("SOUTH", 1)):
        stock = stock_domain.evolve(
            stock, *stock_domain.decide_dispatch(stock, ORDER, warehouse, quantity, f"s-{warehouse}")
        )

    decision = decide_release(
        Reservation(order_id=ORDER, status="reserved"), ORDER, "cancelled", {"CHAIR": stock}
    )

    assert ORDER not in stock.allocations
    assert "CHAIR" not in decision.skus
