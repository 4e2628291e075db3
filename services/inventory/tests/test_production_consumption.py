"""A production order's components: reserved like a sales order's, then consumed once."""

from __future__ import annotations

from libs.events.inventory import ReservationConsumed, StockConsumed
from libs.events.values import SkuQuantity
from services.inventory.domain import reservation as reservations
from services.inventory.domain.reservation import RESERVATION, decide_consume, decide_reserve
from services.inventory.tests.test_reservations import applied, stock


def test_consuming_takes_the_reserved_components_out_of_stock_once() -> None:
    stocks = {"LEG": stock("LEG", {"NORTH": 10, "SOUTH": 3})}
    reserved = decide_reserve(
        reservations.Reservation(), "PO-1", [SkuQuantity(sku="LEG", quantity=12)], None, True, stocks, []
    )
    stocks = applied(stocks, reserved)
    reservation = RESERVATION.replay(reserved.reservation)
    assert reservation.status == "reserved"

    consumed = decide_consume(reservation, "PO-1")
    assert [type(e) for e in consumed.reservation] == [ReservationConsumed]
    assert {(e.warehouse, e.quantity) for e in consumed.skus["LEG"] if isinstance(e, StockConsumed)} == {
        ("NORTH", 10),
        ("SOUTH", 2),
    }
    after = applied(stocks, consumed)["LEG"]
    assert (after.on_hand, dict(after.allocations)) == ({"NORTH": 0, "SOUTH": 1}, {})
    assert after.total_available() == 1  # consuming reserved stock leaves available as it was

    again = RESERVATION.replay([*reserved.reservation, *consumed.reservation])
    assert again.status == "consumed"
    assert decide_consume(again, "PO-1") == reservations.Decision([], {})
