"""JSON codec: envelope + typed message <-> bytes on the wire."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from libs.events.base import Message
from libs.events.envelope import Envelope
from libs.events.registry import UnknownMessageType, registry, validate_known


class DecodeError(ValueError):
    """The bytes are not a valid OrderMesh message; the reason says why (for the dead letter)."""


@dataclass(frozen=True)
class Decoded:
    envelope: Envelope
    message: Message


def make_envelope(
    message: Message,
    *,
    event_id: UUID,
    aggregate_id: str,
    aggregate_version: int,
    occurred_at: datetime,
    correlation_id: str,
    causation_id: str | None,
    actor: str,
) -> Envelope:
    return Envelope(
        event_id=event_id,
        event_type=message.message_type,
        event_version=message.message_version,
        aggregate_type=message.aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        occurred_at=occurred_at,
        correlation_id=correlation_id,
        causation_id=causation_id,
        actor=actor,
        payload=message.model_dump(mode="json"),
    )


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


# Nothing we publish comes near this (the models bound every size); anything larger is not
# ours, and parsing it would only cost time and memory.
MAX_MESSAGE_BYTES = 1024 * 1024


def decode(raw: bytes) -> Decoded:
    """Bytes -> envelope + typed message. Every failure, however odd the bytes, is a
    DecodeError with a reason, so a consumer can dead-letter it and move on."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(raw)} bytes is over the limit of {MAX_MESSAGE_BYTES}")
    try:
        document: Any = json.loads(raw)
    except RecursionError as error:
        raise DecodeError("not JSON we accept: nested too deeply") from error
    except ValueError as error:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer
        # literal longer than Python converts (sys.get_int_max_str_digits).
        raise DecodeError(f"not JSON we accept: {str(error)[:200]}") from error
    try:
        envelope = validate_known(Envelope, document)
    except ValidationError as error:
        raise DecodeError(f"invalid envelope: {_summary(error)}") from error
    except (RecursionError, ValueError) as error:
        raise DecodeError(f"invalid envelope: {str(error)[:200]}") from error
    try:
        message = registry.load(envelope.event_type, envelope.event_version, envelope.payload)
    except UnknownMessageType as error:
        raise DecodeError(str(error)) from error
    except ValidationError as error:
        raise DecodeError(f"invalid {envelope.event_type} payload: {_summary(error)}") from error
    except (RecursionError, ValueError) as error:
        raise DecodeError(f"invalid {envelope.event_type} payload: {str(error)[:200]}") from error
    return Decoded(envelope, message)


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}" for item in error.errors()
    )
