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
    """Something that happened, named in the past tense, owned by exactly one service.

    Every domain event is stored in its service's event store. A published one also goes to
    its topic; a private one (`published = False`) is the service's own bookkeeping and
    stays in the store, where other contexts learn of it only through the integration
    events the service derives from it (IntegrationEvent). Its schema is still generated:
    it is the store's format, filed apart from the topics' messages (schemas/private/).
    """

    published: ClassVar[bool] = True


class IntegrationEvent(Message):
    """A public message a service derives from the domain events one unit of work recorded
    (libs/runtime/uow.py, IntegrationTranslator): designed for other contexts and outside
    readers, published through the outbox in the same transaction, never stored as an event."""


class Command(Message):
    """A request to a participant service, sent by the order saga (imperative name)."""
