"""The order desk's changes (amend, split, merge) as the order's saga runs them: given the
order's history, a person's request or a participant's answer, expect the events and commands
(the DSL of test_saga.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from libs.domain import DomainError, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.billing import (
    AdjustInvoice,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
    InvoicePaid,
    MoveInvoiceLines,
)
from libs.events.inventory import (
    AdjustReservation,
    CreateShipments,
    MoveReservations,
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    StockReserved,
)
from libs.events.order import (
    InvoiceRequested,
    OrderAmended,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderChangeApproved,
    OrderChangeHeld,
    OrderChangeRefused,
    OrderChangeRequested,
    OrderChangeResent,
    OrderChangeStepAnswered,
    OrderChangeUndoing,
    OrderConfirmed,
    OrderHeld,
    OrderInvoiced,
    OrderMerged,
    OrderNeedsAttention,
    OrderPlaced,
    OrderRejected,
    OrderReplyIgnored,
    OrderShipmentUpdated,
    OrderStockAllocated,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.events.values import Address, Allocation, OrderLine, SkuQuantity
from services.order.domain import desk
from services.order.domain.order import Order
from services.order.domain.review import ReviewFacts, ReviewPolicy
from services.order.domain.saga import Reaction, SagaPolicy, cancel, deadline_reached, react
from services.order.tests.test_saga import (
    INVOICE_ID,
    NOW,
    ORDER_ID,
    TOTAL,
    and_given,
    awaiting_payment,
    awaiting_stock,
    confirmed,
    expect,
    given,
    on_hold,
    placed,
    stock_shortage,
)

POLICY = SagaPolicy(parallel_steps=False)
FACTS = ReviewFacts()
LINES = placed().lines  # SKU-A 2 x 10.00, SKU-B 1 x 5.00, SKU-A 1 x 11.00
ONE_MORE_B = (*LINES, OrderLine(sku="SKU-B", quantity=1, unit_price=Decimal("5.00")))


def amendment(lines: tuple[OrderLine, ...] | None = ONE_MORE_B, change_id: str = "CHG-1") -> desk.Amendment:
    return desk.Amendment(change_id, lines, None, None, "customer called", "desk:ann")


def amend(
    order: Order, lines: tuple[OrderLine, ...] | None = ONE_MORE_B, policy: SagaPolicy = POLICY
) -> Reaction:
    return desk.amend(order, amendment(lines), FACTS, NOW, policy)


def adjusted(change_id: str = "CHG-1", *, waiting: bool = False, lines: int = 5) -> ReservationAdjusted:
    return ReservationAdjusted(
        order_id=ORDER_ID,
        amendment_id=change_id,
        lines=(SkuQuantity(sku="SKU-A", quantity=3), SkuQuantity(sku="SKU-B", quantity=lines - 3)),
        allocations=()
        if waiting
        else (
            Allocation(sku="SKU-A", warehouse="wh-north", quantity=3),
            Allocation(sku="SKU-B", warehouse="wh-north", quantity=lines - 3),
        ),
        waiting=waiting,
        missing=(SkuQuantity(sku="SKU-B", quantity=1),) if waiting else (),
    )


def invoice_adjusted(
    total: Decimal, paid: Decimal, *, refund: Decimal = Decimal("0.00"), change_id: str = "CHG-1"
) -> InvoiceAdjusted:
    return InvoiceAdjusted(
        order_id=ORDER_ID,
        invoice_id=INVOICE_ID,
        amendment_id=change_id,
        lines=(),
        previous_total=TOTAL,
        total=total,
        difference=total - TOTAL,
        amount_paid=paid,
        refund_amount=refund,
        refund_id="RFD-1" if refund else None,
    )


def shipped_created() -> tuple[DomainEvent, ...]:
    return (
        *confirmed(),
        OrderShipmentUpdated(order_id=ORDER_ID, shipment_id="shp-1", warehouse="wh-north", status="created"),
    )


# -- amend ------------------------------------------------------------------------------------


def test_amending_a_confirmed_order_asks_inventory_for_the_difference_first_then_billing() -> None:
    order = given(*shipped_created())
    requested = amend(order)
    adjust = expect(requested).events(OrderChangeRequested).command(AdjustReservation)
    assert adjust.lines == (SkuQuantity(sku="SKU-A", quantity=3), SkuQuantity(sku="SKU-B", quantity=2))
    assert adjust.cancel_shipments, "a confirmed order's shipments are made again from the new allocation"
    order = and_given(order, requested)
    assert order.change is not None and order.status == "confirmed", "the order is as it was until done"

    stock = desk.react(order, adjusted(), NOW, POLICY)
    expect(stock).events(OrderStockAllocated, OrderChangeStepAnswered).commands(AdjustInvoice)
    assert expect(stock).command(AdjustInvoice).lines == ONE_MORE_B


def test_a_paid_order_amended_up_owes_the_difference_and_ships_once_it_is_paid() -> None:
    order = given(*shipped_created())
    order = and_given(order, amend(order))
    order = and_given(order, desk.react(order, adjusted(), NOW, POLICY))

    applied = desk.react(order, invoice_adjusted(Decimal("41.00"), TOTAL), NOW, POLICY)

    expect(applied).events(OrderChangeStepAnswered, OrderAmended, OrderAwaitingPayment).no_commands()
    amended = expect(applied).event(OrderAmended)
    assert amended.previous_lines == LINES and amended.lines == ONE_MORE_B
    assert expect(applied).event(OrderAwaitingPayment).amount_due == Decimal("41.00")
    order = and_given(order, applied)
    assert (order.status, order.amount_due, order.amount_paid) == (
        "awaiting_payment",
        Decimal("41.00"),
        TOTAL,
    )
    assert order.placed is not None and order.placed.lines == ONE_MORE_B

    paid = react(
        order,
        InvoicePaid(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_paid=Decimal("41.00")),
        NOW,
        POLICY,
    )
    expect(paid).events(OrderConfirmed, ShipmentsRequested).commands(CreateShipments)
    assert expect(paid).dedupe_key(CreateShipments) == f"{ORDER_ID}:ship:1", (
        "a new message, not the first one again"
    )


def test_a_paid_order_amended_down_keeps_the_money_the_refund_told_and_ships_again_at_once() -> None:
    order = given(*shipped_created())
    fewer = (LINES[0], LINES[1])  # SKU-A 2, SKU-B 1: one SKU-A less
    order = and_given(order, amend(order, fewer))
    order = and_given(order, desk.react(order, adjusted(lines=4), NOW, POLICY))

    applied = desk.react(
        order, invoice_adjusted(Decimal("25.00"), Decimal("25.00"), refund=Decimal("11.00")), NOW, POLICY
    )

    expect(applied).events(OrderChangeStepAnswered, OrderAmended, ShipmentsRequested).commands(
        CreateShipments
    )
    assert expect(applied).event(OrderAmended).refunded == Decimal("11.00")
    order = and_given(order, applied)
    assert (order.status, order.amount_due, order.amount_paid) == (
        "confirmed",
        Decimal("25.00"),
        Decimal("25.00"),
    )


def test_extra_units_out_of_stock_refuse_the_amendment_and_the_order_stays_as_it_was() -> None:
    order = given(*awaiting_payment())
    order = and_given(order, amend(order))
    refused = ReservationAdjustmentRefused(
        order_id=ORDER_ID,
        amendment_id="CHG-1",
        missing=(SkuQuantity(sku="SKU-B", quantity=1),),
        reason="out of stock",
    )
    reaction = desk.react(order, refused, NOW, POLICY)
    expect(reaction).events(OrderChangeRefused).no_commands()
    after = and_given(order, reaction)
    assert after.change is None and after.status == "awaiting_payment"
    assert after.placed is not None and after.placed.lines == LINES
    assert "SKU-B (short 1)" in expect(reaction).event(OrderChangeRefused).reason


def test_an_amendment_over_the_review_limit_waits_for_a_person_then_goes_on() -> None:
    small_limit = SagaPolicy(parallel_steps=False, review=ReviewPolicy(amount_limit=Decimal("40.00")))
    order = given(*awaiting_payment())
    held = amend(order, policy=small_limit)  # 36.00 -> 41.00, over 40.00
    change = expect(held).events(OrderChangeRequested).no_commands().event(OrderChangeRequested)
    assert change.hold_reasons and "over the review limit" in change.hold_reasons[0]
    order = and_given(order, held)
    assert order.status == "on_hold"

    approved = desk.approve_change(order, "desk:bob", NOW, small_limit)
    expect(approved).events(OrderChangeApproved).commands(AdjustReservation)
    assert and_given(order, approved).status == "awaiting_payment"


def test_a_held_amendment_rejected_changes_nothing_anywhere() -> None:
    small_limit = SagaPolicy(parallel_steps=False, review=ReviewPolicy(amount_limit=Decimal("40.00")))
    order = given(*awaiting_payment())
    order = and_given(order, amend(order, policy=small_limit))
    rejected = desk.reject_change(order, "too much", "desk:bob", NOW, small_limit)
    expect(rejected).events(OrderChangeRefused).no_commands()
    assert and_given(order, rejected).status == "awaiting_payment"


def test_an_on_account_amendment_over_the_credit_limit_is_held_for_finance_who_may_override() -> None:
    order = given(*shipped_created())
    order = and_given(order, amend(order))
    order = and_given(order, desk.react(order, adjusted(), NOW, POLICY))
    refused = InvoiceAdjustmentRefused(
        order_id=ORDER_ID,
        amendment_id="CHG-1",
        reason="credit",
        amount=Decimal("5.00"),
        open_balance=Decimal("990.00"),
        credit_limit=Decimal("1000.00"),
    )
    held = desk.react(order, refused, NOW, POLICY)
    expect(held).events(OrderChangeHeld).no_commands()
    order = and_given(order, held)
    assert order.status == "on_hold" and order.change is not None and order.change.awaiting == "credit"

    overridden = desk.approve_change(order, "finance:fay", NOW, POLICY)
    invoice = expect(overridden).events(OrderChangeApproved).command(AdjustInvoice)
    assert invoice.credit_limit_overridden_by == "finance:fay"


def test_finance_refusing_the_credit_puts_the_reservation_back_before_the_change_is_refused() -> None:
    order = given(*shipped_created())
    order = and_given(order, amend(order))
    order = and_given(order, desk.react(order, adjusted(), NOW, POLICY))
    refused = InvoiceAdjustmentRefused(
        order_id=ORDER_ID,
        amendment_id="CHG-1",
        reason="credit",
        amount=Decimal("5.00"),
        open_balance=Decimal("990.00"),
        credit_limit=Decimal("1000.00"),
    )
    order = and_given(order, desk.react(order, refused, NOW, POLICY))

    undo = desk.reject_change(order, "no", "finance:fay", NOW, POLICY)
    put_back = expect(undo).events(OrderChangeUndoing).command(AdjustReservation)
    assert put_back.amendment_id == "CHG-1:undo" and put_back.lines[1] == SkuQuantity(sku="SKU-B", quantity=1)
    order = and_given(order, undo)

    done = desk.react(order, adjusted("CHG-1:undo", lines=4), NOW, POLICY)
    expect(done).events(OrderStockAllocated, OrderChangeRefused, ShipmentsRequested).commands(CreateShipments)


def test_an_order_held_at_review_is_amended_in_place_and_reviewed_again() -> None:
    # Held as a possible duplicate: the person who amends it has looked at it, so the review
    # that follows asks only the rules about the order as it now is.
    order = given(*on_hold())
    reaction = amend(order)
    expect(reaction).events(OrderAmended, OrderApproved, StockReservationRequested)
    assert expect(reaction).event(StockReservationRequested).lines[1] == SkuQuantity(sku="SKU-B", quantity=2)
    assert and_given(order, reaction).placed.lines == ONE_MORE_B  # type: ignore[union-attr]


def test_an_order_held_for_its_address_stays_held_when_only_its_lines_change() -> None:
    no_city = placed(address=Address(line1="1 Main St", postal_code="12345", country="US"))
    order = given(
        no_city, OrderHeld(order_id=ORDER_ID, reasons=("delivery address is incomplete (missing city)",))
    )
    reaction = amend(order)
    held = expect(reaction).events(OrderAmended, OrderHeld).event(OrderHeld)
    assert "missing city" in held.reasons[0]


def test_an_order_is_not_amended_once_a_shipment_left_or_while_another_change_runs() -> None:
    left = given(
        *confirmed(),
        OrderShipmentUpdated(
            order_id=ORDER_ID, shipment_id="shp-1", warehouse="wh-north", status="dispatched"
        ),
    )
    with pytest.raises(DomainError) as refused:
        amend(left)
    assert refused.value.code == "already_dispatched"

    changing = and_given(given(*confirmed()), amend(given(*confirmed())))
    with pytest.raises(DomainError) as busy:
        amend(changing)
    assert busy.value.code == "change_in_progress"


def test_an_amendment_that_changes_nothing_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        amend(given(*confirmed()), LINES)
    assert refused.value.code == "nothing_to_amend"


def test_an_unanswered_amendment_is_asked_again_with_the_same_id_then_a_person_is_told() -> None:
    order = and_given(given(*confirmed()), amend(given(*confirmed())))
    again = desk.chase(order, NOW, POLICY)
    assert expect(again).events(OrderChangeResent).command(AdjustReservation).amendment_id == "CHG-1"
    order = and_given(order, again)
    order = and_given(order, desk.chase(order, NOW, POLICY))
    expect(desk.chase(order, NOW, POLICY)).events(OrderNeedsAttention)


def test_an_answer_about_another_change_is_ignored() -> None:
    order = and_given(given(*confirmed()), amend(given(*confirmed())))
    assert not desk.react(order, adjusted("CHG-other"), NOW, POLICY).events


# -- split ------------------------------------------------------------------------------------


def backordered_and_invoiced() -> tuple[DomainEvent, ...]:
    return (
        *awaiting_stock(),
        InvoiceRequested(order_id=ORDER_ID),
        OrderInvoiced(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_due=TOTAL, due_at=None),
    )


def test_splitting_off_the_missing_units_makes_a_new_order_that_moves_them_and_their_money() -> None:
    order = given(*backordered_and_invoiced())  # waits for SKU-B
    source, target = desk.split(
        order, {"SKU-B": 1}, desk.NewOrder("o-2", None), "CHG-S", "ship the rest now", "desk:ann", NOW, POLICY
    )
    expect(source).events(OrderChangeRequested).no_commands()
    placed_new = (
        expect(target).events(OrderPlaced, OrderApproved, StockReservationRequested).event(OrderPlaced)
    )
    assert placed_new.origin == "split" and placed_new.moved_from[0].order_id == ORDER_ID
    assert placed_new.lines == (OrderLine(sku="SKU-B", quantity=1, unit_price=Decimal("5.00")),)
    move = expect(target).command(MoveReservations)
    assert move.sources[0].from_order_id == ORDER_ID and move.move_id == "CHG-S"

    # The source: its rest is in stock now, and its invoice is credited for what moved.
    order = and_given(order, source)
    remaining = ReservationAdjusted(
        order_id=ORDER_ID,
        amendment_id="CHG-S",
        lines=(SkuQuantity(sku="SKU-A", quantity=3),),
        allocations=(Allocation(sku="SKU-A", warehouse="wh-north", quantity=3),),
        moved_to="o-2",
    )
    order = and_given(order, desk.react(order, remaining, NOW, POLICY))
    credited = invoice_adjusted(Decimal("31.00"), Decimal("0.00"), change_id="CHG-S").model_copy(
        update={"moved_to": "o-2"}
    )
    applied = desk.react(order, credited, NOW, POLICY)
    expect(applied).events(OrderChangeStepAnswered, OrderAmended, OrderAwaitingPayment)
    order = and_given(order, applied)
    assert order.split_into == ("o-2",) and order.amount_due == Decimal("31.00")
    assert order.ordered == {"SKU-A": 3}


def test_a_split_new_order_asks_billing_to_move_the_invoice_lines() -> None:
    order = given(*backordered_and_invoiced())
    _, target = desk.split(
        order, {"SKU-B": 1}, desk.NewOrder("o-2", None), "CHG-S", "r", "desk:ann", NOW, POLICY
    )
    new = and_given(Order(), target)
    reserved = react(new, _stock_reserved_for("o-2"), NOW, POLICY)
    move = expect(reserved).command(MoveInvoiceLines)
    assert move.kind == "split" and move.sources[0].from_order_id == ORDER_ID


def test_a_split_new_order_moves_its_stock_before_its_invoice_even_with_parallel_steps() -> None:
    # Inventory may refuse the units (a source shipped them meanwhile): nothing may have moved
    # in billing then, so the invoice lines move only once the stock has.
    parallel = SagaPolicy(parallel_steps=True)
    _, target = desk.split(
        given(*backordered_and_invoiced()),
        {"SKU-B": 1},
        desk.NewOrder("o-2", None),
        "CHG-S",
        "r",
        "desk:ann",
        NOW,
        parallel,
    )
    expect(target).events(OrderPlaced, OrderApproved, StockReservationRequested).command(MoveReservations)
    new = and_given(Order(), target)
    expect(react(new, _stock_reserved_for("o-2"), NOW, parallel)).command(MoveInvoiceLines)
    # Moved into the backorder queue is an answer too: the invoice lines move while it waits.
    queued = stock_shortage(backordered=True).model_copy(update={"order_id": "o-2"})
    expect(react(new, queued, NOW, parallel)).events(OrderAwaitingStock, InvoiceRequested).command(
        MoveInvoiceLines
    )


def test_a_refused_move_rejects_the_new_order_and_ends_the_source_change_with_nothing_moved() -> None:
    order = given(*backordered_and_invoiced())
    source, target = desk.split(
        order, {"SKU-B": 1}, desk.NewOrder("o-2", None), "CHG-S", "r", "desk:ann", NOW, POLICY
    )
    reason = f"order {ORDER_ID} does not hold the units to move: 1 x SKU-B more than it has"
    missing = (SkuQuantity(sku="SKU-B", quantity=1),)

    new = and_given(Order(), target)
    refused_new = ReservationAdjustmentRefused(
        order_id="o-2", amendment_id="CHG-S", missing=missing, reason=reason
    )
    rejected = (
        expect(react(new, refused_new, NOW, POLICY)).events(OrderRejected).no_commands().event(OrderRejected)
    )
    assert "could not be moved" in rejected.reason and "1 x SKU-B" in rejected.reason

    order = and_given(order, source)
    refused_source = refused_new.model_copy(update={"order_id": ORDER_ID})
    ended = desk.react(order, refused_source, NOW, POLICY)
    expect(ended).events(OrderChangeRefused).no_commands()
    order = and_given(order, ended)
    assert order.change is None and order.ordered == {"SKU-A": 3, "SKU-B": 1}


def _stock_reserved_for(order_id: str) -> StockReserved:
    return StockReserved(
        order_id=order_id, allocations=(Allocation(sku="SKU-B", warehouse="wh-north", quantity=1),)
    )


def test_a_split_cannot_take_more_than_the_order_has_nor_everything() -> None:
    order = given(*backordered_and_invoiced())
    with pytest.raises(InvalidRequest) as too_many:
        desk.split(order, {"SKU-B": 2}, desk.NewOrder("o-2", None), "C", "r", "a", NOW, POLICY)
    assert too_many.value.code == "too_many_units"
    with pytest.raises(InvalidRequest) as everything:
        desk.split(order, {"SKU-A": 3, "SKU-B": 1}, desk.NewOrder("o-2", None), "C", "r", "a", NOW, POLICY)
    assert everything.value.code == "nothing_left"


def test_cancelling_is_refused_while_units_are_moving_to_another_order() -> None:
    order = given(*backordered_and_invoiced())
    source, _ = desk.split(order, {"SKU-B": 1}, desk.NewOrder("o-2", None), "C", "r", "a", NOW, POLICY)
    with pytest.raises(DomainError) as refused:
        cancel(and_given(order, source), "r", "a", NOW, POLICY)
    assert refused.value.code == "change_in_progress"


# -- merge ------------------------------------------------------------------------------------


def _other(order_id: str, **changes: object) -> Order:
    p = placed().model_copy(update={"order_id": order_id, **changes})
    history = [e.model_copy(update={"order_id": order_id}) for e in confirmed()[1:]]
    return given(p, *history)


def test_merging_moves_every_unit_to_a_new_order_and_the_merged_ones_end_merged() -> None:
    a, b = given(*confirmed()), _other("o-9")
    sources, target = desk.merge(
        [a, b], True, desk.NewOrder("o-m", None), "CHG-M", "one parcel", "desk:ann", NOW, POLICY
    )
    new = expect(target).events(OrderPlaced, OrderApproved, StockReservationRequested).event(OrderPlaced)
    assert new.origin == "merge" and [m.order_id for m in new.moved_from] == [ORDER_ID, "o-9"]
    assert len(new.lines) == 6
    move = expect(target).command(MoveReservations)
    assert [s.from_order_id for s in move.sources] == [ORDER_ID, "o-9"]

    a = and_given(a, sources[ORDER_ID])
    moved = ReservationAdjusted(
        order_id=ORDER_ID, amendment_id="CHG-M", lines=(), allocations=(), moved_to="o-m"
    )
    a = and_given(a, desk.react(a, moved, NOW, POLICY))
    closed = invoice_adjusted(Decimal("0.00"), Decimal("0.00"), change_id="CHG-M").model_copy(
        update={"moved_to": "o-m", "transferred": TOTAL}
    )
    done = desk.react(a, closed, NOW, POLICY)
    expect(done).events(OrderChangeStepAnswered, OrderMerged).no_commands()
    a = and_given(a, done)
    assert (a.status, a.merged_into, a.amount_transferred) == ("merged", "o-m", TOTAL)
    assert expect(react(a, _stock_reserved_for(ORDER_ID), NOW, POLICY)).ignored()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"customer_id": "c-2"}, "customer"),
        ({"currency": "USD"}, "currency"),
        ({"payment_terms": "on_account"}, "payment terms"),
    ],
)
def test_orders_of_different_customers_currencies_or_terms_are_not_merged(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(DomainError) as refused:
        desk.merge(
            [given(*confirmed()), _other("o-9", **changes)],
            True,
            desk.NewOrder("m", None),
            "C",
            "r",
            "a",
            NOW,
            POLICY,
        )
    assert refused.value.code == "not_mergeable" and reason in refused.value.message


def test_orders_to_different_addresses_or_not_yet_reserved_are_not_merged() -> None:
    with pytest.raises(DomainError) as elsewhere:
        desk.merge(
            [given(*confirmed()), _other("o-9")], False, desk.NewOrder("m", None), "C", "r", "a", NOW, POLICY
        )
    assert "same address" in elsewhere.value.message
    with pytest.raises(DomainError) as waiting:
        desk.merge(
            [
                given(*confirmed()),
                given(*(e.model_copy(update={"order_id": "o-9"}) for e in backordered_and_invoiced())),
            ],
            True,
            desk.NewOrder("m", None),
            "C",
            "r",
            "a",
            NOW,
            POLICY,
        )
    assert waiting.value.code == "not_mergeable" and "o-9" in waiting.value.message


def test_a_payment_while_an_amendment_runs_waits_for_it_before_confirming() -> None:
    order = and_given(given(*awaiting_payment()), amend(given(*awaiting_payment())))
    paid = react(order, InvoicePaid(order_id=ORDER_ID, invoice_id=INVOICE_ID, amount_paid=TOTAL), NOW, POLICY)
    assert isinstance(paid.events[0], OrderReplyIgnored)


def test_billing_refusing_for_another_reason_than_credit_puts_the_reservation_back_without_a_hold() -> None:
    order = given(*shipped_created())
    order = and_given(order, amend(order))
    order = and_given(order, desk.react(order, adjusted(), NOW, POLICY))
    refused = InvoiceAdjustmentRefused(
        order_id=ORDER_ID,
        amendment_id="CHG-1",
        reason="the invoice is void",
        amount=Decimal("0.00"),
        open_balance=Decimal("0.00"),
        credit_limit=Decimal("0.00"),
    )
    undo = desk.react(order, refused, NOW, POLICY)
    assert expect(undo).events(OrderChangeUndoing).command(AdjustReservation).amendment_id == "CHG-1:undo"
    assert and_given(order, undo).status == "confirmed", "nothing for a person to decide"


def test_no_deadline_cancels_an_order_while_its_units_move_to_another() -> None:
    alerting = [
        e.model_copy(update={"alert_at": NOW}) if isinstance(e, OrderAwaitingStock) else e
        for e in backordered_and_invoiced()
    ]
    order = given(*alerting)
    assert deadline_reached(order, "stock", NOW + timedelta(days=30), POLICY).events, "it would fire"
    source, _ = desk.split(order, {"SKU-B": 1}, desk.NewOrder("o-2", None), "C", "r", "a", NOW, POLICY)
    splitting = and_given(order, source)
    late = NOW + timedelta(days=30)
    for kind in ("payment", "stock"):
        assert deadline_reached(splitting, kind, late, POLICY).events == []
