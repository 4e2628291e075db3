"""The development issuer: an EC P-256 key pair under $OM_LOCAL_DIR/dev-issuer that signs
ES256 tokens, and the JWKS file the services verify them with (their default key source).

Nothing external is needed to run the platform locally; production points OM_AUTH_ISSUER at a
real identity provider (docs/identity-provider.md) and this key is never used.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from libs.security.settings import DEV_ISSUER

REPO_ROOT = Path(__file__).resolve().parents[2]


def directory() -> Path:
    return Path(os.environ.get("OM_LOCAL_DIR", REPO_ROOT / ".local")).resolve() / "dev-issuer"


def jwks_path(base: Path | None = None) -> Path:
    return (base or directory()) / "jwks.json"


def ensure_keys(base: Path | None = None) -> Path:
    """Create the key pair and its JWKS once; later calls keep them (tokens stay valid)."""
    base = base or directory()
    private = base / "signing-key.pem"
    if not private.exists():
        base.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        private.write_bytes(pem)
        private.chmod(0o600)
        public_jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        public_jwk.update({"kid": f"dev-{uuid.uuid4().hex[:8]}", "alg": "ES256", "use": "sig"})
        jwks_path(base).write_text(json.dumps({"keys": [public_jwk]}, indent=2))
    return base


def mint(
    subject: str,
    roles: Iterable[str],
    *,
    warehouses: Iterable[str] | None = None,
    audience: str = "ordermesh",
    issuer: str = DEV_ISSUER,
    lifetime_seconds: int = 8 * 3600,
    not_before: float | None = None,
    base: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    base = ensure_keys(base)
    key = serialization.load_pem_private_key((base / "signing-key.pem").read_bytes(), password=None)
    kid = json.loads(jwks_path(base).read_text())["keys"][0]["kid"]
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": int(not_before) if not_before is not None else now,
        "exp": now + lifetime_seconds,
        "roles": sorted(roles),
        **(extra or {}),
    }
    if warehouses is not None:
        claims["warehouses"] = sorted(warehouses)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]


def bearer(role: str, subject: str | None = None, warehouses: Iterable[str] | None = None) -> dict[str, str]:
    """Authorization headers with a development token of `role` (tests and local tools)."""
    token = mint(subject or f"dev-{role}", [role], warehouses=warehouses)
    return {"Authorization": f"Bearer {token}"}
