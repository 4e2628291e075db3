"""A reader of the wire ignores fields it does not know yet, at every level: a writer deployed
before its readers may add an optional field within a version (what the schema check calls a
compatible change), and an older reader must not dead-letter those messages for it. Input that
enters through the API stays strict."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import ValidationError

from libs.events import decode, encode, make_envelope
from libs.events.order import OrderPlaced, SubmitOrder
from libs.events.values import CustomerSnapshot, OrderLine, Shipping


def placed() -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        channel="web",
        customer_id="c-1",
        customer=CustomerSnapshot(name="Ada"),
        lines=(OrderLine(sku="SKU-A", quantity=2, unit_price=Decimal("5.00")),),
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping(method="pickup"),
        subtotal=Decimal("10.00"),
    )


def wire(event: OrderPlaced) -> dict[str, object]:
    envelope = make_envelope(
        event,
        event_id=uuid4(),
        aggregate_id="o-1",
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="o-1",
        causation_id=None,
        actor="test",
    )
    document: dict[str, object] = json.loads(encode(envelope))
    return document


def test_a_newer_writers_extra_fields_are_ignored_at_every_level() -> None:
    document = wire(placed())
    document["tenant"] = "acme"  # a new envelope field
    payload = document["payload"]
    assert isinstance(payload, dict)
    payload["gift_message"] = "Happy birthday"  # a new top-level field
    payload["lines"][0]["colour"] = "red"  # a new field of a nested model
    payload["customer"]["loyalty_tier"] = "gold"

    decoded = decode(json.dumps(document).encode())

    assert decoded.message == placed()


def test_the_api_still_refuses_a_field_it_does_not_know() -> None:
    body = {
        "channel": "web",
        "customer": {"name": "Ada"},
        "lines": [{"sku": "SKU-A", "quantity": 1, "unit_price": "5.00", "colour": "red"}],
        "currency": "EUR",
        "payment_terms": "prepaid",
        "shipping": {"method": "pickup"},
    }

    with pytest.raises(ValidationError, match="lines.0.colour"):
        SubmitOrder.model_validate(body)
