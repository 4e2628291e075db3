"""Development credentials: `make token ROLE=... [WAREHOUSE=A,B] [SUBJECT=...]` prints a
token; `make up` writes one per built-in role, and a channel API key, under $OM_LOCAL_DIR/tokens.

    python -m tools.token order_desk
    python -m tools.token warehouse --warehouses NORTH,SOUTH --subject dev-alice --days 1

Signed by the development issuer under $OM_LOCAL_DIR/dev-issuer, which the local services
trust; a platform pointed at a real identity provider (OM_AUTH_ISSUER) refuses these.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from libs.security import api_keys, dev_issuer
from libs.security.permissions import BUILTIN_ROLES
from tools import apikeys

DAY = 24 * 3600
DEV_CHANNEL = "web"


def mint(role: str, subject: str | None = None, warehouses: list[str] | None = None, days: float = 30) -> str:
    return dev_issuer.mint(
        subject or f"dev-{role}", [role], warehouses=warehouses, lifetime_seconds=int(days * DAY)
    )


def tokens_directory() -> Path:
    return dev_issuer.directory().parent / "tokens"


@dataclass(frozen=True)
class DevCredentials:
    directory: Path
    channel_key_file: Path
    channel_key_id: str
    channel_key_reused: bool


def _write_secret(path: Path, value: str) -> None:
    """Readable by its owner only, from the moment it exists."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")


async def write_dev_credentials(order_url: str, directory: Path | None = None) -> DevCredentials:
    """<role>.jwt for every built-in role (30 days, subject dev-<role>) and channel-web.key,
    an API key for the web channel: the one already in the file while the platform still
    accepts it (so repeated `make up` do not pile up keys), else a new one."""
    directory = directory or tokens_directory()
    directory.mkdir(parents=True, exist_ok=True)
    for role in BUILTIN_ROLES:
        _write_secret(directory / f"{role}.jwt", mint(role))
    key_file = directory / f"channel-{DEV_CHANNEL}.key"
    reusable = await _still_valid(order_url, key_file)
    if reusable is not None:
        return DevCredentials(directory, key_file, reusable, True)
    issued = await apikeys.issue(order_url, f"development channel {DEV_CHANNEL}", channel=DEV_CHANNEL)
    _write_secret(key_file, issued["api_key"])
    await apikeys.wait_accepted(issued["api_key"], {"order": [order_url]})
    return DevCredentials(directory, key_file, issued["key_id"], False)


async def _still_valid(order_url: str, key_file: Path) -> str | None:
    """The id of the key in `key_file` if the platform knows it, for the channel, unrevoked
    and unexpired; else None."""
    presented = _read_key(key_file)
    parsed = api_keys.parse(presented) if presented else None
    if presented is None or parsed is None:
        return None
    record = await apikeys.get(order_url, parsed[0])
    if record is None or record["revoked_at"] or record["channel"] != DEV_CHANNEL:
        return None
    expires = record["expires_at"]
    if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        return None
    try:  # the record matches; the secret must too (a database rebuilt since, say)
        await apikeys.wait_accepted(presented, {"order": [order_url]}, timeout=10)
    except TimeoutError:
        return None
    return parsed[0]


def _read_key(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def usage(credentials: DevCredentials, order_url: str) -> str:
    directory = credentials.directory
    try:
        shown = directory.relative_to(Path.cwd())
    except ValueError:
        shown = directory
    key_note = "reused" if credentials.channel_key_reused else "new"
    return "\n".join(
        [
            f"\nDevelopment credentials in {shown}/ (a token per role, 30 days; the web channel's"
            f" API key {credentials.channel_key_id}, {key_note}):",
            f'  curl -H "Authorization: Bearer $(cat {shown}/order_desk.jwt)" {order_url}/orders',
            f'  curl -H "X-API-Key: $(cat {shown}/channel-{DEV_CHANNEL}.key)" {order_url}/orders',
            "  another token: make token ROLE=warehouse WAREHOUSE=NORTH [SUBJECT=dev-alice]",
            "  API keys: python -m tools.apikeys create|list|revoke (make apikey ARGS=...)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "role", help=f"a built-in role ({', '.join(BUILTIN_ROLES)}) or a custom one defined on the platform"
    )
    parser.add_argument("--subject", help="the token's subject (default: dev-<role>)")
    parser.add_argument(
        "--warehouses",
        type=lambda value: [code.strip() for code in value.split(",") if code.strip()],
        help="warehouse codes the bearer is limited to, comma-separated (default: every warehouse)",
    )
    parser.add_argument("--days", type=float, default=30, help="lifetime in days")
    args = parser.parse_args(argv)
    print(mint(args.role, args.subject, args.warehouses or None, args.days))


if __name__ == "__main__":
    main()
