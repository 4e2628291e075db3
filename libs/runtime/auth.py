"""Authentication and authorisation of HTTP requests, the same in every service.

Every endpoint declares the one permission it needs with `requires(...)`; `create_app` refuses
to build an app with an endpoint that declares none (only /health, /ready, /metrics and the
API docs are open), so a new endpoint cannot be born unprotected. The declarations are also
the permission table of docs/permissions.md and of the tests that call every endpoint
without credentials and with a role that lacks its permission.

Callers are people with a bearer token (JWT) from the OpenID Connect issuer, or machines with
an API key (`X-API-Key: om_...`, or as the bearer token). Refusals are problem+json: 401 with
WWW-Authenticate when there are no valid credentials, 403 naming the missing permission, 429
with Retry-After over the rate limit; each is logged (never the credential) and counted.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, _iter_routes_with_context
from prometheus_client import Counter

from libs.runtime.access import AccessDirectory
from libs.runtime.eventstore import AuditMetadata
from libs.runtime.uow import MessageContext
from libs.security import api_keys
from libs.security.permissions import BUILTIN_ROLES, PERMISSIONS
from libs.security.principal import Principal
from libs.security.settings import AuthSettings
from libs.security.tokens import InvalidToken, TokenVerifier

log = logging.getLogger("ordermesh.auth")

# Open without credentials: probes, metrics (bound to the internal network in deploy/k8s) and docs.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"})

AUTH_REFUSED = Counter(
    "ordermesh_auth_refused_total", "Requests refused by authentication or authorisation", ["reason"]
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class Unauthenticated(Exception):
    def __init__(self, detail: str, token_presented: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.token_presented = token_presented


class Forbidden(Exception):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class RateLimited(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"retry after {retry_after_seconds}s")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller (user subject or API key id) in this process: `rate` requests
    per second on average, bursts of twice that. Bounded: the least recently seen callers go."""

    def __init__(self, max_callers: int = 50_000) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_callers

    def take(self, caller: str, rate: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        burst = max(1.0, 2 * rate)
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(burst, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens < 1:
            raise RateLimited(max(1, int((1 - bucket.tokens) / rate + 0.999)))
        bucket.tokens -= 1


class Authenticator:
    def __init__(self, settings: AuthSettings, directory: AccessDirectory) -> None:
        self.settings = settings
        self.directory = directory
        self.verifier = TokenVerifier(settings)
        self.limiter = RateLimiter()

    async def authenticate(self, request: Request) -> Principal:
        request_id = _request_id(request)
        source = request.client.host if request.client else ""
        presented_key = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if presented_key is None and scheme.lower() == "bearer" and credential.startswith(api_keys.PREFIX):
            presented_key = credential.strip()
        if presented_key is not None:
            return await self._from_api_key(presented_key, request_id, source)
        if not authorization:
            raise Unauthenticated("credentials are required: a bearer token or an API key", False)
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'", True)
        try:
            verified = await self.verifier.verify(credential.strip())
        except InvalidToken as error:
            raise Unauthenticated(str(error), True) from error
        roles = self.verifier.claim(verified.claims, self.settings.roles_claim) or []
        roles = tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()
        custom = await self.directory.custom_roles() if any(r not in BUILTIN_ROLES for r in roles) else {}
        permissions: set[str] = set()
        for role in roles:
            permissions |= BUILTIN_ROLES.get(role) or custom.get(role) or frozenset()
        warehouses = self.verifier.claim(verified.claims, self.settings.warehouses_claim)
        if isinstance(warehouses, str):  # a single-valued identity provider mapper
            warehouses = [warehouses]
        elif warehouses is not None and not isinstance(warehouses, list):
            # Neither absent (every warehouse) nor a list of codes: never read it as "all".
            raise Unauthenticated(f"the token's {self.settings.warehouses_claim} claim is not a list", True)
        return Principal(
            subject=verified.subject,
            kind="user",
            roles=roles,
            permissions=frozenset(permissions),
            warehouses=frozenset(str(w) for w in warehouses) if isinstance(warehouses, list) else None,
            request_id=request_id,
            source_address=source,
        )

    async def _from_api_key(self, presented: str, request_id: str, source: str) -> Principal:
        parsed = api_keys.parse(presented.strip())
        if parsed is None:
            raise Unauthenticated("the API key is malformed", True)
        key_id, secret = parsed
        record = await self.directory.api_key(key_id)
        if record is None or not api_keys.matches(secret, record.secret_hash):
            raise Unauthenticated("the API key is not known", True)
        if record.revoked:
            raise Unauthenticated("the API key has been revoked", True)
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise Unauthenticated("the API key has expired", True)
        return Principal(
            subject=record.name,
            kind="api_key",
            roles=(),
            permissions=record.scopes,
            warehouses=record.warehouses,
            channel=record.channel,
            api_key_id=record.key_id,
            request_id=request_id,
            source_address=source,
            rate_limit_per_second=record.rate_limit_per_second,
        )

    def rate_limit(self, principal: Principal) -> None:
        if principal.kind == "api_key":
            rate = principal.rate_limit_per_second or self.settings.key_rate_limit_per_second
        else:
            rate = self.settings.user_rate_limit_per_second
        self.limiter.take(principal.actor, rate)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def refused(request: Request, reason: str, detail: str, principal: Principal | None = None) -> None:
    """Logs a refusal: who (never their credential), what, from where."""
    AUTH_REFUSED.labels(reason).inc()
    log.warning(
        "refused %s %s: %s (%s)",
        request.method,
        request.url.path,
        reason,
        detail,
        extra={
            "auth_refused": reason,
            "actor": principal.actor if principal else None,
            "source_address": request.client.host if request.client else None,
        },
    )


def requires(permission: str) -> Any:
    """A FastAPI dependency: the authenticated caller, who must hold `permission`.

    Use as `principal: Annotated[Principal, requires("orders:read")]`."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    # One dependency taking the request, no sub-dependencies: each dependency FastAPI solves
    # costs a traced call per request (measured on the order intake path); the OpenAPI
    # document learns of the credentials from document_security instead.
    async def authorised(request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        try:
            principal = await authenticator.authenticate(request)
        except Unauthenticated as error:
            refused(request, "unauthenticated", error.detail)
            raise
        if not principal.can(permission):
            refused(request, "forbidden", f"lacks {permission}", principal)
            raise Forbidden(f"this needs the permission {permission}", missing_permission=permission)
        try:
            authenticator.rate_limit(principal)
        except RateLimited:
            refused(request, "rate_limited", "over the rate limit", principal)
            raise
        request.state.principal = principal
        return principal

    authorised.permission = permission  # type: ignore[attr-defined]
    return Depends(authorised)


def route_permissions(app: FastAPI) -> Iterator[tuple[str, str, str | None]]:
    """(method, path, permission) of every endpoint; None where none is declared."""
    for path, methods, dependant in _endpoints(app):
        declared = [
            getattr(d.call, "permission", None)
            for d in _all_dependencies(dependant)
            if getattr(d.call, "permission", None)
        ]
        for method in sorted(methods):
            yield method, path, declared[0] if len(declared) == 1 else None


def _endpoints(app: FastAPI) -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, dependant) of every API route, included routers' too (FastAPI 0.16x keeps
    them behind lazy _IncludedRouter entries, resolved with their prefixes and dependencies)."""
    for route, context in _iter_routes_with_context(app.routes):
        if context is not None and isinstance(route, APIRoute):
            yield context.path, set(context.methods), context.dependant
        elif isinstance(route, APIRoute):
            yield route.path, set(route.methods or ()), route.dependant


def _all_dependencies(dependant: Any) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _all_dependencies(dependency)


def check_every_route_protected(app: FastAPI) -> None:
    unprotected = [
        f"{method} {path}"
        for method, path, permission in route_permissions(app)
        if permission is None and path not in PUBLIC_PATHS
    ]
    if unprotected:
        raise RuntimeError(
            "endpoints without exactly one required permission (use libs.runtime.auth.requires): "
            + ", ".join(unprotected)
        )


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from the OpenID Connect issuer (docs/security.md)",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A machine's API key, om_<key id>_<secret>",
    },
}


def document_security(app: FastAPI) -> None:
    """Declares both ways in (bearer token, API key) in the OpenAPI document, and on every
    protected operation its permission (`x-permission`), so /docs' Authorize button works and
    clients can read who may call what."""
    permissions = {(m.lower(), path): p for m, path, p in route_permissions(app) if p is not None}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                permission = permissions.get((method, path))
                if permission is not None:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    operation["x-permission"] = permission
                    operation["description"] = (
                        f"{operation.get('description', '')}\n\nPermission: `{permission}`"
                    ).strip()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def context_for(principal: Principal, correlation_id: str) -> MessageContext:
    """The message context of a command a caller issued: the events it causes carry the
    authenticated caller, whatever headers the request sent."""
    return MessageContext(
        correlation_id=correlation_id,
        actor=principal.actor,
        audit=AuditMetadata(
            subject=principal.subject,
            role=principal.role or None,
            api_key_id=principal.api_key_id,
            request_id=principal.request_id,
            source_address=principal.source_address,
        ),
    )
