"""The public contracts: codec round trip, poison detection, upcasting, committed schemas."""

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import uuid4

import pytest

from libs.events import DecodeError, decode, encode, make_envelope
from libs.events.base import DomainEvent
from libs.events.order import OrderPlaced
from libs.events.registry import MessageRegistry, UnknownMessageType
from libs.events.values import CustomerSnapshot, OrderLine, Shipping
from tools import schemas


def placed() -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        channel="web",
        customer_id="c-1",
        customer=CustomerSnapshot(name="Ada"),
        lines=(OrderLine(sku="SKU-1", quantity=2, unit_price=Decimal("9.95")),),
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping(method="pickup"),
        subtotal=Decimal("19.90"),
    )


def envelope_for(message: OrderPlaced) -> Any:
    return make_envelope(
        message,
        event_id=uuid4(),
        aggregate_id="o-1",
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="o-1",
        causation_id=None,
        actor="channel:web",
    )


def test_message_survives_the_wire_with_money_as_decimal_string() -> None:
    envelope = envelope_for(placed())
    raw = encode(envelope)
    assert b'"unit_price":"9.95"' in raw
    decoded = decode(raw)
    assert decoded.envelope == envelope
    assert decoded.message == placed()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{}", "invalid envelope"),
        (b'{"event_type": 3}', "invalid envelope"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(raw)


def test_schema_invalid_payload_is_refused_naming_the_field() -> None:
    document = envelope_for(placed()).model_dump(mode="json")
    document["payload"]["lines"][0]["quantity"] = -3

    with pytest.raises(DecodeError, match=r"lines\.0\.quantity"):
        decode(json.dumps(document).encode())


def test_unknown_event_type_is_refused() -> None:
    document = envelope_for(placed()).model_dump(mode="json")
    document["event_type"] = "OrderTeleported"

    with pytest.raises(DecodeError, match="unknown message type"):
        decode(json.dumps(document).encode())


def test_old_versions_are_upcast_to_the_current_model() -> None:
    local = MessageRegistry()

    @local.register
    class ParcelWeighed(DomainEvent):
        message_type: ClassVar[str] = "ParcelWeighed"
        message_version: ClassVar[int] = 2
        aggregate_type: ClassVar[str] = "parcel"
        topic: ClassVar[str] = "t"
        grams: int

    @local.upcaster("ParcelWeighed", 1)
    def kilos_to_grams(payload: dict[str, Any]) -> dict[str, Any]:
        return {"grams": int(payload["kilos"] * 1000)}

    assert local.load("ParcelWeighed", 1, {"kilos": 1.5}) == ParcelWeighed(grams=1500)
    assert local.load("ParcelWeighed", 2, {"grams": 7}) == ParcelWeighed(grams=7)
    with pytest.raises(UnknownMessageType, match="newer"):
        local.load("ParcelWeighed", 3, {"grams": 7})


def test_committed_schemas_match_the_code() -> None:
    wanted = schemas.generated()
    committed = {p: p.read_text() for p in schemas.SCHEMAS.rglob("*.json")}
    stale = sorted(str(p) for p in set(wanted) | set(committed) if wanted.get(p) != committed.get(p))
    assert not stale, f"schemas/ is out of date, run `make schemas`: {stale}"


def test_a_breaking_change_within_a_version_is_detected() -> None:
    old = schemas.message_schema(OrderPlaced)
    new = schemas.message_schema(OrderPlaced)
    del new["properties"]["payload"]["properties"]["channel"]
    new["properties"]["payload"]["required"].append("gift_wrap")
    problems = schemas.breaking_changes(old, new)
    assert "field 'channel' removed" in problems
    assert "field 'gift_wrap' became required" in problems
    assert schemas.breaking_changes(old, schemas.message_schema(OrderPlaced)) == []


def order_placed_schema() -> dict[str, Any]:
    return copy.deepcopy(schemas.message_schema(OrderPlaced))


def test_a_field_whose_type_changes_within_a_version_is_detected() -> None:
    old, new = order_placed_schema(), order_placed_schema()
    new["properties"]["payload"]["properties"]["channel"] = {"type": "integer"}
    # Optional where it was required to be there: a reader of the old schema meets null.
    new["properties"]["payload"]["properties"]["customer_id"] = {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
    new["properties"]["payload"]["properties"]["payment_terms"]["enum"].append("cash")

    assert sorted(schemas.breaking_changes(old, new)) == [
        "field 'channel' changed type",
        "field 'customer_id' changed type",
        "field 'payment_terms' changed type",
    ]


def test_breaking_changes_inside_nested_models_are_detected() -> None:
    old, new = order_placed_schema(), order_placed_schema()
    line = new["$defs"]["OrderLine"]
    del line["properties"]["sku"]  # lines[] items
    line["properties"]["quantity"] = {"type": "string"}
    line["properties"]["discount"] = {"type": "string"}
    line["required"].append("discount")
    del new["$defs"]["StoredAddress"]["properties"]["city"]  # shipping.address: a model in anyOf

    assert sorted(schemas.breaking_changes(old, new)) == [
        "field 'lines[].discount' became required",
        "field 'lines[].quantity' changed type",
        "field 'lines[].sku' removed",
        "field 'shipping.address.city' removed",
    ]


def test_compatible_changes_to_nested_models_pass() -> None:
    old, new = order_placed_schema(), order_placed_schema()
    # A new optional field in a nested model...
    new["$defs"]["StoredAddress"]["properties"]["region"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    # ...and a model renamed in the code, same shape on the wire.
    new["$defs"]["Line"] = new["$defs"].pop("OrderLine")
    new["properties"]["payload"]["properties"]["lines"]["items"] = {"$ref": "#/$defs/Line"}

    assert schemas.breaking_changes(old, new) == []
