"""Verifying bearer tokens (JWT) against the keys the issuer publishes (JWKS).

Only asymmetric algorithms are accepted (RS256/ES256 by default), each with a key of its own
type, so a token cannot pick a weaker check ("alg": "none" or an HMAC keyed with a public key).
The key set is fetched once and refreshed every OM_AUTH_JWKS_REFRESH_SECONDS, and sooner when a
token names a key id it does not know (the issuer rotated its keys) -- but at most once per
UNKNOWN_KID_REFRESH_SECONDS, so forged key ids cannot make us hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from libs.security import dev_issuer
from libs.security.settings import DEV_ISSUER, AuthSettings

log = logging.getLogger(__name__)
UNKNOWN_KID_REFRESH_SECONDS = 10.0
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC", "RS384": "RSA", "ES384": "EC", "RS512": "RSA"}


class InvalidToken(Exception):
    """The token is not acceptable; the message says why, never the token itself."""


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    claims: dict[str, Any]


class KeySet:
    """The issuer's published keys by key id, from an http(s) URL or a file."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._last_forced = 0.0
        self._lock = asyncio.Lock()
        self._url: str | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        if not self._keys or now - self._loaded_at > self.settings.jwks_refresh_seconds:
            await self._refresh()
        found = self._find(kid)
        if found is None and time.monotonic() - self._last_forced > UNKNOWN_KID_REFRESH_SECONDS:
            self._last_forced = time.monotonic()
            await self._refresh()
            found = self._find(kid)
        if found is None:
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # Issuers with a single key may leave kid out.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                document = await self._fetch()
            except Exception as error:  # an unreachable issuer keeps the keys we have
                if not self._keys:
                    raise InvalidToken(
                        f"the issuer's keys cannot be fetched: {type(error).__name__}"
                    ) from error
                return
            keys: dict[str, jwt.PyJWK] = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
                except jwt.PyJWKError as error:  # a key type we do not use: skip it, say so
                    log.info("skipping the issuer's key %s: %s", entry.get("kid"), error)
            self._keys = keys
            self._loaded_at = time.monotonic()

    async def _fetch(self) -> dict[str, Any]:
        source = await self._source()
        if source.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(source)
                response.raise_for_status()
                document: dict[str, Any] = response.json()
                return document
        # A local file (the development issuer's): small, read off the event loop all the same.
        content = await asyncio.to_thread(Path(source.removeprefix("file://")).read_text)
        loaded: dict[str, Any] = json.loads(content)
        return loaded

    async def _source(self) -> str:
        if self.settings.jwks_url:
            return self.settings.jwks_url
        if self.settings.issuer == DEV_ISSUER:
            return str(dev_issuer.jwks_path())
        if self._url is None:
            discovery = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(discovery)
                response.raise_for_status()
                self._url = str(response.json()["jwks_uri"])
        return self._url


class TokenVerifier:
    """Verifies tokens, and remembers the ones it verified for a short while: a person's client
    sends the same token with every request, and verifying it costs ~0.9 ms (mostly PyJWT's
    base64 checks; the ES256 signature itself ~0.2 ms), remembering it ~1 us. A remembered
    token is trusted until its own expiry or VERIFIED_CACHE_SECONDS, whichever comes first, so
    an issuer's key withdrawn after a compromise stops being honoured within that time."""

    VERIFIED_CACHE_SECONDS = 60.0
    VERIFIED_CACHE_ENTRIES = 10_000

    def __init__(self, settings: AuthSettings, keys: KeySet | None = None) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings)
        self.algorithms = settings.allowed_algorithms()
        self._verified: OrderedDict[str, tuple[float, VerifiedToken]] = OrderedDict()

    async def verify(self, token: str) -> VerifiedToken:
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None:
            if now < remembered[0]:
                return remembered[1]
            del self._verified[token]
        verified = await self._verify(token)
        expires = float(verified.claims["exp"])
        self._verified[token] = (min(expires, now + self.VERIFIED_CACHE_SECONDS), verified)
        if len(self._verified) > self.VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("the token is not a well-formed JWT") from error
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")
        key = await self.keys.key(header.get("kid"))
        if _KEY_TYPES.get(str(algorithm)) != key.key_type:
            raise InvalidToken("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[str(algorithm)],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidToken("the token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise InvalidToken("the token is not valid yet") from error
        except jwt.InvalidAudienceError as error:
            raise InvalidToken("the token is for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise InvalidToken("the token is from another issuer") from error
        except jwt.InvalidSignatureError as error:
            raise InvalidToken("the token's signature does not verify") from error
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the token is invalid: {type(error).__name__}") from error
        return VerifiedToken(str(claims["sub"]), claims)

    def claim(self, claims: dict[str, Any], path: str) -> Any:
        value: Any = claims
        for part in path.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value
