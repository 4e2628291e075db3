"""Bearer tokens: only a token the issuer signed, for us, in its validity window, is accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from libs.runtime.auth import RateLimited, RateLimiter
from libs.security import api_keys, dev_issuer
from libs.security.settings import AuthSettings
from libs.security.tokens import InvalidToken, TokenVerifier


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.fixture
def issuer_dir(tmp_path: Path) -> Path:
    return dev_issuer.ensure_keys(tmp_path / "issuer")


@pytest.fixture
def verifier(issuer_dir: Path) -> TokenVerifier:
    return TokenVerifier(AuthSettings(jwks_url=str(dev_issuer.jwks_path(issuer_dir)), leeway_seconds=5))


async def test_a_token_the_issuer_signed_is_accepted_with_its_subject_and_roles(
    verifier: TokenVerifier, issuer_dir: Path
) -> None:
    token = dev_issuer.mint("olga", ["order_desk"], warehouses=["NORTH"], base=issuer_dir)
    verified = await verifier.verify(token)
    assert verified.subject == "olga"
    assert verified.claims["roles"] == ["order_desk"]
    assert verified.claims["warehouses"] == ["NORTH"]


async def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier, tmp_path: Path) -> None:
    other = dev_issuer.ensure_keys(tmp_path / "forger")
    forged = dev_issuer.mint("mallory", ["admin"], base=other)
    with pytest.raises(InvalidToken, match="key the issuer does not publish"):
        await verifier.verify(forged)


async def test_a_token_with_a_forged_kid_but_another_signature_is_refused(
    verifier: TokenVerifier, issuer_dir: Path, tmp_path: Path
) -> None:
    genuine_kid = json.loads(dev_issuer.jwks_path(issuer_dir).read_text())["keys"][0]["kid"]
    other = dev_issuer.ensure_keys(tmp_path / "forger")
    key = (other / "signing-key.pem").read_bytes()
    now = int(time.time())
    claims = {
        "iss": "ordermesh-dev",
        "aud": "ordermesh",
        "sub": "mallory",
        "exp": now + 60,
        "roles": ["admin"],
    }
    forged = jwt.encode(claims, key, algorithm="ES256", headers={"kid": genuine_kid})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        await verifier.verify(forged)


async def test_an_expired_token_is_refused_beyond_the_leeway(
    verifier: TokenVerifier, issuer_dir: Path
) -> None:
    expired = dev_issuer.mint("olga", ["order_desk"], lifetime_seconds=-60, base=issuer_dir)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(expired)
    # A clock a little behind the issuer's is tolerated (leeway 5 s).
    just_expired = dev_issuer.mint("olga", ["order_desk"], lifetime_seconds=-2, base=issuer_dir)
    assert (await verifier.verify(just_expired)).subject == "olga"


async def test_a_token_not_valid_yet_is_refused(verifier: TokenVerifier, issuer_dir: Path) -> None:
    early = dev_issuer.mint("olga", ["order_desk"], not_before=time.time() + 600, base=issuer_dir)
    with pytest.raises(InvalidToken, match="not valid yet"):
        await verifier.verify(early)


async def test_a_token_for_another_audience_or_issuer_is_refused(
    verifier: TokenVerifier, issuer_dir: Path
) -> None:
    with pytest.raises(InvalidToken, match="another audience"):
        await verifier.verify(dev_issuer.mint("olga", ["admin"], audience="other-app", base=issuer_dir))
    with pytest.raises(InvalidToken, match="another issuer"):
        await verifier.verify(
            dev_issuer.mint("olga", ["admin"], issuer="https://evil.example", base=issuer_dir)
        )


async def test_unsigned_and_symmetric_tokens_are_refused(verifier: TokenVerifier, issuer_dir: Path) -> None:
    claims = {"iss": "ordermesh-dev", "aud": "ordermesh", "sub": "mallory", "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidToken, match="'none' are not accepted"):
        await verifier.verify(unsigned)
    # The classic confusion: an HMAC keyed with the issuer's public key.
    # (built by hand: PyJWT itself refuses to HMAC with something that looks like a key)
    public = dev_issuer.jwks_path(issuer_dir).read_bytes()
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{_b64(json.dumps(claims))}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    hmac_token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="'HS256' are not accepted"):
        await verifier.verify(hmac_token)
    with pytest.raises(InvalidToken, match="well-formed"):
        await verifier.verify("not.a.jwt")


@pytest.fixture
async def oidc_issuer() -> AsyncIterator[tuple[str, dict[str, object], rsa.RSAPrivateKey]]:
    """A minimal OpenID Connect issuer over HTTP: discovery document and JWKS (RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks: dict[str, object] = {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}
    app = web.Application()
    runner = web.AppRunner(app)

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"issuer": issuer, "jwks_uri": f"{issuer}/certs"})

    async def certs(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app.router.add_get("/realms/om/.well-known/openid-configuration", discovery)
    app.router.add_get("/realms/om/certs", certs)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    issuer = f"http://127.0.0.1:{port}/realms/om"
    try:
        yield issuer, jwks, key
    finally:
        await runner.cleanup()


async def test_keys_are_discovered_from_the_issuer_and_a_rotated_key_is_fetched(
    oidc_issuer: tuple[str, dict[str, object], rsa.RSAPrivateKey],
) -> None:
    issuer, jwks, key = oidc_issuer
    verifier = TokenVerifier(AuthSettings(issuer=issuer, audience="ordermesh"))
    now = int(time.time())
    claims = {"iss": issuer, "aud": "ordermesh", "sub": "kc-user", "exp": now + 60}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    assert (await verifier.verify(token)).subject == "kc-user"

    # The issuer rotates to a new key: a token naming it makes the verifier fetch the keys again.
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new_key.public_key()))
    jwks["keys"] = [{**new_jwk, "kid": "k2", "alg": "RS256", "use": "sig"}]
    rotated = jwt.encode(claims, new_key, algorithm="RS256", headers={"kid": "k2"})
    assert (await verifier.verify(rotated)).subject == "kc-user"


def test_api_keys_are_stored_as_hashes_and_verified_by_their_secret() -> None:
    new = api_keys.generate()
    assert new.secret_hash not in new.plaintext
    parsed = api_keys.parse(new.plaintext)
    assert parsed is not None and parsed[0] == new.key_id
    assert api_keys.matches(parsed[1], new.secret_hash)
    assert not api_keys.matches(parsed[1][:-1] + "x", new.secret_hash)
    assert api_keys.parse("om_123_short") is None


def test_the_rate_limiter_allows_a_burst_then_refuses_with_the_time_to_wait() -> None:
    limiter = RateLimiter()
    for _ in range(4):  # burst: twice the rate
        limiter.take("key:a", rate=2, now=100.0)
    with pytest.raises(RateLimited) as refused:
        limiter.take("key:a", rate=2, now=100.0)
    assert refused.value.retry_after_seconds == 1
    limiter.take("key:b", rate=2, now=100.0)  # another caller has its own bucket
    limiter.take("key:a", rate=2, now=100.6)  # refilled one token after half a second


async def test_a_verified_token_is_remembered_until_its_expiry_at_most(
    verifier: TokenVerifier, issuer_dir: Path
) -> None:
    checks = 0
    verify_for_real = verifier._verify

    async def counting(token: str) -> Any:
        nonlocal checks
        checks += 1
        return await verify_for_real(token)

    verifier._verify = counting  # type: ignore[method-assign]
    short = dev_issuer.mint("olga", ["order_desk"], lifetime_seconds=20, base=issuer_dir)
    long = dev_issuer.mint("olga", ["order_desk"], lifetime_seconds=3600, base=issuer_dir)
    for _ in range(3):
        await verifier.verify(short)
        await verifier.verify(long)
    assert checks == 2  # each verified once, then remembered
    exp_short = jwt.decode(short, options={"verify_signature": False})["exp"]
    assert verifier._verified[short][0] == exp_short  # never trusted past its own expiry
    assert verifier._verified[long][0] <= time.time() + TokenVerifier.VERIFIED_CACHE_SECONDS

    # Once the remembered time is over, the token is checked again (and refused if expired).
    verifier._verified[short] = (time.time() - 1, verifier._verified[short][1])
    await verifier.verify(short)
    assert checks == 3
