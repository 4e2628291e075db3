"""Every service's view of the access context: API keys and custom roles.

The order service records the access events (services/order: /admin/api-keys, /admin/roles);
every service, the order service included, consumes them from the access topic into its own
tables, so authenticating a caller never needs another service. A process keeps what it read
for OM_AUTH_DIRECTORY_CACHE_SECONDS: a revocation reaches every replica within that.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events import DomainEvent, Envelope
from libs.events.access import ApiKeyIssued, ApiKeyRevoked, RoleDefined, RoleRemoved
from libs.events.codec import Decoded
from libs.events.topics import ACCESS_EVENTS
from libs.runtime.consumer import EventConsumer
from libs.runtime.db import Sql
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import UnitOfWork
from libs.runtime.writes import WriteBatch


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]
    channel: str | None
    warehouses: frozenset[str] | None
    rate_limit_per_second: float | None
    expires_at: datetime | None
    revoked: bool


# -- projection (version-guarded upserts: a redelivered or older event changes nothing) -------

_ISSUE_KEY = Sql(
    "INSERT INTO access_api_keys (key_id, name, secret_hash, scopes, channel, warehouses,"
    " rate_limit_per_second, expires_at, issued_at, version)"
    " VALUES (:key_id, :name, :secret_hash, :scopes, :channel, :warehouses, :rate, :expires_at,"
    " :at, :version)"
    " ON CONFLICT (key_id) DO NOTHING"
)
_REVOKE_KEY = Sql(
    "UPDATE access_api_keys SET revoked_at = :at, revoked_reason = :reason, version = :version"
    " WHERE key_id = :key_id AND version < :version"
)
_DEFINE_ROLE = Sql(
    "INSERT INTO access_roles (role, permissions, description, removed, defined_at, version)"
    " VALUES (:role, :permissions, :description, :removed, :at, :version)"
    " ON CONFLICT (role) DO UPDATE SET permissions = EXCLUDED.permissions,"
    " description = EXCLUDED.description, removed = EXCLUDED.removed,"
    " defined_at = EXCLUDED.defined_at, version = EXCLUDED.version"
    " WHERE access_roles.version < EXCLUDED.version"
)


def project_access(batch: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    """Queues an access event's change to the access tables (a Projector)."""
    at, version = envelope.occurred_at, envelope.aggregate_version
    if isinstance(event, ApiKeyIssued):
        batch.add(
            _ISSUE_KEY,
            {
                "key_id": event.key_id,
                "name": event.name,
                "secret_hash": event.secret_hash,
                "scopes": list(event.scopes),
                "channel": event.channel,
                "warehouses": list(event.warehouses) if event.warehouses is not None else None,
                "rate": event.rate_limit_per_second,
                "expires_at": event.expires_at,
                "at": at,
                "version": version,
            },
            ("access_api_keys", event.key_id),
        )
    elif isinstance(event, ApiKeyRevoked):
        batch.add(
            _REVOKE_KEY,
            {"key_id": event.key_id, "reason": event.reason, "at": at, "version": version},
            ("access_api_keys", event.key_id),
        )
    elif isinstance(event, RoleDefined | RoleRemoved):
        removed = isinstance(event, RoleRemoved)
        batch.add(
            _DEFINE_ROLE,
            {
                "role": event.role,
                "permissions": [] if removed else list(event.permissions),  # type: ignore[union-attr]
                "description": "" if removed else event.description,  # type: ignore[union-attr]
                "removed": removed,
                "at": at,
                "version": version,
            },
            ("access_roles", event.role),
        )


async def _on_access_event(uow: UnitOfWork, decoded: Decoded) -> None:
    if not isinstance(decoded.message, DomainEvent):
        return
    batch = WriteBatch()
    project_access(batch, decoded.envelope, decoded.message)
    await batch.flush(await uow.db())


def access_consumer(service: str, engine: AsyncEngine, settings: RuntimeSettings) -> EventConsumer:
    """The consumer that keeps `service`'s access tables in step with the access topic."""
    handler = _on_access_event
    return EventConsumer(
        f"{service}-access",
        [ACCESS_EVENTS],
        {ApiKeyIssued: handler, ApiKeyRevoked: handler, RoleDefined: handler, RoleRemoved: handler},
        engine,
        settings,
        actor=f"service:{service}",
        # Access changes are rare and a revocation may take a second anyway (the directory
        # cache): polling twice a second instead of twenty times keeps idle processes idle.
        poll_ms=500,
    )


# -- reading ----------------------------------------------------------------------------------


class AccessDirectory:
    """API keys and custom roles as this service knows them, cached briefly per process."""

    def __init__(self, engine: AsyncEngine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._keys: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        self._roles: tuple[float, dict[str, frozenset[str]]] | None = None
        self._lookups: dict[str, asyncio.Future[ApiKeyRecord | None]] = {}

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        # One lookup per key at a time: when an entry expires under load, the hundreds of
        # requests in flight with that key wait for the same query instead of each running it.
        pending = self._lookups.get(key_id)
        if pending is None:
            pending = self._lookups[key_id] = asyncio.ensure_future(self._look_up(key_id, now))
            pending.add_done_callback(lambda _: self._lookups.pop(key_id, None))
        return await asyncio.shield(pending)

    async def _look_up(self, key_id: str, now: float) -> ApiKeyRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT key_id, name, secret_hash, scopes, channel, warehouses,"
                        " rate_limit_per_second, expires_at, revoked_at IS NOT NULL AS revoked"
                        " FROM access_api_keys WHERE key_id = :key_id"
                    ),
                    {"key_id": key_id},
                )
            ).first()
        record = None
        if row is not None:
            rate = row.rate_limit_per_second
            record = ApiKeyRecord(
                row.key_id,
                row.name,
                row.secret_hash,
                frozenset(row.scopes),
                row.channel,
                frozenset(row.warehouses) if row.warehouses is not None else None,
                float(rate) if isinstance(rate, Decimal | float | int) else None,
                row.expires_at,
                row.revoked,
            )
        if len(self._keys) > 10_000:  # unknown ids must not grow the cache without bound
            self._keys.clear()
        self._keys[key_id] = (now, record)
        return record

    async def custom_roles(self) -> dict[str, frozenset[str]]:
        now = time.monotonic()
        if self._roles is not None and now - self._roles[0] < self.cache_seconds:
            return self._roles[1]
        async with self.engine.connect() as conn:
            rows = await conn.execute(text("SELECT role, permissions FROM access_roles WHERE NOT removed"))
            roles = {row.role: frozenset(row.permissions) for row in rows}
        self._roles = (now, roles)
        return roles
