"""Base classes for public messages: frozen pydantic models with a stable type and version."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """A public message body. The envelope around it carries identity, order and causality."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_type: ClassVar[str]
    message_version: ClassVar[int] = 1
    # The aggregate kind whose stream the message belongs to (order, stock_item, invoice, ...).
    aggregate_type: ClassVar[str]
    # The topic the message is published to; see libs.events.topics.
    topic: ClassVar[str]


class DomainEvent(Message):
    """Something that happened, named in the past tense, owned by exactly one service."""


class Command(Message):
    """A request to a participant service, sent by the order saga (imperative name)."""
