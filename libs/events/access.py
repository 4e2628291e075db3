"""Access context (administered on the order service, known to every service): API keys for
machines and custom roles for people. Every service projects these events into its own
access tables (libs/runtime/access.py) and authenticates callers from them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from pydantic import Field

from libs.events.base import DomainEvent
from libs.events.registry import registry
from libs.events.topics import ACCESS_EVENTS

Permission = str


class ApiKeyEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "api_key"
    topic: ClassVar[str] = ACCESS_EVENTS
    key_id: str


@registry.register
class ApiKeyIssued(ApiKeyEvent):
    message_type: ClassVar[str] = "ApiKeyIssued"
    name: str = Field(max_length=200)
    # SHA-256 of the key's 256-bit random secret: the key itself is never stored or sent.
    secret_hash: str = Field(max_length=64)
    scopes: tuple[Permission, ...]
    # A sales channel's key submits and reads only this channel's orders.
    channel: str | None = None
    # None: every warehouse.
    warehouses: tuple[str, ...] | None = None
    rate_limit_per_second: Decimal | None = None
    expires_at: datetime | None = None


@registry.register
class ApiKeyRevoked(ApiKeyEvent):
    message_type: ClassVar[str] = "ApiKeyRevoked"
    reason: str


class RoleEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "role"
    topic: ClassVar[str] = ACCESS_EVENTS
    role: str


@registry.register
class RoleDefined(RoleEvent):
    """A custom role, or a new definition of it (the latest one counts)."""

    message_type: ClassVar[str] = "RoleDefined"
    permissions: tuple[Permission, ...]
    description: str = ""


@registry.register
class RoleRemoved(RoleEvent):
    message_type: ClassVar[str] = "RoleRemoved"
