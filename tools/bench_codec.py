"""Cost per message of the envelope codec, in process: the compiled codec (msgspec) against
the standard library's parser and pydantic's writer, on every public message type.

    python -m tools.bench_codec [--rounds 300] [--json]

Per message, in microseconds of CPU (process time, the best of several repeats, so that
other work on the machine counts as little as possible):
- make+encode: what a writer pays per message it records: make_envelope (the payload dumped
  by pydantic, the envelope validated), the bytes for the outbox (`encode`) and the JSON for
  the event store's payload column (`encode_payload`).
- decode: what a consumer pays per record: bytes -> envelope + typed message (`decode`).
- store read: what loading an aggregate pays per event: a row with its jsonb payload as text
  -> envelope (`_to_envelope`) -> typed event (`registry.load`).
Each figure is the mean over every public message type (one example of each, every field
filled, see `examples`), and for an OrderPlaced of five lines, the largest message an order
sends.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from libs.events import Envelope, Message, decode, encode, make_envelope, registry
from libs.events.codec import compiled_codec, encode_payload, use_compiled_codec
from libs.events.order import OrderPlaced
from libs.events.values import Address, CustomerSnapshot, OrderLine, Shipping
from libs.runtime.eventstore import _to_envelope

# Text that every JSON writer must agree on to be byte-compatible: non-ASCII, quotes,
# backslashes and control characters, which need escapes.
AWKWARD_TEXT = 'Zoë "Ž" \\ \t\n\x01\x1f\x7f € ✓ 😀 </script>'
# Values for the string patterns the contracts use.
PATTERN_VALUES = {
    r"^[A-Z]{3}$": "EUR",
    r"^[!-~]+$": "SKU-1~!",
    r"^[A-Za-z0-9_.-]+$": "WH_1.a-b",
    r"^[a-z0-9_-]+$": "reduced",
    r"^([01][0-9]|2[0-3]):[0-5][0-9]$": "07:30",
    r"^[0-9a-f]{64}$": "0123456789abcdef" * 4,
}
OCCURRED_AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def public_messages() -> list[type[Message]]:
    return [m for m in registry.all() if m.__module__.startswith("libs.events.")]


def example_document(schema: dict[str, Any], defs: dict[str, Any], awkward: bool = True) -> Any:
    """A document that `schema` (a model's validation JSON schema) accepts, with every
    optional field filled in, so that every field meets the writers under test."""
    if "$ref" in schema:
        return example_document(defs[schema["$ref"].rsplit("/", 1)[1]], defs, awkward)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][-1]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        # Decimal money is "number or decimal string": a number takes every constraint.
        numbers = [s for s in options if s.get("type") == "number"]
        return example_document((numbers or options)[0], defs, awkward)
    kind = schema.get("type")
    if kind == "object":
        if "properties" in schema:
            return {
                name: example_document(field, defs, awkward) for name, field in schema["properties"].items()
            }
        values = schema.get("additionalProperties")
        return {"k": example_document(values, defs, awkward)} if isinstance(values, dict) else {}
    if kind == "array":
        items = schema.get("items") or (schema.get("prefixItems") or [{}])[0]
        return [example_document(items, defs, awkward) for _ in range(max(schema.get("minItems", 1), 2))]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)) + 1
    if kind == "number":
        below = schema.get("maximum", schema.get("exclusiveMaximum"))
        return 12.5 if below is None or below > 25 else below / 4
    if kind == "boolean":
        return True
    if kind == "string":
        return _example_string(schema, awkward)
    return None


def _example_string(schema: dict[str, Any], awkward: bool) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        return "8f14e45f-ceea-467f-a0e6-1b9d2c3e4f50"
    if fmt == "date-time":
        return "2026-03-04T05:06:07.5+01:00"
    if fmt == "date":
        return "2026-03-04"
    if "pattern" in schema:
        try:
            return PATTERN_VALUES[schema["pattern"]]
        except KeyError:
            raise LookupError(
                f"a message field has the pattern {schema['pattern']!r}: add a value matching it to"
                " PATTERN_VALUES in tools/bench_codec.py"
            ) from None
    text = AWKWARD_TEXT if awkward else "plain"
    return text[: schema.get("maxLength", len(text))].ljust(schema.get("minLength", 0), "x")


def example(model: type[Message]) -> Message:
    """One instance of `model` with every field filled (awkward text where the model allows
    it, plain text where a validator of the model refuses it)."""
    schema = model.model_json_schema(mode="validation")
    try:
        return model.model_validate(example_document(schema, schema.get("$defs", {})))
    except ValueError:
        return model.model_validate(example_document(schema, schema.get("$defs", {}), awkward=False))


def examples() -> list[Message]:
    return [example(model) for model in public_messages()]


def large_order() -> OrderPlaced:
    return OrderPlaced(
        order_id="o-7c1d2e",
        channel="web",
        customer_id="c-10442",
        customer=CustomerSnapshot(name="Ada Lovelace", email="ada@example.org", phone="+44 20 7946 0000"),
        lines=tuple(
            OrderLine(sku=f"SKU-{i:04d}", quantity=i + 1, unit_price=Decimal("19.95")) for i in range(5)
        ),
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping(
            method="standard",
            address=Address(
                line1="12 St James's Square", city="London", postal_code="SW1Y 4LB", country="GB"
            ),
        ),
        subtotal=Decimal("299.25"),
    )


def envelope_of(message: Message, event_id: int = 1) -> Envelope:
    return make_envelope(
        message,
        event_id=UUID(int=event_id),
        aggregate_id="o-7c1d2e",
        aggregate_version=3,
        occurred_at=OCCURRED_AT,
        correlation_id="o-7c1d2e",
        causation_id="5f1a9c1e-0d7b-4c33-9f0e-2a6c3b1d4e5f",
        actor="service:order",
    )


def stored_row(envelope: Envelope) -> dict[str, Any]:
    """The events row of `envelope` as asyncpg returns it (jsonb as text)."""
    return {
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "event_version": envelope.event_version,
        "stream_type": envelope.aggregate_type,
        "stream_id": f"{envelope.aggregate_type}-{envelope.aggregate_id}",
        "version": envelope.aggregate_version,
        "occurred_at": envelope.occurred_at,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "actor": envelope.actor,
        "payload": json.dumps(envelope.payload),  # how PostgreSQL spells jsonb text: spaced
    }


def _per_call_us(work: Callable[[], object], rounds: int) -> float:
    timer = timeit.Timer(work, timer=time.process_time)
    return min(timer.repeat(repeat=7, number=rounds)) / rounds * 1e6


def _stages(message: Message) -> dict[str, Callable[[], object]]:
    envelope = envelope_of(message)
    raw = encode(envelope)
    row = stored_row(envelope)

    def make_and_encode() -> None:
        made = envelope_of(message)
        encode(made)
        encode_payload(made.payload)

    def store_read() -> None:
        read = _to_envelope(row)
        registry.load(read.event_type, read.event_version, read.payload)

    return {"make+encode": make_and_encode, "decode": lambda: decode(raw), "store read": store_read}


def measure(messages: list[Message], rounds: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for message in messages:
        for stage, work in _stages(message).items():
            totals[stage] = totals.get(stage, 0.0) + _per_call_us(work, rounds)
    return {stage: round(total / len(messages), 2) for stage, total in totals.items()}


def run(rounds: int) -> dict[str, Any]:
    """Both codecs, alternated per data set, so a change in the machine's load between them
    shows up in both."""
    data: dict[str, list[Message]] = {
        "every public type (mean)": examples(),
        "OrderPlaced, 5 lines": [large_order()],
    }
    was = compiled_codec()
    result: dict[str, Any] = {}
    try:
        for name, messages in data.items():
            figures: dict[str, dict[str, float]] = {}
            for compiled in (False, True):
                use_compiled_codec(compiled)
                figures["msgspec" if compiled else "stdlib+pydantic"] = measure(messages, rounds)
            result[name] = figures
    finally:
        use_compiled_codec(was)
    result["message_types"] = len(data["every public type (mean)"])
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| messages | stage | stdlib+pydantic µs | msgspec µs | saved |", "|---|---|---:|---:|---:|"]
    for name, figures in result.items():
        if not isinstance(figures, dict):
            continue
        before, after = figures["stdlib+pydantic"], figures["msgspec"]
        for stage in before:
            saved = 1 - after[stage] / before[stage]
            lines.append(f"| {name} | {stage} | {before[stage]:.1f} | {after[stage]:.1f} | {saved:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    figures = run(args.rounds)
    print(json.dumps(figures, indent=2) if args.json else table(figures))
