"""What the reporting projections queue for each public event (services/reporting/adapters)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from libs.events import make_envelope
from libs.events.billing import CreditNoteIssued
from libs.events.values import SkuQuantity
from libs.runtime.writes import WriteBatch
from services.reporting.adapters import projections
from tools.bench_replay import order_history

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _project(n: int = 1) -> WriteBatch:
    writes = WriteBatch()
    for offset, (message, key, version) in enumerate(order_history(n, AT)):
        envelope = make_envelope(
            message,
            event_id=uuid.uuid4(),
            aggregate_id=key,
            aggregate_version=version,
            occurred_at=AT + timedelta(seconds=offset),
            correlation_id="c",
            causation_id=None,
            actor="test",
        )
        projections.project(writes, envelope, message)
    return writes


def _statements(writes: WriteBatch) -> list[str]:
    return [statement.text for layer in writes.layers() for statement in layer]


def test_every_event_of_an_order_s_history_has_a_projection() -> None:
    texts = " ".join(_statements(_project()))
    for table in (
        "orders",
        "order_lines",
        "order_status_changes",
        "order_allocations",
        "invoices",
        "invoice_lines",
        "payments",
        "stock_movements",
        "shipments",
        "source_positions",
    ):
        assert f"INTO {table}" in texts or f"UPDATE {table}" in texts or f"FROM {table}" in texts, table


def test_a_batch_notes_each_topic_s_position_once_with_its_count_and_newest_time() -> None:
    writes = _project()
    positions = [
        dict(zip(statement.names, args, strict=True))
        for layer in writes.layers()
        for statement, rows in layer.items()
        if "source_positions" in statement.text
        for args in rows
    ]
    by_topic = {p["topic"]: p for p in positions}
    assert len(positions) == len(by_topic) == 3  # order, billing and inventory topics
    history = order_history(1, AT)
    assert sum(p["events"] for p in positions) == len(history)
    assert by_topic["oms.inventory.events.v1"]["occurred_at"] == AT + timedelta(seconds=len(history) - 1)


def test_an_order_s_status_updates_follow_its_insert() -> None:
    layers = WriteBatch.layers(_project())
    first_order_write = next(
        i for i, layer in enumerate(layers) if any("INTO orders" in s.text for s in layer)
    )
    first_status_update = next(
        i for i, layer in enumerate(layers) if any("UPDATE orders SET status" in s.text for s in layer)
    )
    assert first_order_write < first_status_update


def _allocation_writes(writes: WriteBatch) -> list[tuple[str, tuple[object, ...]]]:
    return [
        (statement.text.split()[0], args)
        for layer in writes.layers()
        for statement, rows in layer.items()
        if "order_allocations" in statement.text
        for args in rows
    ]


def test_an_allocation_repeated_by_later_status_changes_of_a_batch_is_written_once() -> None:
    # The history's three status changes each carry the order's same two allocations.
    written = _allocation_writes(_project())

    assert [verb for verb, _ in written] == ["DELETE", "INSERT", "INSERT"]


def test_an_allocation_that_changed_within_a_batch_replaces_the_one_before() -> None:
    writes = WriteBatch()
    history = order_history(1, AT)
    placed, awaiting_payment, confirmed = (message for message, _, _ in history[:3])
    moved = confirmed.model_copy(
        update={
            "allocations": tuple(a.model_copy(update={"warehouse": "EAST"}) for a in confirmed.allocations)
        }
    )
    for message in (placed, awaiting_payment, moved):
        envelope = make_envelope(
            message,
            event_id=uuid.uuid4(),
            aggregate_id="order",
            aggregate_version=1,
            occurred_at=AT,
            correlation_id="c",
            causation_id=None,
            actor="test",
        )
        projections.project(writes, envelope, message)

    written = _allocation_writes(writes)
    assert [verb for verb, _ in written] == ["DELETE", "INSERT", "INSERT"] * 2
    assert {args[2] for verb, args in written[-2:]} == {"EAST"}


def test_a_credit_note_is_a_row_of_its_own_that_leaves_its_invoice_s_row_alone() -> None:
    # What it takes off the invoice is summed when the reports are read, so it may be read
    # before the invoice; the row is keyed by the credit note, so a second delivery adds nothing.
    note = CreditNoteIssued(
        order_id="o1",
        credit_note_id="CN-1",
        invoice_id="INV-1",
        return_id="R-1",
        lines=(SkuQuantity(sku="A", quantity=2),),
        amount=Decimal("24.00"),
        refund_amount=Decimal("20.00"),
        refund_id="RFD-1",
        reason="arrived scratched",
    )
    writes = WriteBatch()
    envelope = make_envelope(
        note,
        event_id=uuid.uuid4(),
        aggregate_id="o1",
        aggregate_version=9,
        occurred_at=AT,
        correlation_id="c",
        causation_id=None,
        actor="test",
    )
    projections.project(writes, envelope, note)

    (credit_note,) = [
        dict(zip(statement.names, args, strict=True))
        for layer in writes.layers()
        for statement, rows in layer.items()
        if "credit_notes" in statement.text
        for args in rows
    ]
    assert credit_note == {
        "credit_note_id": "CN-1",
        "invoice_id": "INV-1",
        "order_id": "o1",
        "return_id": "R-1",
        "amount": Decimal("24.00"),
        "refund_amount": Decimal("20.00"),
        "refund_id": "RFD-1",
        "reason": "arrived scratched",
        "at": AT,
    }
    assert not any("invoices" in text for text in _statements(writes))
    assert "ON CONFLICT DO NOTHING" in next(t for t in _statements(writes) if "credit_notes" in t)
