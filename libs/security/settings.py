"""Authentication settings, read from OM_AUTH_* variables (README.md lists them)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

# The issuer name of the development issuer built into the project (libs/security/dev_issuer.py).
DEV_ISSUER = "ordermesh-dev"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_AUTH_", extra="ignore")

    # The OpenID Connect issuer whose tokens are accepted (its `iss`), e.g.
    # https://keycloak.example.com/realms/ordermesh. The default is the development issuer.
    issuer: str = DEV_ISSUER
    audience: str = "ordermesh"
    # Where the issuer publishes its keys: an http(s) URL or a file path. Empty: discovered from
    # <issuer>/.well-known/openid-configuration, or the development issuer's key file.
    jwks_url: str = ""
    jwks_refresh_seconds: float = 300
    # Clock skew tolerated on exp and nbf.
    leeway_seconds: float = 30
    algorithms: str = "RS256,ES256"
    # Where the roles are in the token: a dotted path (Keycloak: realm_access.roles).
    roles_claim: str = "roles"
    warehouses_claim: str = "warehouses"
    # How long a process trusts what it read about an API key or a custom role: a revocation
    # takes effect on every replica within this (plus the access topic's propagation, ms).
    directory_cache_seconds: float = 5
    # Requests per second per caller and replica (token bucket; the burst is twice the rate).
    user_rate_limit_per_second: float = 50
    key_rate_limit_per_second: float = 2000

    def allowed_algorithms(self) -> list[str]:
        return [a.strip() for a in self.algorithms.split(",") if a.strip()]
