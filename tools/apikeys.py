"""API keys for machines, issued through the order service's admin endpoint (access:admin).

    python -m tools.apikeys create --name "web shop" [--channel web] [--scopes a,b]
                                   [--warehouses A,B] [--rate 100]
    python -m tools.apikeys list
    python -m tools.apikeys revoke KEY_ID --reason "leaked in a log"

The calls carry $OM_ADMIN_TOKEN, or else a short-lived admin token minted by the local
development issuer. The key itself is printed once, by `create`: store it then.

The helpers below are what the other tools (make up, the load generator, the bench) use to
act as the operator: issue a key, then wait until the services that will see it know it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import httpx

from libs.security import dev_issuer
from tools.infra import SERVICES

# A protected GET per service that costs next to nothing. A key the service does not know yet
# answers 401 there; any other answer (200, 403 for a key without that permission, 404) means
# the service knows the key.
PROBES = {
    "order": "/saga",
    "inventory": "/warehouses",
    "billing": "/invoices/probe",
}
ACCEPTED_WITHIN_SECONDS = 30.0


def order_url() -> str:
    """The order service `make up` started (its port from the same settings)."""
    return f"http://127.0.0.1:{SERVICES['order']}"


def admin_headers(lifetime_seconds: int = 3600) -> dict[str, str]:
    """The operator's credentials: $OM_ADMIN_TOKEN, else a development admin token."""
    token = os.environ.get("OM_ADMIN_TOKEN") or dev_issuer.mint(
        "dev-admin", ["admin"], lifetime_seconds=lifetime_seconds
    )
    return {"Authorization": f"Bearer {token}"}


def key_headers(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


class AdminError(RuntimeError):
    """The admin endpoint refused or failed; the message carries its answer."""


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise AdminError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response.json()


async def issue(
    base_url: str,
    name: str,
    *,
    channel: str | None = None,
    scopes: Iterable[str] | None = None,
    warehouses: Iterable[str] | None = None,
    rate_limit_per_second: float | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Issues a key; the answer's `api_key` is the key (shown this once), `key_id` its id."""
    body: dict[str, Any] = {"name": name}
    if channel is not None:
        body["channel"] = channel
    if scopes is not None:
        body["scopes"] = list(scopes)
    if warehouses is not None:
        body["warehouses"] = list(warehouses)
    if rate_limit_per_second is not None:
        body["rate_limit_per_second"] = str(rate_limit_per_second)
    async with httpx.AsyncClient(base_url=base_url, headers=headers or admin_headers(), timeout=30) as client:
        issued: dict[str, Any] = _answer(await client.post("/admin/api-keys", json=body))
        return issued


async def get(base_url: str, key_id: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The key's record (never the key), or None if there is no such key."""
    async with httpx.AsyncClient(base_url=base_url, headers=headers or admin_headers(), timeout=30) as client:
        response = await client.get(f"/admin/api-keys/{key_id}")
        if response.status_code == 404:
            return None
        found: dict[str, Any] = _answer(response)
        return found


async def list_keys(base_url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers or admin_headers(), timeout=30) as client:
        items: list[dict[str, Any]] = _answer(await client.get("/admin/api-keys"))["items"]
        return items


async def revoke(
    base_url: str, key_id: str, reason: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers or admin_headers(), timeout=30) as client:
        revoked: dict[str, Any] = _answer(
            await client.post(f"/admin/api-keys/{key_id}/revoke", json={"reason": reason})
        )
        return revoked


async def wait_accepted(
    api_key: str, services: dict[str, list[str]], timeout: float = ACCEPTED_WITHIN_SECONDS
) -> None:
    """Until every replica (base URL) of each service named knows the key: a freshly issued
    key reaches the other services through the access topic, and a replica that was asked
    just before keeps its "unknown" answer for OM_AUTH_DIRECTORY_CACHE_SECONDS."""
    waiting = [(service, url) for service, urls in services.items() for url in urls]
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=key_headers(api_key), timeout=5) as client:
        while waiting:
            still = []
            for service, url in waiting:
                try:
                    status = (await client.get(url + PROBES[service])).status_code
                except httpx.HTTPError:
                    status = 0
                if status in (0, 401) or status >= 500:
                    still.append((service, url))
            waiting = still
            if not waiting:
                return
            if time.monotonic() > deadline:
                where = ", ".join(url for _, url in waiting)
                raise TimeoutError(f"API key not accepted within {timeout:.0f}s by {where}")
            await asyncio.sleep(0.2)


# --- the command line ---------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


async def _main(args: argparse.Namespace) -> int:
    if args.command == "create":
        issued = await issue(
            args.url,
            args.name,
            channel=args.channel,
            scopes=args.scopes,
            warehouses=args.warehouses,
            rate_limit_per_second=args.rate,
        )
        key = issued.pop("api_key")
        print(json.dumps(issued, indent=2, default=str))
        print(f"\nAPI key (shown this once; store it now):\n{key}")
    elif args.command == "list":
        for item in await list_keys(args.url):
            state = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
            channel = f" channel={item['channel']}" if item["channel"] else ""
            print(f"{item['key_id']}  {item['name']!r}{channel}  scopes={','.join(item['scopes'])}  {state}")
    else:
        print(json.dumps(await revoke(args.url, args.key_id, args.reason), indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.apikeys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=None, help="the order service (default: the `make up` port)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a key and print it (once)")
    create.add_argument("--name", required=True, help="who uses it, e.g. 'web shop'")
    create.add_argument("--channel", help="the sales channel it submits for")
    create.add_argument("--scopes", type=_csv, help="permissions, comma-separated (default: by kind)")
    create.add_argument("--warehouses", type=_csv, help="warehouse codes it may act on")
    create.add_argument("--rate", type=float, help="requests per second per replica (default 2000)")
    commands.add_parser("list", help="every key, active and revoked (never the keys themselves)")
    revoke_command = commands.add_parser("revoke", help="revoke a key on every service")
    revoke_command.add_argument("key_id")
    revoke_command.add_argument("--reason", required=True)
    args = parser.parse_args(argv)
    args.url = args.url or order_url()
    try:
        raise SystemExit(asyncio.run(_main(args)))
    except (AdminError, httpx.HTTPError) as error:
        print(f"apikeys: {error}", file=sys.stderr)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
