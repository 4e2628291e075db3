"""How a verified token becomes a principal: roles to permissions, the warehouses claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from libs.runtime.access import AccessDirectory
from libs.runtime.auth import Authenticator, Unauthenticated
from libs.security import dev_issuer
from libs.security.settings import AuthSettings


class NoDirectory(AccessDirectory):
    def __init__(self) -> None:
        pass

    async def custom_roles(self) -> dict[str, frozenset[str]]:
        return {"returns-clerk": frozenset({"orders:read"})}


def request_with(token: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("10.0.0.7", 5000),
    }
    return Request(scope)


@pytest.fixture
def authenticator(tmp_path: Path) -> tuple[Authenticator, Path]:
    base = dev_issuer.ensure_keys(tmp_path)
    settings = AuthSettings(jwks_url=str(dev_issuer.jwks_path(base)))
    return Authenticator(settings, NoDirectory()), base


async def test_roles_grant_their_permissions_and_unknown_roles_grant_nothing(
    authenticator: tuple[Authenticator, Path],
) -> None:
    auth, base = authenticator
    token = dev_issuer.mint("rita", ["returns-clerk", "astronaut"], base=base)
    principal = await auth.authenticate(request_with(token))
    assert principal.permissions == {"orders:read"}
    assert (principal.actor, principal.source_address) == ("user:rita", "10.0.0.7")


@pytest.mark.parametrize(
    ("claim", "seen"),
    [(["NORTH", "SOUTH"], {"NORTH", "SOUTH"}), ("NORTH", {"NORTH"}), (None, None)],
)
async def test_the_warehouses_claim_limits_the_principal(
    authenticator: tuple[Authenticator, Path], claim: Any, seen: set[str] | None
) -> None:
    auth, base = authenticator
    extra = {"warehouses": claim} if claim is not None else {}
    token = dev_issuer.mint("wes", ["warehouse"], base=base, extra=extra)
    principal = await auth.authenticate(request_with(token))
    assert principal.warehouses == (frozenset(seen) if seen is not None else None)


async def test_a_warehouses_claim_of_another_shape_is_refused_not_read_as_every_warehouse(
    authenticator: tuple[Authenticator, Path],
) -> None:
    auth, base = authenticator
    token = dev_issuer.mint("wes", ["warehouse"], base=base, extra={"warehouses": {"NORTH": True}})
    with pytest.raises(Unauthenticated, match="not a list"):
        await auth.authenticate(request_with(token))
