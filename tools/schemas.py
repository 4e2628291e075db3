"""Generates JSON Schema for every public message into schemas/, and the AsyncAPI document.

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
from libs.events.base import Command, Message
from libs.events.topics import ALL_TOPICS, dead_letter_topic

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def public_messages() -> list[type[Message]]:
    """Messages defined in libs/events (tests may register private ones of their own)."""
    return [m for m in registry.all() if m.__module__.startswith("libs.events.")]


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
    envelope["x-topic"] = model.topic
    envelope["x-kind"] = "command" if issubclass(model, Command) else "event"
    return envelope


def schema_path(model: type[Message]) -> str:
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
            "bindings": {"kafka": {"key": {"type": "string", "description": "aggregate id"}}},
            "payload": {"$ref": f"./{schema_path(model)}"},
        }
    for topic, messages in messages_by_topic.items():
        channels[topic] = {
            "address": topic,
            "messages": messages,
            "description": "Keyed by aggregate id: one aggregate's messages keep their order.",
        }
        operations[f"publish:{topic}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.replace('/', '~1')}"},
        }
    channels["<consumer>.dlq"] = {
        "address": dead_letter_topic("{consumer}"),
        "description": "Dead letters of one consumer group: the original bytes and headers, plus "
        "dlq.reason, dlq.consumer, dlq.source (topic/partition@offset), dlq.attempts.",
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
    for model in public_messages():
        files[SCHEMAS / schema_path(model)] = message_schema(model)
    return {path: json.dumps(doc, indent=2, sort_keys=True) + "\n" for path, doc in files.items()}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What a reader of the old schema could no longer rely on (same type and version)."""
    problems = []
    old_payload = old.get("properties", {}).get("payload", {})
    new_payload = new.get("properties", {}).get("payload", {})
    old_props, new_props = old_payload.get("properties", {}), new_payload.get("properties", {})
    for name in old_props:
        if name not in new_props:
            problems.append(f"field {name!r} removed")
        elif _shape(old_props[name]) != _shape(new_props[name]):
            problems.append(f"field {name!r} changed type")
    added_required = set(new_payload.get("required", [])) - set(old_payload.get("required", []))
    problems += [f"field {name!r} became required" for name in sorted(added_required)]
    return problems


def _shape(prop: dict[str, Any]) -> Any:
    keys = ("type", "$ref", "anyOf", "items", "const", "enum")
    return json.dumps({k: prop.get(k) for k in keys}, sort_keys=True)


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
    for path, text in wanted.items():
        if path in existing and path.name not in ("asyncapi.json", "envelope.json"):
            problems = breaking_changes(json.loads(existing[path]), json.loads(text))
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
