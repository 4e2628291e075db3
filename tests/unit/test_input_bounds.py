"""The limits on the public models keep every message an accepted order causes far below the
broker's 1 MB limit, and refuse what an order may not add up to, naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from libs.events import DecodeError, Envelope, decode, encode, make_envelope
from libs.events.base import Message
from libs.events.billing import InvoiceIssued, IssueInvoice
from libs.events.inventory import ReserveStock, StockReserved
from libs.events.order import OrderPlaced, StockReservationRequested, SubmitOrder
from libs.events.values import (
    MAX_LINES_PER_ORDER,
    MAX_ORDER_VALUE,
    MAX_QUANTITY,
    Allocation,
    SkuQuantity,
    subtotal,
)

BROKER_LIMIT = 1024 * 1024
# "Well under": room for headers, a future field or two, and a broker configured tighter.
BUDGET = BROKER_LIMIT // 2
# A control character is the costliest to encode: six bytes in JSON ("\u0001") for one.
WIDEST = "\x01"


def text(length: int) -> str:
    return WIDEST * length


def maximal_order_body() -> dict[str, Any]:
    """An order at every limit: the most lines, every string at its longest and costliest."""
    return {
        "idempotency_key": text(200),
        "channel": text(40),
        "external_id": text(200),
        "customer": {
            "id": text(100),
            "name": text(200),
            "email": text(320),
            "phone": text(40),
            "region": text(40),
        },
        "lines": [
            # SKUs are printable ASCII: the widest is 64 one-byte characters, each one distinct.
            {"sku": f"{n:03d}".ljust(64, "~"), "quantity": MAX_QUANTITY, "unit_price": "1.99"}
            for n in range(MAX_LINES_PER_ORDER)
        ],
        "currency": "EUR",
        "payment_terms": "on_account",
        "shipping": {
            "method": "express",
            "address": {
                "line1": text(200),
                "line2": text(200),
                "city": text(100),
                "postal_code": text(20),
                "country": text(60),
            },
        },
    }


def envelope_of(message: Message) -> Envelope:
    return make_envelope(
        message,
        event_id=uuid4(),
        aggregate_id=str(uuid4()),
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id=text(200),
        causation_id=str(uuid4()),
        actor="channel:" + text(40),
    )


def encoded_size(message: Message) -> int:
    return len(encode(envelope_of(message)))


def what_a_maximal_order_causes() -> list[Message]:
    submission = SubmitOrder.model_validate(maximal_order_body())
    order_id = str(uuid4())
    value = subtotal(submission.lines)
    skus = tuple(SkuQuantity(sku=line.sku, quantity=line.quantity) for line in submission.lines)
    allocations = tuple(
        Allocation(sku=line.sku, warehouse=warehouse.ljust(32, "X"), quantity=MAX_QUANTITY // 2)
        for line in submission.lines
        for warehouse in ("NORTH", "SOUTH")
    )
    placed = OrderPlaced(
        order_id=order_id,
        customer_id="email:" + text(320),
        **submission.model_dump(exclude={"idempotency_key"}),
        subtotal=value,
    )
    return [
        submission,
        placed,
        StockReservationRequested(order_id=order_id, lines=skus),
        ReserveStock(order_id=order_id, lines=skus, region=text(40)),
        StockReserved(order_id=order_id, allocations=allocations),
        IssueInvoice(
            order_id=order_id,
            customer_id=placed.customer_id,
            currency="EUR",
            lines=submission.lines,
            payment_terms="on_account",
            shipping_method="express",
            due_at=datetime.now(UTC),
        ),
        InvoiceIssued(
            order_id=order_id,
            invoice_id="INV-" + "X" * 12,
            customer_id=placed.customer_id,
            currency="EUR",
            lines=submission.lines,
            subtotal=value,
            tax=value,
            shipping_fee=Decimal("14.90"),
            total=value * 2 + Decimal("14.90"),
            payment_terms="on_account",
            due_at=datetime.now(UTC),
        ),
    ]


@pytest.mark.parametrize("message", what_a_maximal_order_causes(), ids=lambda m: m.message_type)
def test_every_message_a_maximal_order_causes_stays_well_under_the_broker_limit(message: Message) -> None:
    assert encoded_size(message) < BUDGET


def test_a_maximal_order_is_valid_and_its_subtotal_fits_the_money_columns() -> None:
    submission = SubmitOrder.model_validate(maximal_order_body())

    assert len(submission.lines) == MAX_LINES_PER_ORDER
    assert subtotal(submission.lines) <= MAX_ORDER_VALUE


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        SubmitOrder.model_validate(body)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}


def test_one_line_more_than_the_limit_is_refused() -> None:
    body = maximal_order_body()
    body["lines"].append({"sku": "ONE-MORE", "quantity": 1, "unit_price": "0.00"})

    assert "at most 500 lines, not 501" in errors_of(body)["lines"]


def test_lines_of_one_sku_may_not_add_up_past_the_quantity_limit() -> None:
    body = maximal_order_body()
    body["lines"] = [{"sku": "SKU-A", "quantity": 600_000, "unit_price": "0.00"}] * 2

    message = errors_of(body)["lines"]

    assert "at most 1,000,000 units of one SKU" in message and "SKU-A (1,200,000)" in message


def test_an_order_value_over_the_limit_is_refused() -> None:
    body = maximal_order_body()
    body["lines"] = [{"sku": "SKU-A", "quantity": MAX_QUANTITY, "unit_price": "1000.01"}]

    assert "the order value 1,000,010,000.00 is over the limit" in errors_of(body)["lines"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("shipping", "address", "line1"), "x" * 201),
        (("customer", "name"), "x" * 201),
        (("customer", "email"), "x" * 321),
        (("channel",), "x" * 41),
        (("lines", 0, "sku"), "x" * 65),
        (("lines", 0, "sku"), "SKU WITH SPACES"),
        (("lines", 0, "unit_price"), "1000000000.01"),
        (("lines", 0, "quantity"), MAX_QUANTITY + 1),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_a_value_past_its_limit_is_refused_naming_the_field(path: tuple[Any, ...], value: Any) -> None:
    body = maximal_order_body()
    body["lines"] = body["lines"][:1]
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value

    assert ".".join(map(str, path)) in errors_of(body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda body: body["shipping"]["address"].update(line1="x" * 201), "shipping.address.line1"),
        (lambda body: body["lines"].append(dict(body["lines"][0])), "lines"),
    ],
    ids=["address-line", "sku-over-its-limit"],
)
def test_an_intake_submission_past_a_limit_is_undecodable_naming_the_field(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    """The intake consumer dead-letters what it cannot decode, with this reason."""
    submission = SubmitOrder.model_validate(maximal_order_body())
    document = json.loads(encode(envelope_of(submission)))
    change(document["payload"])

    with pytest.raises(DecodeError, match=rf"invalid SubmitOrder payload: {re.escape(field)}: "):
        decode(json.dumps(document).encode())
