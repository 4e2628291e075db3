"""Public messages apart from private events: the order service's translator (one
OrderStatusChanged per order per transaction whose status changed, coalesced, with what a
reader needs) and the unit of work that asks it once per aggregate and writes only its answer
to the outbox (or, with OM_PUBLIC_EVENTS_ONLY=false, every event as before)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from libs.events import make_envelope
from libs.events.base import DomainEvent, Message
from libs.events.billing import InvoiceIssued, InvoicePaid, InvoiceVoided, PaymentReceived, RefundIssued
from libs.events.inventory import ShipmentCreated, ShipmentDispatched, StockReleased, StockReserved
from libs.events.order import (
    CustomerRegistered,
    OrderPlaced,
    OrderRefunded,
    OrderStatusChanged,
)
from libs.events.values import Allocation, CustomerSnapshot, OrderLine, Shipping, SkuQuantity
from libs.runtime import eventstore, outbox
from libs.runtime.outbox import OutgoingMessage
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import AggregateChange, MessageContext, Publication, UnitOfWork, publication_of
from services.order.app.integration import public_messages
from services.order.bootstrap import build_runtime
from services.order.domain.customer import CUSTOMER
from services.order.domain.order import ORDER, Order, evolve
from services.order.domain.review import ReviewFacts
from services.order.domain.saga import Reaction, SagaPolicy, approve, cancel, react, start

ORDER_ID = "o-1"
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
POLICY = SagaPolicy()  # parallel steps: stock and invoice asked for at once
TOTAL = Decimal("41.65")
DUE_AT = datetime(2026, 3, 3, 9, 15, tzinfo=UTC)
ALLOCATIONS = (Allocation(sku="SKU-A", warehouse="NORTH", quantity=3),)


def placed(terms: str = "prepaid") -> OrderPlaced:
    return OrderPlaced.model_validate(
        {
            "order_id": ORDER_ID,
            "channel": "web",
            "customer_id": "c-1",
            "customer": CustomerSnapshot(name="Ada", region="north"),
            "lines": (OrderLine(sku="SKU-A", quantity=3, unit_price=Decimal("11.00")),),
            "currency": "EUR",
            "payment_terms": terms,
            "shipping": Shipping(method="pickup"),
            "subtotal": Decimal("33.00"),
        }
    )


def invoice_issued() -> InvoiceIssued:
    p = placed()
    return InvoiceIssued.model_validate(
        {
            "order_id": ORDER_ID,
            "invoice_id": "inv-1",
            "customer_id": p.customer_id,
            "currency": p.currency,
            "lines": [line.model_dump() for line in p.lines],
            "subtotal": p.subtotal,
            "tax": Decimal("6.27"),
            "shipping_fee": Decimal("2.38"),
            "total": TOTAL,
            "payment_terms": "prepaid",
            "due_at": DUE_AT,
        }
    )


def paid() -> tuple[PaymentReceived, InvoicePaid]:
    received = PaymentReceived(
        order_id=ORDER_ID,
        invoice_id="inv-1",
        reference="pay-1",
        method="card",
        amount=TOTAL,
        amount_paid=TOTAL,
    )
    return received, InvoicePaid(order_id=ORDER_ID, invoice_id="inv-1", amount_paid=TOTAL)


class Stream:
    """An order's stream: each transaction's events, translated as the unit of work would."""

    def __init__(self) -> None:
        self.order = Order()
        self.version = 0

    def commit(self, *events: DomainEvent) -> list[Message]:
        before, after = self.order, self.order
        for event in events:
            after = evolve(after, event)
        envelopes = tuple(
            make_envelope(
                event,
                event_id=uuid4(),
                aggregate_id=ORDER_ID,
                aggregate_version=self.version + n,
                occurred_at=NOW,
                correlation_id=ORDER_ID,
                causation_id=None,
                actor="test",
            )
            for n, event in enumerate(events, start=1)
        )
        self.order, self.version = after, self.version + len(events)
        return list(public_messages(AggregateChange(ORDER, ORDER_ID, events, envelopes, before, after)))

    def reacts(self, *replies: Message) -> list[Message]:
        """One consumed batch of replies: each reaction folded before the next, one commit."""
        order, events = self.order, []
        for reply in replies:
            reaction = react(order, reply, NOW, POLICY)
            for event in reaction.events:
                order = evolve(order, event)
            events.extend(reaction.events)
        return self.commit(*events)

    def does(self, reaction: Reaction) -> list[Message]:
        return self.commit(*reaction.events)


def status_changes(messages: Sequence[Message]) -> list[OrderStatusChanged]:
    return [m for m in messages if isinstance(m, OrderStatusChanged)]


def test_placing_publishes_the_order_and_one_status_change_from_placed() -> None:
    stream = Stream()

    messages = stream.does(start(placed(), ReviewFacts(), POLICY, NOW))

    # Recorded: OrderPlaced, OrderApproved, StockReservationRequested, InvoiceRequested.
    assert [type(m) for m in messages] == [OrderPlaced, OrderStatusChanged]
    change = status_changes(messages)[0]
    assert (change.previous_status, change.status) == ("placed", "approved")
    assert (change.channel, change.customer_id, change.currency, change.payment_terms) == (
        "web",
        "c-1",
        "EUR",
        "prepaid",
    )
    assert change.subtotal == Decimal("33.00") and change.total is None and change.invoice_id is None


def test_a_transaction_that_changes_no_status_publishes_nothing() -> None:
    stream = Stream()
    stream.does(start(placed(), ReviewFacts(), POLICY, NOW))

    # The stock is reserved while the invoice is still awaited: OrderStockAllocated, private.
    assert stream.reacts(StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS)) == []
    assert stream.order.status == "approved"


def test_several_steps_in_one_transaction_are_one_change_from_before_to_after() -> None:
    stream = Stream()
    stream.does(start(placed(), ReviewFacts(), POLICY, NOW))

    # Both answers and the payment in one consumed batch: approved -> awaiting_payment ->
    # confirmed within it; a reader sees approved -> confirmed.
    messages = stream.reacts(
        StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS), invoice_issued(), *paid()
    )

    (change,) = status_changes(messages)
    assert len(messages) == 1
    assert (change.previous_status, change.status) == ("approved", "confirmed")
    assert change.allocations == ALLOCATIONS
    assert (change.invoice_id, change.total, change.amount_paid) == ("inv-1", TOTAL, TOTAL)


def test_awaiting_payment_carries_the_invoice_and_the_deadline() -> None:
    stream = Stream()
    stream.does(start(placed(), ReviewFacts(), POLICY, NOW))

    messages = stream.reacts(StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS), invoice_issued())

    (change,) = status_changes(messages)
    assert change.status == "awaiting_payment"
    assert change.invoice_id == "inv-1" and change.total == TOTAL and change.amount_paid == 0
    assert change.payment_deadline == DUE_AT
    assert change.allocations == ALLOCATIONS


def test_a_held_order_carries_its_reasons_and_its_approval_is_the_next_change() -> None:
    stream = Stream()

    held = stream.does(start(placed(), ReviewFacts(possible_duplicate_of="o-0"), POLICY, NOW))
    approved = stream.does(approve(stream.order, "user:alice", POLICY, NOW))

    (on_hold,) = status_changes(held)
    assert (on_hold.previous_status, on_hold.status) == ("placed", "on_hold")
    assert on_hold.hold_reasons and on_hold.reason == "; ".join(on_hold.hold_reasons)
    (change,) = status_changes(approved)
    assert (change.previous_status, change.status, change.reason) == ("on_hold", "approved", None)
    assert change.hold_reasons == ()


def test_a_cancellation_with_refund_publishes_the_refund_and_the_change_to_cancelled() -> None:
    stream = Stream()
    stream.does(start(placed(), ReviewFacts(), POLICY, NOW))
    stream.reacts(StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS), invoice_issued(), *paid())

    started = stream.does(cancel(stream.order, "customer changed their mind", "user:bob", NOW, POLICY))
    refund = RefundIssued(order_id=ORDER_ID, refund_id="rf-1", invoice_id="inv-1", amount=TOTAL, reason="x")
    released = StockReleased(order_id=ORDER_ID, allocations=ALLOCATIONS, reason="x")
    voided = InvoiceVoided(order_id=ORDER_ID, invoice_id="inv-1", reason="x")  # billing refunds, then voids
    ended = stream.reacts(refund, voided, released)

    assert started == []  # compensating: the status stays confirmed until it is undone
    assert [type(m) for m in ended] == [OrderRefunded, OrderStatusChanged]
    change = status_changes(ended)[0]
    assert (change.previous_status, change.status) == ("confirmed", "cancelled")
    assert change.reason == "cancelled: customer changed their mind"
    assert (change.amount_paid, change.amount_refunded) == (TOTAL, TOTAL)


def test_shipping_carries_each_shipment_s_warehouse_carrier_and_tracking() -> None:
    stream = Stream()
    stream.does(start(placed(), ReviewFacts(), POLICY, NOW))
    stream.reacts(StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS), invoice_issued(), *paid())

    created = stream.reacts(
        ShipmentCreated(order_id=ORDER_ID, shipment_id="sh-1", warehouse="NORTH", method="pickup", lines=(
            SkuQuantity(sku="SKU-A", quantity=3),
        ))
    )  # fmt: skip
    shipped = stream.reacts(
        ShipmentDispatched(
            order_id=ORDER_ID,
            shipment_id="sh-1",
            warehouse="NORTH",
            lines=(SkuQuantity(sku="SKU-A", quantity=3),),
            carrier="DHL",
            tracking_number="T-1",
        )
    )

    assert created == []
    (change,) = status_changes(shipped)
    assert (change.previous_status, change.status) == ("confirmed", "shipped")
    (shipment,) = change.shipments
    assert (shipment.warehouse, shipment.carrier, shipment.tracking_number) == ("NORTH", "DHL", "T-1")


# -- the unit of work: once per aggregate, only the translator's answer to the outbox -----


class Outbox:
    """Stands in for the database writes of a flush: what would go to the outbox."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[OutgoingMessage] = []

        async def append(db: Any, events: Any, audit: Any) -> dict[str, int]:
            return {}

        async def put(
            db: Any, messages: Sequence[OutgoingMessage], claim_as: Any = None
        ) -> tuple[list[Any], bool]:
            self.messages.extend(messages)
            return [], False

        monkeypatch.setattr(eventstore, "append", append)
        monkeypatch.setattr(outbox, "put", put)

    @property
    def types(self) -> list[str]:
        return [m.envelope.event_type for m in self.messages]


def unit_of_work(publication: Publication) -> UnitOfWork:
    connection: Any = object()
    uow = UnitOfWork(
        connection, MessageContext(correlation_id=ORDER_ID, actor="test"), NOW, publication=publication
    )
    uow._driver = connection  # nothing reaches it: Outbox stands in for the writes
    return uow


async def record_in_two_calls(uow: UnitOfWork) -> None:
    """An order placed and approved, then (a second message of the same batch) reserved."""
    reaction = start(placed(), ReviewFacts(), POLICY, NOW)
    version = await uow.record(ORDER, ORDER_ID, 0, reaction.events)
    order, _ = await uow.load(ORDER, ORDER_ID)
    uow.context = MessageContext(correlation_id=ORDER_ID, actor="service:order-saga", causation_id="reply-2")
    later = react(order, StockReserved(order_id=ORDER_ID, allocations=ALLOCATIONS), NOW, POLICY)
    await uow.record(ORDER, ORDER_ID, version, later.events)
    await uow.record(CUSTOMER, "c-1", 0, [CustomerRegistered(customer_id="c-1", name="Ada")])


async def test_the_translator_is_asked_once_per_aggregate_and_only_its_answer_is_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = Outbox(monkeypatch)
    asked: list[tuple[str, int]] = []

    def translator(change: AggregateChange[Any]) -> Sequence[Message]:
        asked.append((change.aggregate_id, len(change.events)))
        return public_messages(change)

    uow = unit_of_work(Publication(public_only=True, translator=translator))
    await record_in_two_calls(uow)
    await uow.flush()

    assert asked == [(ORDER_ID, 5), ("c-1", 1)]
    assert written.types == ["OrderPlaced", "OrderStatusChanged", "CustomerRegistered"]
    placed_row, change_row, _ = written.messages
    assert placed_row.envelope == uow.appended[0]  # published in the envelope it was stored in
    assert change_row.envelope.aggregate_version == 5  # the position the order's stream reached
    assert change_row.envelope.causation_id == "reply-2"  # the last message that moved it


async def test_without_a_translator_only_published_events_go_out(monkeypatch: pytest.MonkeyPatch) -> None:
    written = Outbox(monkeypatch)
    uow = unit_of_work(Publication(public_only=True))

    await record_in_two_calls(uow)
    await uow.flush()

    assert written.types == ["OrderPlaced", "CustomerRegistered"]


async def test_public_events_only_off_publishes_every_event_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = Outbox(monkeypatch)
    uow = unit_of_work(Publication(public_only=False, translator=public_messages))

    await record_in_two_calls(uow)
    await uow.flush()

    assert written.types == [e.event_type for e in uow.appended]
    assert "OrderApproved" in written.types and "OrderStatusChanged" not in written.types


# -- the setting: how each service's runtime publishes -----------------------------------


@pytest.mark.parametrize("public_only", [True, False])
async def test_the_order_service_publishes_as_om_public_events_only_says(public_only: bool) -> None:
    runtime, _ = build_runtime(RuntimeSettings(public_events_only=public_only))
    try:
        publication = publication_of(runtime.engine)
        assert publication.public_only is public_only
        assert publication.translator is public_messages
    finally:
        await runtime.engine.dispose()
