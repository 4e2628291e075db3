"""Administering the access context: issuing and revoking API keys, defining custom roles."""

from __future__ import annotations

from libs.runtime.uow import UnitOfWork
from libs.security import api_keys
from services.order.domain import access


async def issue_key(uow: UnitOfWork, request: access.KeyRequest) -> api_keys.NewKey:
    new = api_keys.generate()
    state, version = await uow.load(access.API_KEY, new.key_id)
    await uow.record(
        access.API_KEY, new.key_id, version, access.decide_issue(state, new.key_id, new.secret_hash, request)
    )
    return new


async def revoke_key(uow: UnitOfWork, key_id: str, reason: str) -> None:
    state, version = await uow.load(access.API_KEY, key_id)
    await uow.record(access.API_KEY, key_id, version, access.decide_revoke(state, key_id, reason))


async def define_role(uow: UnitOfWork, role: str, permissions: tuple[str, ...], description: str) -> None:
    state, version = await uow.load(access.ROLE, role)
    await uow.record(access.ROLE, role, version, access.decide_define(state, role, permissions, description))


async def remove_role(uow: UnitOfWork, role: str) -> None:
    state, version = await uow.load(access.ROLE, role)
    await uow.record(access.ROLE, role, version, access.decide_remove(state, role))
