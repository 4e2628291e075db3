"""The Kafka order intake: place each submission a channel publishes, and answer every intake
message on the results topic (libs/events/intake.py).

An accepted submission's answer is queued in the unit of work that places the order, so the
two commit together (outbox); a refused one's in the transaction that claims the refusal,
after its dead letter is published (libs/runtime/consumer.py). Either way one answer per
message, and none for a message that was never handled.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from libs.domain import DomainError
from libs.events import Decoded, DecodeError
from libs.events.intake import (
    FieldError,
    OrderIntakeResult,
    SubmissionIdentity,
    field_errors,
    recover_identity,
    result_id,
    result_key,
)
from libs.events.order import SubmitOrder
from libs.events.registry import UnknownMessageType
from libs.runtime.consumer import Refusal
from libs.runtime.db import is_bad_value
from libs.runtime.uow import MessageContext, UnitOfWork
from services.order.app.handlers import OrderHandlers
from services.order.domain.order import ORDER


@dataclass
class OrderIntake:
    handlers: OrderHandlers

    async def on_submission(self, uow: UnitOfWork, decoded: Decoded) -> None:
        submission = decoded.message
        if not isinstance(submission, SubmitOrder):
            raise TypeError(f"order intake routed a {type(submission).__name__}")
        placement = await self.handlers.place(uow, submission)
        # The order as this unit of work left it (or as an earlier submission did): its
        # hold reasons and, when review rejected it, why.
        order, _ = await uow.load(ORDER, placement.order_id)
        identity = identity_of(decoded)
        result = OrderIntakeResult(
            outcome="accepted",
            intake_event_id=identity.intake_event_id,
            channel=identity.channel,
            external_id=identity.external_id,
            idempotency_key=identity.idempotency_key,
            order_id=placement.order_id,
            status=order.status,
            duplicate=not placement.created,
            hold_reasons=order.hold_reasons if order.status == "on_hold" else (),
            reason=order.last_reason if order.status == "rejected" else None,
        )
        await _answer(uow, identity, result, str(decoded.envelope.event_id))

    async def on_refusal(self, uow: UnitOfWork, refusal: Refusal) -> None:
        if refusal.decoded is not None:
            identity = identity_of(refusal.decoded)
        else:
            identity = recover_identity(refusal.record.value or b"")
        if not identity.answerable:
            return  # nothing names the sender: the dead letter (and its log line) is all there is
        reason, detail, errors = explain(refusal)
        result = OrderIntakeResult(
            outcome="refused",
            intake_event_id=identity.intake_event_id,
            channel=identity.channel,
            external_id=identity.external_id,
            idempotency_key=identity.idempotency_key,
            reason=reason,
            detail=detail[:2000],
            errors=errors,
        )
        if refusal.decoded is None:
            uow.context = MessageContext(
                correlation_id=identity.correlation_id or result_key(identity) or refusal.source,
                actor=uow.context.actor,
            )
        await _answer(uow, identity, result, refusal.source)


def identity_of(decoded: Decoded) -> SubmissionIdentity:
    message = decoded.message
    envelope = decoded.envelope
    if isinstance(message, SubmitOrder):
        return SubmissionIdentity(
            intake_event_id=envelope.event_id,
            channel=message.channel,
            external_id=message.external_id,
            idempotency_key=message.idempotency_key,
            correlation_id=envelope.correlation_id,
        )
    # Another kind of message on the intake topic: whatever of a submission's naming it has.
    payload = envelope.payload
    recovered = recover_identity(b"", {"event_id": str(envelope.event_id), "payload": payload})
    return SubmissionIdentity(
        intake_event_id=envelope.event_id,
        channel=recovered.channel,
        external_id=recovered.external_id,
        idempotency_key=recovered.idempotency_key,
        correlation_id=envelope.correlation_id,
    )


def explain(refusal: Refusal) -> tuple[str, str, tuple[FieldError, ...]]:
    """(reason code, detail for a person, field errors) of a refused intake message."""
    error = refusal.error
    cause = error.__cause__ if isinstance(error, DecodeError) else error
    if isinstance(cause, ValidationError):
        # Invalid fields: of the envelope, or of the SubmitOrder inside it (its `payload`).
        prefix = () if cause.title == "Envelope" else ("payload",)
        errors = field_errors(cause.errors(include_input=False), prefix)
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return "invalid", detail, errors
    if isinstance(cause, UnknownMessageType):
        return "unknown_message_type", str(cause), ()
    if isinstance(error, DecodeError):
        return "undecodable", str(error), ()
    if isinstance(error, DomainError):
        return error.code, error.message, ()
    if refusal.decoded is not None and error is None:
        return "not_a_submission", refusal.reason, ()
    if error is not None and is_bad_value(error):
        return "invalid", "a value the database cannot store (a NUL character, say)", ()
    return "unprocessable", "the order service could not process this message (see its dead letter)", ()


async def _answer(
    uow: UnitOfWork, identity: SubmissionIdentity, result: OrderIntakeResult, source: str
) -> None:
    key = result_key(identity)
    if key is None:
        return
    await uow.send(result, key, result_id(identity, source))
