"""JSON codec: envelope + typed message <-> bytes on the wire.

JSON is parsed and written by msgspec (compiled), and validated by the pydantic models as
before: the bytes, the accepted messages and the reasons a message is refused are the same,
at a fraction of the cost of the standard library's parser and pydantic's writer (see
`python -m tools.bench_codec`). OM_COMPILED_CODEC=false (or `use_compiled_codec(False)`)
goes back to the standard library's parser and pydantic's writer, to measure the difference.

Not orjson: it reads an integer beyond 64 bits as a float, where msgspec and the standard
library read it exactly. One difference remains, for floats of 1e16 and more ("1e16" where
pydantic writes "1e+16", the same number): no contract has a float field
(tests/unit/test_codec_compiled.py keeps it so).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from pydantic import ValidationError

from libs.events.base import Message
from libs.events.envelope import Envelope
from libs.events.fast_decode import FastDecoder
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


class _Codec:
    compiled = os.environ.get("OM_COMPILED_CODEC", "true").strip().lower() not in ("0", "false", "no", "off")
    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder()


def use_compiled_codec(enabled: bool) -> None:
    """Parse and write JSON with msgspec (True, the default) or the standard library's parser
    and pydantic's writer (False); the bytes and the validation are the same either way."""
    _Codec.compiled = enabled


def compiled_codec() -> bool:
    return _Codec.compiled


def encode(envelope: Envelope) -> bytes:
    if _Codec.compiled:
        try:
            # The envelope's fields in declaration order, as pydantic writes them (ids, times
            # and offsets alike). Its payload is JSON data: make_envelope dumps it in JSON
            # mode, the store and the wire parse it.
            return _Codec.encoder.encode(vars(envelope))
        except TypeError:
            pass  # a payload built in code with a value msgspec has no type for
    return envelope.model_dump_json().encode()


def encode_payload(payload: dict[str, Any]) -> str:
    """A payload as JSON text, for the event store's jsonb column (which keeps the value, not
    the spelling: compact from msgspec, the standard library's spacing without it)."""
    if _Codec.compiled:
        try:
            return _Codec.encoder.encode(payload).decode()
        except TypeError:
            pass
    return json.dumps(payload)


def parse_json(raw: bytes | str) -> Any:
    """JSON text -> Python values. Input msgspec refuses is parsed again by the standard
    library, which accepts a little more (NaN, 1e400, lone surrogates, UTF-16) and words its
    errors as our dead letters always have."""
    if _Codec.compiled:
        try:
            return _Codec.decoder.decode(raw)
        except msgspec.DecodeError:
            pass
    return json.loads(raw)


# Nothing we publish comes near this (the models bound every size); anything larger is not
# ours, and parsing it would only cost time and memory.
MAX_MESSAGE_BYTES = 1024 * 1024


def decode(raw: bytes) -> Decoded:
    """Bytes -> envelope + typed message. Every failure, however odd the bytes, is a
    DecodeError with a reason, so a consumer can dead-letter it and move on."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(raw)} bytes is over the limit of {MAX_MESSAGE_BYTES}")
    try:
        document: Any = parse_json(raw)
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


class _FastPath:
    # Off by default: on the replay's mix of events it costs as much CPU as decode
    # (docs/performance.md, "Reporting rebuild by replay"); OM_FAST_DECODE=true turns it on.
    enabled = os.environ.get("OM_FAST_DECODE", "false").strip().lower() in ("1", "true", "yes", "on")
    decoder: FastDecoder | None = None


def use_fast_decode(enabled: bool) -> None:
    """Let decode_fast take the fast path (True) or always decode the full way (False, the
    default): `python -m tools.bench_replay --fast-decode` measures the difference."""
    _FastPath.enabled = enabled


def decode_fast(raw: bytes) -> Decoded:
    """As decode, faster for the messages the fast path vouches for (libs/events/fast_decode.py):
    the same envelope and message, field for field. Anything else, older versions and every
    message the full decode refuses among them, is decoded the full way, so a refusal is the
    same DecodeError with the same reason."""
    if _FastPath.enabled and _Codec.compiled and len(raw) <= MAX_MESSAGE_BYTES:
        if _FastPath.decoder is None:
            _FastPath.decoder = FastDecoder()
        fast = _FastPath.decoder.decode(raw)
        if fast is not None:
            return Decoded(*fast)
    return decode(raw)


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}" for item in error.errors()
    )
