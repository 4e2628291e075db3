"""Who may call what, on the real platform: every endpoint refuses a caller without
credentials (401) and a caller whose role lacks its permission (403); channel keys stay in
their channel; custom roles, revocation and the rate limit work as an operator expects.

The endpoint list comes from the apps themselves (the same declarations docs/permissions.md
is generated from), so a new endpoint is covered the moment it exists."""

from __future__ import annotations

import asyncio
import importlib
import re
from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.runtime.auth import PUBLIC_PATHS, route_permissions
from libs.security.dev_issuer import bearer, mint
from libs.security.permissions import BUILTIN_ROLES
from tests.integration.conftest import Oms, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration
SERVICES = ("order", "inventory", "billing")


def endpoints() -> list[tuple[str, str, str, str]]:
    """(service, method, path, permission) of every protected endpoint of the running services."""
    found = []
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.bootstrap").build_app()
        for method, path, permission in route_permissions(app):
            if path not in PUBLIC_PATHS:
                assert permission is not None, f"{method} {path} declares no permission"
                found.append((service, method, path, permission))
    return found


def role_lacking(permission: str) -> str | None:
    return next((role for role, granted in BUILTIN_ROLES.items() if permission not in granted), None)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "does-not-exist", path)


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await client.request(method, concrete(path), json={} if method != "GET" else None, **kwargs)


async def test_every_endpoint_refuses_no_credentials_and_a_role_without_its_permission(
    platform: Platform,
) -> None:
    table = endpoints()
    assert len(table) > 40  # the whole API, not an empty list that passes by itself
    clients = {s: httpx.AsyncClient(base_url=platform.url(s), timeout=30) for s in SERVICES}
    try:
        for service, method, path, permission in table:
            anonymous = await call(clients[service], method, path)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert anonymous.headers["content-type"].startswith("application/problem+json")

            role = role_lacking(permission)
            if role is None:
                continue
            refused = await call(clients[service], method, path, headers=bearer(role))
            assert refused.status_code == 403, (method, path, role, refused.text)
            assert refused.json()["missing_permission"] == permission
    finally:
        for client in clients.values():
            await client.aclose()


async def test_a_forged_expired_or_foreign_token_is_refused_and_health_stays_open(
    platform: Platform,
) -> None:
    async with httpx.AsyncClient(base_url=platform.url("order"), timeout=30) as order:
        for token, why in (
            (mint("mallory", ["admin"], lifetime_seconds=-3600), "expired"),
            (mint("mallory", ["admin"], audience="another-app"), "another audience"),
            (mint("mallory", ["admin"])[:-4] + "AAAA", "signature"),
        ):
            response = await order.get("/orders", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, why
            assert why in response.json()["detail"]
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
        for open_path in ("/health", "/ready", "/metrics"):
            assert (await order.get(open_path)).status_code == 200


async def issue_key(oms: Oms, **body: Any) -> dict[str, Any]:
    response = await oms.order.post("/admin/api-keys", json={"name": f"test-{uuid4().hex[:6]}", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_channel_key_submits_and_reads_only_its_own_channel(oms: Oms, sku: str) -> None:
    await oms.receive(sku, 5)
    web = await issue_key(oms, channel="web")
    assert "secret_hash" not in web and web["scopes"] == ["orders:read", "orders:submit"]
    as_web = {"X-API-Key": web["api_key"]}

    submitted = await oms.order.post("/orders", json=order_body(sku, channel="web"), headers=as_web)
    assert submitted.status_code == 202, submitted.text
    for_another_channel = await oms.order.post(
        "/orders", json=order_body(sku, channel="marketplace"), headers=as_web
    )
    assert for_another_channel.status_code == 403
    assert for_another_channel.json()["field"] == "channel"

    other_order = await oms.place(order_body(sku, channel="phone"))
    assert (await oms.order.get(f"/orders/{other_order}", headers=as_web)).status_code == 404
    own = await oms.order.get(f"/orders/{submitted.json()['order_id']}", headers=as_web)
    assert own.status_code == 200
    listed = await oms.order.get("/orders", params={"limit": 500}, headers=as_web)
    assert {o["channel"] for o in listed.json()["items"]} == {"web"}
    # Its scopes are orders:submit and orders:read only.
    approve = await oms.order.post(f"/orders/{other_order}/approve", headers=as_web)
    assert approve.status_code == 403


async def test_a_revoked_key_is_refused_by_every_service(oms: Oms) -> None:
    gateway = await issue_key(oms, scopes=["payments:record", "billing:read"])
    as_gateway = {"X-API-Key": gateway["api_key"]}

    async def billing_answers() -> int:
        return (await oms.billing.get("/invoices", params={"order_id": "x"}, headers=as_gateway)).status_code

    # Billing learns of the key from the access topic.
    await eventually_value(billing_answers, lambda status: status == 200, timeout=30)

    revoked = await oms.order.post(f"/admin/api-keys/{gateway['key_id']}/revoke", json={"reason": "leaked"})
    assert revoked.status_code == 200 and revoked.json()["revoked_reason"] == "leaked"
    await eventually_value(billing_answers, lambda status: status == 401, timeout=30)
    listed = (await oms.order.get("/admin/api-keys")).json()["items"]
    assert next(k for k in listed if k["key_id"] == gateway["key_id"])["revoked_at"] is not None


async def test_a_custom_role_grants_exactly_its_permissions(oms: Oms, sku: str) -> None:
    role = f"returns-{uuid4().hex[:6]}"
    defined = await oms.order.put(f"/admin/roles/{role}", json={"permissions": ["orders:read"]})
    assert defined.status_code == 200, defined.text
    clerk = {"Authorization": f"Bearer {mint('rita', [role])}"}
    order_id = await oms.place(order_body(sku, shipping={"method": "standard", "address": {}}))

    async def reads() -> int:
        return (await oms.order.get(f"/orders/{order_id}", headers=clerk)).status_code

    await eventually_value(reads, lambda status: status == 200, timeout=30)
    assert (await oms.order.post(f"/orders/{order_id}/approve", headers=clerk)).status_code == 403

    unknown = await oms.order.put(f"/admin/roles/{role}", json={"permissions": ["orders:fly"]})
    assert unknown.status_code == 422 and "orders:fly" in unknown.text
    builtin = await oms.order.put("/admin/roles/admin", json={"permissions": ["orders:read"]})
    assert builtin.status_code == 409


async def test_an_analyst_reads_orders_without_contact_data(oms: Oms, sku: str) -> None:
    email = f"{uuid4().hex[:8]}@example.com"
    order_id = await oms.place(
        order_body(sku, customer={"name": "Grace Hopper", "email": email, "region": "north"})
    )
    async with httpx.AsyncClient(
        base_url=oms.platform.url("order"), timeout=30, headers=bearer("analyst")
    ) as analyst:
        seen = (await analyst.get(f"/orders/{order_id}")).text
    assert "Grace Hopper" not in seen and email not in seen
    assert "Grace Hopper" in (await oms.order.get(f"/orders/{order_id}")).text  # the admin sees it


async def test_over_the_rate_limit_answers_429_with_retry_after(oms: Oms) -> None:
    slow = await issue_key(oms, scopes=["orders:read"], rate_limit_per_second="1")
    headers = {"X-API-Key": slow["api_key"]}
    answers = await asyncio.gather(*(oms.order.get("/orders", headers=headers) for _ in range(6)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) >= 3, statuses  # a burst of 2 passes, the rest wait
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"].startswith("application/problem+json")
