"""Transfers between warehouses: only available stock moves, what is in transit is in no
warehouse's available stock, and on hand + in transit stays the same until a write-off."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import (
    StockAllocated,
    StockReceived,
    StockTransferredIn,
    StockTransferredOut,
    StockTransitWrittenOff,
    TransferDispatched,
    TransferReceived,
    TransferRequested,
)
from libs.events.values import SkuQuantity
from services.inventory.domain import stock as stock_domain
from services.inventory.domain import transfer as transfers
from services.inventory.domain.stock import SkuStock
from services.inventory.domain.transfer import Transfer, TransferDecision

REFERENCE = "T-2024-001"
TRANSFER_ID = transfers.transfer_id_for(REFERENCE)


def stock(sku: str, on_hand: Mapping[str, int], *events: DomainEvent) -> SkuStock:
    state = SkuStock(sku=sku)
    for number, (warehouse, quantity) in enumerate(on_hand.items()):
        state = stock_domain.evolve(
            state, StockReceived(sku=sku, warehouse=warehouse, quantity=quantity, receipt_id=f"r-{number}")
        )
    for event in events:
        state = stock_domain.evolve(state, event)
    return state


def lines(**quantities: int) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in quantities.items())


def transfer_after(*events: DomainEvent) -> Transfer:
    state = Transfer()
    for event in events:
        state = transfers.evolve(state, event)
    return state


def applied(stocks: Mapping[str, SkuStock], decision: TransferDecision) -> dict[str, SkuStock]:
    after = dict(stocks)
    for sku, events in decision.skus.items():
        for event in events:
            after[sku] = stock_domain.evolve(after[sku], event)
    return after


def request(
    stocks: Mapping[str, SkuStock], wanted: tuple[SkuQuantity, ...], state: Transfer | None = None
) -> list[DomainEvent]:
    return transfers.decide_request(
        state or Transfer(), TRANSFER_ID, REFERENCE, "NORTH", "SOUTH", wanted, stocks
    )


def owned(stock: SkuStock) -> int:
    """What the company has of the SKU: on hand anywhere plus on its way between warehouses."""
    return sum(stock.on_hand.values()) + sum(q for _, _, q in stock.in_transit.values())


def dispatched(
    stocks: Mapping[str, SkuStock], wanted: tuple[SkuQuantity, ...]
) -> tuple[Transfer, dict[str, SkuStock]]:
    requested = transfer_after(*request(stocks, wanted))
    decision = transfers.decide_dispatch(requested, stocks)
    return transfer_after(*request(stocks, wanted), *decision.transfer), applied(stocks, decision)


# -- request -----------------------------------------------------------------------------------


def test_a_transfer_of_available_stock_is_requested() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}

    events = request(stocks, lines(A=4))

    assert events == [
        TransferRequested(
            transfer_id=TRANSFER_ID,
            reference=REFERENCE,
            from_warehouse="NORTH",
            to_warehouse="SOUTH",
            lines=lines(A=4),
        )
    ]
    assert transfer_after(*events).status == "requested"


def test_a_transfer_of_reserved_stock_is_refused_naming_the_sku_and_what_is_available() -> None:
    reserved = StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 7})
    stocks = {"A": stock("A", {"NORTH": 10}, reserved), "B": stock("B", {"NORTH": 5})}

    with pytest.raises(DomainError) as refused:
        request(stocks, lines(A=4, B=5))

    assert (refused.value.status, refused.value.code) == (409, "insufficient_stock")
    assert refused.value.message == "SKU A: 3 available at NORTH, the transfer asks for 4"


def test_the_same_request_again_changes_nothing() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    first = transfer_after(*request(stocks, lines(A=4)))

    again = request({}, lines(A=4), state=first)

    assert again == []


def test_the_same_reference_with_other_content_is_refused_naming_the_difference() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    first = transfer_after(*request(stocks, lines(A=4)))

    with pytest.raises(DomainError) as refused:
        transfers.decide_request(first, TRANSFER_ID, REFERENCE, "NORTH", "EAST", lines(A=5), stocks)

    assert (refused.value.status, refused.value.code) == (409, "transfer_reference_reused")
    assert "to_warehouse EAST instead of SOUTH" in refused.value.message
    assert "A x 5 instead of 4" in refused.value.message


def test_a_transfer_into_the_same_warehouse_is_invalid() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}

    with pytest.raises(DomainError) as refused:
        transfers.decide_request(Transfer(), TRANSFER_ID, REFERENCE, "NORTH", "NORTH", lines(A=1), stocks)

    assert refused.value.status == 422


# -- dispatch --------------------------------------------------------------------------------


def test_dispatch_takes_the_stock_out_of_both_warehouses_available_stock_into_transit() -> None:
    stocks = {"A": stock("A", {"NORTH": 10, "SOUTH": 2})}

    transfer, after = dispatched(stocks, lines(A=4))

    a = after["A"]
    assert transfer.status == "dispatched"
    assert (a.on_hand["NORTH"], a.available("NORTH"), a.in_transit_from("NORTH")) == (6, 6, 4)
    assert (a.on_hand["SOUTH"], a.available("SOUTH"), a.in_transit_to("SOUTH")) == (2, 2, 4)
    assert owned(a) == owned(stocks["A"]) == 12


def test_dispatch_checks_available_stock_again() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    requested = transfer_after(*request(stocks, lines(A=4)))
    stocks = {
        "A": stock_domain.evolve(
            stocks["A"], StockAllocated(sku="A", order_id="o-1", warehouses={"NORTH": 8})
        )
    }

    with pytest.raises(DomainError) as refused:
        transfers.decide_dispatch(requested, stocks)

    assert refused.value.message == "SKU A: 2 available at NORTH, the transfer asks for 4"


def test_dispatching_again_changes_nothing() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, after = dispatched(stocks, lines(A=4))

    assert transfers.decide_dispatch(transfer, after) == transfers.NOTHING


# -- receive and write off -------------------------------------------------------------------


def test_a_partial_receipt_leaves_the_rest_in_transit_and_the_total_unchanged() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, after = dispatched(stocks, lines(A=4))

    decision = transfers.decide_receive(transfer, lines(A=3), None)

    assert decision.skus == {
        "A": [
            StockTransferredIn(
                sku="A", transfer_id=TRANSFER_ID, from_warehouse="NORTH", to_warehouse="SOUTH", quantity=3
            )
        ]
    }
    after = applied(after, decision)
    a = after["A"]
    assert (a.on_hand["SOUTH"], a.in_transit_to("SOUTH"), a.in_transit_from("NORTH")) == (3, 1, 1)
    assert owned(a) == 10
    assert transfers.evolve(transfer, decision.transfer[0]).status == "partially_received"


def test_receiving_the_rest_completes_the_transfer() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, after = dispatched(stocks, lines(A=4))
    first = transfers.decide_receive(transfer, lines(A=3), None)
    transfer, after = transfers.evolve(transfer, first.transfer[0]), applied(after, first)

    rest = transfers.decide_receive(transfer, lines(A=1), None)

    a = applied(after, rest)["A"]
    assert (a.on_hand, dict(a.in_transit)) == ({"NORTH": 6, "SOUTH": 4}, {})
    assert transfers.evolve(transfer, rest.transfer[0]).status == "completed"


def test_receiving_more_than_is_in_transit_is_refused() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, _ = dispatched(stocks, lines(A=4))

    with pytest.raises(DomainError) as refused:
        transfers.decide_receive(transfer, lines(A=5), None)

    assert (refused.value.status, refused.value.code) == (409, "more_than_in_transit")


def test_receiving_before_dispatch_is_refused() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    requested = transfer_after(*request(stocks, lines(A=4)))

    with pytest.raises(DomainError) as refused:
        transfers.decide_receive(requested, lines(A=4), None)

    assert refused.value.code == "transfer_not_dispatched"


def test_a_receipt_sent_again_is_booked_once_and_its_id_cannot_book_other_goods() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, _ = dispatched(stocks, lines(A=4))
    first = transfers.decide_receive(transfer, lines(A=2), "GRN-1")
    transfer = transfers.evolve(transfer, first.transfer[0])

    assert transfers.decide_receive(transfer, lines(A=2), "GRN-1") == transfers.NOTHING
    with pytest.raises(DomainError) as refused:
        transfers.decide_receive(transfer, lines(A=1), "GRN-1")
    assert refused.value.code == "receipt_reused"


def test_writing_off_what_is_left_in_transit_takes_it_off_the_books_and_completes() -> None:
    stocks = {"A": stock("A", {"NORTH": 10}), "B": stock("B", {"NORTH": 5})}
    transfer, after = dispatched(stocks, lines(A=4, B=5))
    received = transfers.decide_receive(transfer, lines(A=3), None)
    transfer, after = transfers.evolve(transfer, received.transfer[0]), applied(after, received)

    decision = transfers.decide_write_off(transfer, None, "pallet dropped in transit")

    assert decision.skus == {
        "A": [
            StockTransitWrittenOff(
                sku="A",
                transfer_id=TRANSFER_ID,
                from_warehouse="NORTH",
                to_warehouse="SOUTH",
                quantity=1,
                reason="pallet dropped in transit",
            )
        ],
        "B": [
            StockTransitWrittenOff(
                sku="B",
                transfer_id=TRANSFER_ID,
                from_warehouse="NORTH",
                to_warehouse="SOUTH",
                quantity=5,
                reason="pallet dropped in transit",
            )
        ],
    }
    after = applied(after, decision)
    assert (owned(after["A"]), owned(after["B"])) == (10 - 1, 5 - 5)
    assert transfers.evolve(transfer, decision.transfer[0]).status == "completed"


def test_a_partial_write_off_keeps_the_rest_in_transit() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, after = dispatched(stocks, lines(A=4))

    decision = transfers.decide_write_off(transfer, lines(A=1), "one carton crushed")

    assert applied(after, decision)["A"].in_transit_to("SOUTH") == 3
    assert transfers.evolve(transfer, decision.transfer[0]).status == "dispatched"


# -- cancel ------------------------------------------------------------------------------------


def test_a_requested_transfer_can_be_cancelled_and_then_not_dispatched() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    requested = transfer_after(*request(stocks, lines(A=4)))

    cancelled = transfers.decide_cancel(requested, "not needed")
    state = transfers.evolve(requested, cancelled[0])

    assert state.status == "cancelled"
    assert transfers.decide_cancel(state, "again") == []
    with pytest.raises(DomainError):
        transfers.decide_dispatch(state, stocks)


def test_a_dispatched_transfer_cannot_be_cancelled() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    transfer, _ = dispatched(stocks, lines(A=4))

    with pytest.raises(DomainError) as refused:
        transfers.decide_cancel(transfer, "too late")

    assert (refused.value.status, refused.value.code) == (409, "transfer_dispatched")


def test_the_transfer_and_its_stock_moves_carry_the_same_quantities() -> None:
    stocks = {"A": stock("A", {"NORTH": 10})}
    requested = transfer_after(*request(stocks, lines(A=4)))

    decision = transfers.decide_dispatch(requested, stocks)

    assert decision.transfer == [TransferDispatched(transfer_id=TRANSFER_ID, lines=lines(A=4))]
    assert decision.skus == {
        "A": [
            StockTransferredOut(
                sku="A", transfer_id=TRANSFER_ID, from_warehouse="NORTH", to_warehouse="SOUTH", quantity=4
            )
        ]
    }
    received = transfers.decide_receive(transfers.evolve(requested, decision.transfer[0]), lines(A=4), "g")
    assert received.transfer == [TransferReceived(transfer_id=TRANSFER_ID, lines=lines(A=4), receipt_id="g")]
