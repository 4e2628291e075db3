"""Money is a finite decimal with no more places than its currency has; events stored before
the currency check still load. (The count of lines: tests/unit/test_input_bounds.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from libs.events import decode, encode, make_envelope
from libs.events.base import Message
from libs.events.order import OrderPlaced, SubmitOrder
from libs.events.values import OrderLine, minor_units


def submission(currency: str, *prices: str) -> dict[str, Any]:
    return {
        "channel": "web",
        "customer": {"name": "Ada Lovelace"},
        "lines": [{"sku": f"SKU-{n}", "quantity": 1, "unit_price": price} for n, price in enumerate(prices)],
        "currency": currency,
        "payment_terms": "prepaid",
        "shipping": {"method": "pickup"},
    }


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        SubmitOrder.model_validate(body)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}


def through_the_wire(message: Message) -> Message:
    envelope = make_envelope(
        message,
        event_id=uuid4(),
        aggregate_id=str(uuid4()),
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="test",
        causation_id=None,
        actor="test",
    )
    return decode(encode(envelope)).message


@pytest.mark.parametrize(
    "price", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", float("nan"), 1e400]
)
def test_a_price_that_is_not_a_finite_number_is_refused(price: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        OrderLine(sku="SKU-1", quantity=1, unit_price=price)

    assert [e["loc"] for e in raised.value.errors()] == [("unit_price",)]


def test_money_holds_at_most_two_decimal_places() -> None:
    assert "no more than 2 decimal places" in errors_of(submission("EUR", "19.999"))["lines.0.unit_price"]


@pytest.mark.parametrize(("currency", "places"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("GBP", 2), ("KWD", 3)])
def test_minor_units_follow_iso_4217(currency: str, places: int) -> None:
    assert minor_units(currency) == places


def test_a_yen_price_with_a_fraction_is_refused_naming_the_line_and_the_limit() -> None:
    errors = errors_of(submission("JPY", "1500", "1500.5", "99.01"))

    assert errors == {
        "lines.1.unit_price": "at most 0 decimal places for JPY",
        "lines.2.unit_price": "at most 0 decimal places for JPY",
    }


@pytest.mark.parametrize("price", ["1500", "1500.00", "1.5E+3"])
def test_a_whole_yen_price_is_accepted_however_it_is_written(price: str) -> None:
    order = SubmitOrder.model_validate(submission("JPY", price))

    assert order.lines[0].unit_price == Decimal(1500)


def test_a_yen_submission_survives_the_intake_topic() -> None:
    """Money serialises with two decimals ("1500.00"), which is still a whole number of yen."""
    order = SubmitOrder.model_validate(submission("JPY", "1500"))

    assert through_the_wire(order) == order


def test_cents_are_fine_in_euros() -> None:
    assert SubmitOrder.model_validate(submission("EUR", "19.99")).lines[0].unit_price == Decimal("19.99")


def test_an_order_placed_before_the_currency_check_still_loads() -> None:
    """The check is on the submission: a stored OrderPlaced with yen cents is read as it was."""
    placed = OrderPlaced.model_validate(
        {
            **submission("JPY", "1500.50"),
            "order_id": str(uuid4()),
            "customer_id": "C-1",
            "subtotal": "1500.50",
        }
    )
    read = through_the_wire(placed)

    assert isinstance(read, OrderPlaced) and read.lines[0].unit_price == Decimal("1500.50")
