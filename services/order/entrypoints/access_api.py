"""Access administration (permission access:admin): API keys for machines, custom roles.

Recorded here as events on the access topic; every service projects them and authenticates
callers from its own copy within a second or so (libs/runtime/access.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from libs.domain import NotFound
from libs.events.values import Channel, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.security.permissions import BUILTIN_ROLES, PERMISSIONS
from libs.security.principal import Principal
from services.order.app import access as handlers
from services.order.domain.access import KeyRequest
from services.order.entrypoints.views import (
    ApiKeyList,
    ApiKeyView,
    IssuedApiKey,
    PermissionList,
    RoleList,
    RoleRemoved,
    RoleView,
)

router = APIRouter(prefix="/admin", tags=["access"])
Admin = Annotated[Principal, requires("access:admin")]
PermissionName = Annotated[str, Field(min_length=1, max_length=60)]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="Who uses the key, e.g. 'web shop'")
    scopes: list[PermissionName] | None = Field(
        default=None,
        max_length=len(PERMISSIONS),
        description="Permissions; default: orders:submit and orders:read for a channel key, else the"
        " integration role's",
    )
    channel: Channel | None = Field(default=None, description="The sales channel the key submits for")
    warehouses: list[WarehouseCode] | None = Field(default=None, max_length=200)
    rate_limit_per_second: Annotated[Decimal, Field(gt=0, le=100_000, allow_inf_nan=False)] | None = None
    expires_at: datetime | None = None


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[PermissionName] = Field(min_length=1, max_length=len(PERMISSIONS))
    description: str = Field(default="", max_length=500)


_KEY_COLUMNS = (
    "key_id, name, scopes, channel, warehouses, rate_limit_per_second, expires_at, issued_at,"
    " revoked_at, revoked_reason"
)


def _key_view(row: Any) -> dict[str, Any]:
    return {
        "key_id": row.key_id,
        "name": row.name,
        "scopes": list(row.scopes),
        "channel": row.channel,
        "warehouses": list(row.warehouses) if row.warehouses is not None else None,
        "rate_limit_per_second": str(row.rate_limit_per_second) if row.rate_limit_per_second else None,
        "expires_at": row.expires_at,
        "issued_at": row.issued_at,
        "revoked_at": row.revoked_at,
        "revoked_reason": row.revoked_reason,
    }


async def _key(request: Request, key_id: str) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_KEY_COLUMNS} FROM access_api_keys WHERE key_id = :key_id"),  # noqa: S608 - constant columns
                {"key_id": key_id},
            )
        ).first()
    if row is None:
        raise NotFound("unknown_api_key", f"API key {key_id} does not exist")
    return _key_view(row)


@router.post("/api-keys", status_code=201, response_model=IssuedApiKey, responses=problems(409))
async def issue_api_key(body: ApiKeyIn, request: Request, principal: Admin) -> dict[str, Any]:
    """Issues a key. The answer's `api_key` is the only time the key is shown: store it now."""
    key_request = KeyRequest(
        body.name,
        tuple(body.scopes) if body.scopes is not None else None,
        body.channel,
        tuple(body.warehouses) if body.warehouses is not None else None,
        body.rate_limit_per_second,
        body.expires_at,
    )
    new = await runtime_of(request).execute(
        context_for(principal, f"api-key:{body.name}"), lambda uow: handlers.issue_key(uow, key_request)
    )
    return {**await _key(request, new.key_id), "api_key": new.plaintext}


@router.get("/api-keys", response_model=ApiKeyList)
async def list_api_keys(request: Request, _: Admin) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT {_KEY_COLUMNS} FROM access_api_keys ORDER BY issued_at, key_id")  # noqa: S608 - constant columns
        )
        return {"items": [_key_view(row) for row in rows]}


@router.get("/api-keys/{key_id}", response_model=ApiKeyView, responses=problems(404))
async def get_api_key(key_id: str, request: Request, _: Admin) -> dict[str, Any]:
    return await _key(request, key_id)


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyView, responses=problems(404, 409))
async def revoke_api_key(key_id: str, body: RevokeIn, request: Request, principal: Admin) -> dict[str, Any]:
    """Revokes a key: every service refuses it within OM_AUTH_DIRECTORY_CACHE_SECONDS."""
    await runtime_of(request).execute(
        context_for(principal, f"api-key:{key_id}"),
        lambda uow: handlers.revoke_key(uow, key_id, body.reason),
    )
    return await _key(request, key_id)


@router.get("/permissions", response_model=PermissionList)
async def list_permissions(_: Admin) -> dict[str, Any]:
    return {"permissions": [{"name": name, "description": text} for name, text in PERMISSIONS.items()]}


@router.get("/roles", response_model=RoleList)
async def list_roles(request: Request, _: Admin) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT role, permissions, description FROM access_roles WHERE NOT removed ORDER BY role")
        )
        custom = [
            {
                "role": r.role,
                "permissions": list(r.permissions),
                "description": r.description,
                "builtin": False,
            }
            for r in rows
        ]
    builtin = [
        {"role": role, "permissions": sorted(permissions), "description": "", "builtin": True}
        for role, permissions in BUILTIN_ROLES.items()
    ]
    return {"items": builtin + custom}


@router.put("/roles/{role}", response_model=RoleView, responses=problems(409))
async def define_role(role: str, body: RoleIn, request: Request, principal: Admin) -> dict[str, Any]:
    """Defines a custom role from the permission catalogue (or redefines it); a token whose
    roles claim names it gets its permissions."""
    await runtime_of(request).execute(
        context_for(principal, f"role:{role}"),
        lambda uow: handlers.define_role(uow, role, tuple(body.permissions), body.description),
    )
    return {"role": role, "permissions": sorted(set(body.permissions)), "description": body.description}


@router.delete("/roles/{role}", response_model=RoleRemoved, responses=problems(404, 409))
async def remove_role(role: str, request: Request, principal: Admin) -> dict[str, Any]:
    await runtime_of(request).execute(
        context_for(principal, f"role:{role}"), lambda uow: handlers.remove_role(uow, role)
    )
    return {"role": role, "removed": True}
