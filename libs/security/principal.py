"""The authenticated caller of one request, as every permission check and audit record sees it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Principal:
    subject: str
    kind: Literal["user", "api_key"]
    roles: tuple[str, ...]
    permissions: frozenset[str]
    # None: every warehouse; otherwise only these (warehouse staff scoped by their token).
    warehouses: frozenset[str] | None = None
    # A channel's API key may submit and read only this channel's orders.
    channel: str | None = None
    api_key_id: str | None = None
    request_id: str = ""
    source_address: str = ""
    # An API key's own rate limit (requests per second), where it has one.
    rate_limit_per_second: float | None = None

    @property
    def actor(self) -> str:
        """The actor string events carry: user:<subject> or key:<api key id>."""
        return f"key:{self.api_key_id}" if self.kind == "api_key" else f"user:{self.subject}"

    @property
    def role(self) -> str:
        return ",".join(self.roles)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_warehouse(self, code: str) -> bool:
        return self.warehouses is None or code in self.warehouses

    def visible_warehouses(self, codes: Iterable[str]) -> list[str]:
        return [code for code in codes if self.sees_warehouse(code)]

    def sees_channel(self, channel: str) -> bool:
        return self.channel is None or self.channel == channel
