"""Generates JSON Schema for every public message into schemas/, and the AsyncAPI document.

The AsyncAPI document and schemas/<topic>/ show what goes on the wire: the published messages.
A private domain event (`published = False`: a service's own bookkeeping, kept in its event
store) still gets a schema, since it is the store's format, filed apart under
schemas/private/<aggregate type>/ and in no topic of the AsyncAPI document (docs/events.md).

    python -m tools.schemas          write schemas/ (refuses a breaking change within a version)
    python -m tools.schemas --check  exit 1 if schemas/ differs from the code

Within one (message type, version) a change may only add optional fields. Removing a field,
adding a required one or changing a field's type needs a new event_version and an upcaster.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from libs.events import Envelope, registry
from libs.events.base import Command, DomainEvent, Message
from libs.events.intake import OrderIntakeResult
from libs.events.topics import ALL_TOPICS, ORDER_EVENTS, ORDER_INTAKE, ORDER_INTAKE_RESULTS, dead_letter_topic

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def contract_messages() -> list[type[Message]]:
    """Messages defined in libs/events (tests may register ones of their own)."""
    return [m for m in registry.all() if m.__module__.startswith("libs.events.")]


def is_private(model: type[Message]) -> bool:
    return issubclass(model, DomainEvent) and not model.published


def public_messages() -> list[type[Message]]:
    """What the services publish: every message of the contracts but the private events."""
    return [m for m in contract_messages() if not is_private(m)]


def private_events() -> list[type[Message]]:
    """Domain events that stay in their service's event store (OM_PUBLIC_EVENTS_ONLY on)."""
    return [m for m in contract_messages() if is_private(m)]


def message_schema(model: type[Message]) -> dict[str, Any]:
    payload = model.model_json_schema(mode="serialization")
    envelope = Envelope.model_json_schema(mode="serialization")
    envelope["$id"] = f"https://ordermesh.dev/schemas/{schema_path(model)}"
    envelope["title"] = f"{model.message_type} v{model.message_version}"
    envelope["description"] = (model.__doc__ or "").strip() or model.message_type
    envelope["properties"]["event_type"] = {"const": model.message_type}
    envelope["properties"]["event_version"] = {"const": model.message_version}
    envelope["properties"]["aggregate_type"] = {"const": model.aggregate_type}
    defs = payload.pop("$defs", {})
    envelope["properties"]["payload"] = payload
    if defs:
        envelope["$defs"] = defs
    if is_private(model):
        envelope["description"] = (
            f"Private: stored in the {model.aggregate_type} stream of its service's event store, not"
            f" published (published to {model.topic} only with OM_PUBLIC_EVENTS_ONLY=false). "
            + envelope["description"]
        )
    else:
        envelope["x-topic"] = model.topic
    envelope["x-kind"] = _kind(model)
    return envelope


def _kind(model: type[Message]) -> str:
    if is_private(model):
        return "private-event"
    if issubclass(model, OrderIntakeResult):
        return "reply"
    return "command" if issubclass(model, Command) else "event"


AGGREGATE_KEY = "Keyed by aggregate id: one aggregate's messages keep their order."
# Topics whose key or role differ from the rule above, described for their readers.
TOPIC_DESCRIPTIONS = {
    ORDER_EVENTS: f"{AGGREGATE_KEY} The order service's public contract (docs/events.md): OrderPlaced, one "
    "OrderStatusChanged per order per transaction in which its status changed (with the order's money, "
    "allocations and shipments as they stand), OrderRefunded, and the customer events. The saga's own "
    "events stay in the order service's event store (schemas/private/order/); with "
    "OM_PUBLIC_EVENTS_ONLY=false they are published here too, and OrderStatusChanged is not.",
    ORDER_INTAKE: "Sales channels publish SubmitOrder here (envelope actor `channel:<name>`); key it "
    "`<channel>:<external_id>`, as the results are. Every message is answered on "
    f"{ORDER_INTAKE_RESULTS} (docs/intake.md).",
    ORDER_INTAKE_RESULTS: "One OrderIntakeResult per message on the intake topic: `accepted` with the "
    "order id and status, or `refused` with the reason (also for a message that could not be decoded, "
    "when its channel and external id, or its event_id, can be read from its bytes). Keyed "
    "`<channel>:<external_id>`, else by the intake message's event_id. Written through the order "
    "service's outbox in the transaction that placed the order or claimed the refusal: one answer per "
    "intake message.",
}
MESSAGE_KEYS = {
    ORDER_INTAKE: "<channel>:<external_id> (any key works; this one keeps a channel's submissions of one "
    "order in order)",
    ORDER_INTAKE_RESULTS: "<channel>:<external_id>, else the intake message's event_id",
}


def schema_path(model: type[Message]) -> str:
    if is_private(model):
        return f"private/{model.aggregate_type}/{model.message_type}.v{model.message_version}.json"
    return f"{model.topic}/{model.message_type}.v{model.message_version}.json"


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages_by_topic: dict[str, dict[str, Any]] = {t: {} for t in ALL_TOPICS}
    for model in public_messages():
        messages_by_topic[model.topic][model.message_type] = {
            "name": model.message_type,
            "title": f"{model.message_type} v{model.message_version}",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "event_type": {"type": "string"},
                    "traceparent": {"type": "string", "description": "W3C trace context"},
                    "tracestate": {"type": "string"},
                },
            },
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": MESSAGE_KEYS.get(model.topic, "aggregate id")}
                }
            },
            "payload": {"$ref": f"./{schema_path(model)}"},
        }
    for topic, messages in messages_by_topic.items():
        channels[topic] = {
            "address": topic,
            "messages": messages,
            "description": TOPIC_DESCRIPTIONS.get(topic, AGGREGATE_KEY),
        }
        operations[f"publish:{topic}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.replace('/', '~1')}"},
        }
    # What a channel does with the intake: it sends submissions, and receives their results.
    operations[f"receive:{ORDER_INTAKE_RESULTS}"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{ORDER_INTAKE_RESULTS}"},
        "summary": "A sales channel reads the answer to each of its intake messages.",
    }
    channels["<consumer>.dlq"] = {
        "address": dead_letter_topic("{consumer}"),
        "description": "Dead letters of one consumer group: the original bytes and headers, plus "
        "dlq.reason, dlq.consumer, dlq.source (topic/partition@offset), dlq.attempts (dlq.detail: a "
        "traceback; dlq.truncated: the original size, when the bytes were cut to fit). The intake's is "
        "order-intake.dlq; each dead letter is also logged (one WARNING line naming consumer, "
        "source and reason).",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "OrderMesh",
            "version": "1",
            "description": "Public topics of OrderMesh. Every message is an Envelope "
            "(schemas/envelope.json) whose payload is the message's own schema.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    }


def generated() -> dict[Path, str]:
    files = {
        SCHEMAS / "envelope.json": Envelope.model_json_schema(mode="serialization"),
        SCHEMAS / "asyncapi.json": asyncapi(),
    }
    for model in contract_messages():
        files[SCHEMAS / schema_path(model)] = message_schema(model)
    return {path: json.dumps(doc, indent=2, sort_keys=True) + "\n" for path, doc in files.items()}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What a reader of the old schema could no longer rely on (same type and version).

    Walks the payload and every model it uses (`$defs`: lines, addresses, ...), so a field
    removed, retyped or made required inside a nested model is found like a top-level one.
    Fields are named by their path: `lines[].quantity`, `shipping.address.city`.
    """
    problems: list[str] = []
    _SchemaWalk(old, new, problems).compare(
        old.get("properties", {}).get("payload", {}), new.get("properties", {}).get("payload", {}), ""
    )
    return problems


class _SchemaWalk:
    def __init__(self, old_root: dict[str, Any], new_root: dict[str, Any], problems: list[str]) -> None:
        self.old_root, self.new_root, self.problems = old_root, new_root, problems

    def compare(
        self,
        old: dict[str, Any],
        new: dict[str, Any],
        path: str,
        inside: frozenset[tuple[str | None, str | None]] = frozenset(),
    ) -> None:
        (old, old_ref), (new, new_ref) = _resolve(old, self.old_root), _resolve(new, self.new_root)
        models = (old_ref, new_ref)
        if models != (None, None):
            if models in inside:  # a recursive model, already being compared further up
                return
            inside = inside | {models}
        if _shape(old) != _shape(new):
            self.problems.append(f"field {path!r} changed type")
            return
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for name in old_props:
            field = f"{path}.{name}" if path else name
            if name not in new_props:
                self.problems.append(f"field {field!r} removed")
            else:
                self.compare(old_props[name], new_props[name], field, inside)
        added_required = set(new.get("required", [])) - set(old.get("required", []))
        for name in sorted(added_required):
            self.problems.append(f"field {(f'{path}.{name}' if path else name)!r} became required")
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            self.compare(old["items"], new["items"], f"{path}[]", inside)
        for key in ("prefixItems", "anyOf", "oneOf"):  # same length: _shape compared it
            for old_item, new_item in zip(old.get(key, []), new.get(key, []), strict=True):
                self.compare(old_item, new_item, path, inside)
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare(old_extra, new_extra, f"{path}{{}}", inside)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The schema a `$ref` (or a one-element `allOf`) points at, with the node's own keys,
    and the name of the model it is, if any."""
    model = None
    while True:
        if "$ref" in node:
            model = str(node["$ref"]).removeprefix("#/$defs/")
            target = root.get("$defs", {}).get(model)
            if target is None:
                raise ValueError(f"schema reference {node['$ref']!r} does not resolve")
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif len(node.get("allOf", [])) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node, model


def _shape(node: dict[str, Any]) -> str:
    """What a reader relies on at one level: the JSON type and its fixed values, and how many
    alternatives or tuple positions there are (each is then compared on its own)."""
    shape = {key: node.get(key) for key in ("type", "const", "enum", "format")}
    shape.update({key: len(node.get(key, [])) for key in ("anyOf", "oneOf", "prefixItems")})
    return json.dumps(shape, sort_keys=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    wanted = generated()
    existing = {p: p.read_text() for p in SCHEMAS.rglob("*.json")}
    if args.check:
        stale = sorted(
            str(p.relative_to(ROOT)) for p in set(wanted) | set(existing) if wanted.get(p) != existing.get(p)
        )
        if stale:
            print("schemas/ is out of date; run `make schemas`:\n  " + "\n  ".join(stale))
            return 1
        print(f"schemas/ matches the code ({len(wanted)} files)")
        return 0
    refused = []
    # A message that became private (or public) moves to another folder: its file of the same
    # type and version is what it is compared with.
    by_name = {p.name: p for p in existing if p.name not in ("asyncapi.json", "envelope.json")}
    for path, text in wanted.items():
        before = path if path in existing else by_name.get(path.name)
        if before is not None and path.name not in ("asyncapi.json", "envelope.json"):
            problems = breaking_changes(json.loads(existing[before]), json.loads(text))
            if problems:
                refused.append(f"{path.relative_to(ROOT)}: {'; '.join(problems)}")
    if refused:
        print(
            "breaking changes within one event_version (bump message_version and add an "
            "upcaster instead):\n  " + "\n  ".join(refused)
        )
        return 1
    for path in set(existing) - set(wanted):
        path.unlink()
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(wanted)} files under schemas/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
