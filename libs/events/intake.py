"""The order service's answer to a sales channel's intake message.

For every message on the intake topic (`oms.order.intake.v1`) the order service publishes one
`OrderIntakeResult` to `oms.order.intake-results.v1`: the order id and its status when the
submission was accepted, or why it was refused. Keyed by `<channel>:<external_id>` (see
`result_key`), so a channel that keys its submissions the same way reads its answers in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from libs.events.base import Message
from libs.events.registry import registry
from libs.events.topics import ORDER_INTAKE_RESULTS

IntakeOutcome = Literal["accepted", "refused"]


class FieldError(BaseModel):
    """One problem with one field of the intake message, named by its path from the
    envelope's root, e.g. `payload.lines[0].unit_price`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(max_length=300)
    message: str = Field(max_length=500)


@registry.register
class OrderIntakeResult(Message):
    """The answer to one intake message: `accepted` with the order id and the order's status
    (`duplicate` when the same submission was accepted before: the answer names that order),
    or `refused` with a `reason` code (`undecodable`, `invalid`, `not_a_submission`,
    `idempotency_conflict`, `unprocessable`, or another business rule's code), a `detail` for
    a person and, for invalid fields, one entry per field in `errors`. Never carries the
    customer's personal data."""

    message_type: ClassVar[str] = "OrderIntakeResult"
    aggregate_type: ClassVar[str] = "order_submission"
    topic: ClassVar[str] = ORDER_INTAKE_RESULTS

    outcome: IntakeOutcome
    intake_event_id: UUID | None = Field(
        default=None, description="event_id of the intake message answered (absent if unreadable)"
    )
    channel: str | None = Field(default=None, max_length=40)
    external_id: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)
    order_id: str | None = Field(default=None, max_length=64)
    status: str | None = Field(default=None, max_length=40, description="the order's status (accepted)")
    duplicate: bool = False
    hold_reasons: tuple[str, ...] = Field(default=(), max_length=50)
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="refused: the reason code; accepted: why the order was rejected, if it was",
    )
    detail: str | None = Field(default=None, max_length=2000)
    errors: tuple[FieldError, ...] = Field(default=(), max_length=100)


@dataclass(frozen=True)
class SubmissionIdentity:
    """What names a submission to its channel, as far as it could be read."""

    intake_event_id: UUID | None = None
    channel: str | None = None
    external_id: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None

    @property
    def answerable(self) -> bool:
        """A result can be keyed so that the channel finds it."""
        return result_key(self) is not None


def result_key(identity: SubmissionIdentity) -> str | None:
    """`<channel>:<external_id>`; without an external id, the intake message's event_id
    (which the channel chose); None when neither could be read."""
    if identity.channel and identity.external_id:
        return f"{identity.channel}:{identity.external_id}"
    if identity.intake_event_id is not None:
        return str(identity.intake_event_id)
    return None


def result_id(identity: SubmissionIdentity, source: str) -> UUID:
    """The result's own event_id, the same however often it is produced for one message."""
    return uuid5(NAMESPACE_URL, f"ordermesh:intake-result:{identity.intake_event_id or source}")


def field_path(location: Sequence[int | str]) -> str:
    """("payload", "lines", 0, "unit_price") -> "payload.lines[0].unit_price"."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "<root>"


def field_errors(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[int | str] = ()
) -> tuple[FieldError, ...]:
    """Pydantic's errors as FieldErrors, without the offending input (it may be personal):
    one per real problem. A list whose items failed is also "too short after validation"
    (its bad items do not count): that echo of the items' own errors is left out."""
    listed = [(tuple(p for p in e["loc"] if isinstance(p, int | str)), e) for e in errors]
    failed_inside = {location[:n] for location, _ in listed for n in range(len(location))}
    found = []
    for location, error in listed:
        if error.get("type") == "too_short" and location in failed_inside:
            continue
        message = str(error["msg"])[:500]
        found.append(FieldError(field=field_path([*prefix, *location])[:300], message=message))
    return tuple(found[:100])


# Only the first bytes of a message that is not even JSON are searched for its identity.
_SEARCHED_BYTES = 64 * 1024
_IDENTITY_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # no control characters


def recover_identity(raw: bytes, document: Any = None) -> SubmissionIdentity:
    """The identity of an intake message that could not be decoded: from its JSON if it
    parses (`document`, when the caller parsed it already), else searched for in its text.
    A value that is not a plausible reference (not a short printable string) is left out."""
    if document is None:
        try:
            document = json.loads(raw) if len(raw) <= 1024 * 1024 else None
        except (ValueError, RecursionError):
            document = None
    if isinstance(document, dict):
        payload = document.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        event_id = _uuid(document.get("event_id"))
        return SubmissionIdentity(
            intake_event_id=event_id,
            channel=_reference(payload.get("channel"), 40),
            external_id=_reference(payload.get("external_id"), 200),
            idempotency_key=_reference(payload.get("idempotency_key"), 200),
            correlation_id=_reference(document.get("correlation_id"), 200),
        )
    text = raw[:_SEARCHED_BYTES].decode("utf-8", errors="replace")
    return SubmissionIdentity(
        intake_event_id=_uuid(_search(text, "event_id")),
        channel=_reference(_search(text, "channel"), 40),
        external_id=_reference(_search(text, "external_id"), 200),
        idempotency_key=_reference(_search(text, "idempotency_key"), 200),
    )


def _search(text: str, name: str) -> str | None:
    """The first `"name": "value"` in a text that is not valid JSON (a cut-off message, say)."""
    match = re.search(rf'"{name}"\s*:\s*"([^"\\]{{1,200}})"', text)
    return match.group(1) if match else None


def _reference(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and len(value) <= limit and _IDENTITY_TEXT.fullmatch(value):
        return value
    return None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None
