"""What `make up` writes under $OM_LOCAL_DIR/tokens works on the real platform: a token per
built-in role that the services take for that role, and a web channel API key that submits for
"web" only and is reused by the next `make up` while it is valid."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import httpx
import jwt
import pytest

from libs.security.permissions import BUILTIN_ROLES
from tests.conftest import RUN_ID
from tests.integration.conftest import order_body, platform_settings, running_platform
from tools import apikeys, token

pytestmark = pytest.mark.integration


def _bearer(path: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {path.read_text().strip()}"}


async def test_make_up_credentials_act_as_their_roles_and_the_channel_key_submits_for_web_only(
    tmp_path: Path,
) -> None:
    settings = platform_settings(f"omcred_{RUN_ID}", f"cred{RUN_ID}.")
    async with running_platform("dev-credentials", settings, {}) as platform:
        order_url = platform.url("order")

        written = await token.write_dev_credentials(order_url, tmp_path)

        async with httpx.AsyncClient(base_url=order_url, timeout=30) as client:
            for role, permissions in BUILTIN_ROLES.items():
                claims = jwt.decode(
                    (tmp_path / f"{role}.jwt").read_text().strip(), options={"verify_signature": False}
                )
                assert (claims["sub"], claims["roles"]) == (f"dev-{role}", [role])
                assert claims["exp"] - claims["iat"] >= 29 * 24 * 3600
                # Accepted (never 401) and given exactly the role's permissions.
                response = await client.get("/orders", headers=_bearer(tmp_path / f"{role}.jwt"))
                assert response.status_code == (200 if "orders:read" in permissions else 403), (
                    role,
                    response.text,
                )

            channel_key = apikeys.key_headers((tmp_path / "channel-web.key").read_text().strip())
            for_web = await client.post(
                "/orders", json=order_body(f"SKU-{uuid4().hex[:8]}"), headers=channel_key
            )
            assert for_web.status_code == 202, for_web.text
            for_marketplace = await client.post(
                "/orders",
                json=order_body(f"SKU-{uuid4().hex[:8]}", channel="marketplace"),
                headers=channel_key,
            )
            assert for_marketplace.status_code == 403, for_marketplace.text
        assert (tmp_path / "channel-web.key").stat().st_mode & 0o077 == 0

        # The next `make up` keeps the key; once it is revoked, it issues a new one.
        again = await token.write_dev_credentials(order_url, tmp_path)
        assert (again.channel_key_id, again.channel_key_reused) == (written.channel_key_id, True)
        web_keys = [k for k in await apikeys.list_keys(order_url) if k["channel"] == "web"]
        assert [k["key_id"] for k in web_keys] == [written.channel_key_id]

        await apikeys.revoke(order_url, written.channel_key_id, "test: leaked")
        renewed = await token.write_dev_credentials(order_url, tmp_path)
        assert not renewed.channel_key_reused and renewed.channel_key_id != written.channel_key_id
        async with httpx.AsyncClient(base_url=order_url, timeout=30) as client:
            response = await client.post(
                "/orders",
                json=order_body(f"SKU-{uuid4().hex[:8]}"),
                headers=apikeys.key_headers((tmp_path / "channel-web.key").read_text().strip()),
            )
            assert response.status_code == 202, response.text
