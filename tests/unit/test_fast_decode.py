"""The fast decode (libs/events/fast_decode.py) against the full one: a message the fast path
accepts is one the full decode accepts with the same values, and everything the full decode
refuses the fast path refuses too (codec.decode_fast then gives the full decode's error)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from libs.events import DecodeError, Message, decode, encode, make_envelope
from libs.events.billing import InvoiceIssued, RefundIssued
from libs.events.codec import decode_fast, use_fast_decode
from libs.events.fast_decode import FastDecoder
from libs.events.inventory import ProductRegistered, StockAdjusted, StockReceived
from libs.events.order import OrderPlaced
from libs.events.production import ProductionOrderCreated, QualityCheckPassed
from tools.bench_replay import order_history

AT = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_path_on() -> Iterator[None]:
    use_fast_decode(True)
    yield
    use_fast_decode(False)


def _others() -> list[Message]:
    """Projected events beyond the benchmark's order history: dicts of decimals, signed
    numbers, literals, datetimes, nested models with decimal bounds."""
    return [
        StockReceived(sku="SKU-1", warehouse="NORTH", quantity=5, receipt_id="r-1"),
        StockAdjusted(sku="SKU-1", warehouse="NORTH", delta=-3, reason="damage", approved_by="ann"),
        RefundIssued(
            order_id="o-1", refund_id="rf-1", invoice_id="i-1", amount=Decimal("12.30"), reason="late"
        ),
        ProductRegistered.model_validate(
            {
                "sku": "SKU-1",
                "name": "Widget",
                "category": "tools",
                "unit": "pcs",
                "weight_kg": "1.250",
                "manufactured": True,
                "list_prices": {"EUR": "19.90", "USD": "21.00"},
            }
        ),
        QualityCheckPassed.model_validate(
            {
                "production_order_id": "po-1",
                "check_id": "qc-1",
                "task_id": "t-1",
                "operation": "inspect",
                "passed": 4,
                "measurements": {"width_mm": "-0.125000", "height_mm": "12.5"},
            }
        ),
        ProductionOrderCreated.model_validate(
            {
                "production_order_id": "po-1",
                "sku": "SKU-1",
                "quantity": 3,
                "warehouse": "NORTH",
                "due": "2026-12-01T08:00:00+01:00",
                "origin": "make_to_order",
                "components": [{"sku": "PART-1", "quantity": 2}],
                "operations": [
                    {
                        "task_id": "t-1",
                        "operation": "assemble",
                        "work_center": "WC-1",
                        "setup_minutes": "15",
                        "minutes_per_unit": "2.500",
                        "inspection": False,
                    }
                ],
            }
        ),
    ]


def _examples() -> list[dict[str, Any]]:
    messages: list[tuple[Message, str, int]] = [item for n in (0, 1, 7) for item in order_history(n, AT)]
    messages += [(message, "key", 3) for message in _others()]
    return [
        json.loads(
            encode(
                make_envelope(
                    message,
                    event_id=uuid.UUID(int=number + 1),
                    aggregate_id=key,
                    aggregate_version=version,
                    occurred_at=AT,
                    correlation_id="c-1",
                    causation_id=None if number % 2 else "cause-1",
                    actor="test",
                )
            )
        )
        for number, (message, key, version) in enumerate(messages)
    ]


# What each leaf of a document is replaced by, whatever its type: over-long and patterned
# strings, decimals negative, too fine, in exponent form or as JSON numbers, datetimes with a
# seventh fractional digit or without a time, integers out of range or of another type, nulls.
CANDIDATES: list[Any] = [
    None,
    True,
    -1,
    0,
    5.0,
    10**20,
    "",
    "x" * 3000,
    "EUR\n",
    "eur",
    "-1.00",
    "1.001",
    "1e2",
    "0012.50",
    "19.9",
    " 1.5",
    "NaN",
    "99999999999999.00",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01",
    "2026-01-01T00:00:00+24:00",
    "nope",
    [],
    {},
]


def _leaves(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _leaves(value, (*path, index))
    yield path


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DELETE = object()


def _mutations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in _leaves(document):
        if not path:
            continue
        current = _replaced(document, (), document)
        for step in path:
            current = current[step]
        values = [*CANDIDATES, _DELETE]
        if isinstance(current, str):
            values += [current + "\n", current + "x" * 70, current[:-1]]
        for value in values:
            if value is _DELETE and isinstance(path[-1], int):
                continue
            yield _replaced(document, path, value)
        if isinstance(current, dict):
            yield _replaced(document, path, {**current, "unknown_field": 1})
    yield {**document, "unknown_field": 1}


def _agree(raw: bytes, fast: FastDecoder) -> bool:
    """Assert the rule on one message; True when the fast path took it."""
    taken = fast.decode(raw)
    try:
        full = decode(raw)
    except DecodeError as error:
        assert taken is None, f"fast path accepted what the full decode refuses ({error}): {raw[:300]!r}"
        with pytest.raises(DecodeError) as again:
            decode_fast(raw)
        assert str(again.value) == str(error)
        return False
    if taken is None:
        return False
    envelope, message = taken
    assert type(message) is type(full.message)
    assert envelope == full.envelope and message == full.message, raw[:300]
    assert message.model_fields_set == full.message.model_fields_set
    assert envelope.model_fields_set == full.envelope.model_fields_set
    assert message.model_dump_json() == full.message.model_dump_json(), raw[:300]
    assert envelope.model_dump_json() == full.envelope.model_dump_json(), raw[:300]
    assert decode_fast(raw) == full
    return True


def test_fast_path_takes_the_projected_events_without_validators_with_the_full_decodes_values() -> None:
    fast = FastDecoder()
    taken = {
        document["event_type"] for document in _examples() if _agree(json.dumps(document).encode(), fast)
    }
    assert taken >= {
        "OrderStatusChanged",
        "StockAllocated",
        "PaymentReceived",
        "InvoicePaid",
        "ShipmentCreated",
        "ShipmentDispatched",
        "StockDispatched",
        "StockReceived",
        "StockAdjusted",
        "RefundIssued",
        "ProductRegistered",
        "QualityCheckPassed",
        "ProductionOrderCreated",
    }


def test_models_with_validators_are_decoded_the_full_way() -> None:
    fast = FastDecoder()
    assert "BeforeValidator" in (fast.refusal(OrderPlaced) or "")
    assert "BeforeValidator" in (fast.refusal(InvoiceIssued) or "")
    document = next(d for d in _examples() if d["event_type"] == "InvoiceIssued")
    assert fast.decode(json.dumps(document).encode()) is None


def test_every_mutation_the_full_decode_refuses_the_fast_path_refuses_and_what_it_takes_is_equal() -> None:
    fast = FastDecoder()
    checked = taken = 0
    for document in _examples():
        for mutated in _mutations(document):
            checked += 1
            taken += _agree(json.dumps(mutated).encode(), fast)
    # The mutations include accepted ones (an extra field, another valid string): both paths.
    assert taken > 0 and checked > taken


def test_older_versions_and_unknown_types_go_the_full_way() -> None:
    fast = FastDecoder()
    document = next(d for d in _examples() if d["event_type"] == "StockReceived")
    assert fast.decode(json.dumps({**document, "event_version": 2}).encode()) is None
    assert fast.decode(json.dumps({**document, "event_type": "NoSuchEvent"}).encode()) is None
    with pytest.raises(DecodeError, match="unknown message type 'NoSuchEvent'"):
        decode_fast(json.dumps({**document, "event_type": "NoSuchEvent"}).encode())
