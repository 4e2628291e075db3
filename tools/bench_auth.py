"""What authenticating one request costs the server, per credential (part of `make bench`).

In process, with the services' own Authenticator against the order service's database of the
platform `make up` started: what every protected endpoint runs before its handler
(authenticate, the permission check, the caller's rate-limit bucket), in microseconds:

- a bearer token: ES256 signature and claims (the issuer's keys already loaded);
- an API key found in the process's directory cache (a hash and a compare);
- an API key looked up in the database (what a cache miss costs, once per key every
  OM_AUTH_DIRECTORY_CACHE_SECONDS per process).

Then over HTTP, sequentially on one connection: p50 of GET /saga (a protected endpoint with a
constant answer) with a token and with a key, beside GET /health (open, nothing to check).

    python -m tools.bench_auth [--iterations 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx
from starlette.requests import Request

from libs.runtime.access import AccessDirectory
from libs.runtime.auth import Authenticator
from libs.runtime.db import create_engine
from libs.runtime.settings import RuntimeSettings
from libs.security import dev_issuer
from libs.security.settings import AuthSettings
from tools import apikeys
from tools.infra import SERVICES

PERMISSION = "orders:read"
HTTP_REQUESTS = 300


def _request(headers: dict[str, str]) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/saga",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 40000),
            "query_string": b"",
        }
    )


async def _per_request_us(authenticator: Authenticator, request: Request, iterations: int) -> float:
    """Mean microseconds of what `requires(...)` runs per request. The bucket is taken at an
    unbounded rate: its arithmetic costs the same, and the loop must not be refused."""

    async def once() -> None:
        principal = await authenticator.authenticate(request)
        if not principal.can(PERMISSION):
            raise RuntimeError(f"the bench's credential lacks {PERMISSION}")
        authenticator.limiter.take(principal.actor, 1e12)

    for _ in range(20):  # the issuer's keys loaded, the key cached, the code warm
        await once()
    started = time.perf_counter()
    for _ in range(iterations):
        await once()
    return (time.perf_counter() - started) / iterations * 1e6


async def _p50_ms(client: httpx.AsyncClient, path: str, headers: list[dict[str, str]]) -> float:
    timings = []
    for n in range(HTTP_REQUESTS):
        started = time.perf_counter()
        response = await client.get(path, headers=headers[n % len(headers)])
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
    return round(statistics.median(timings), 3)


async def measure(settings: RuntimeSettings, order_url: str, iterations: int = 3000) -> dict[str, Any]:
    issued = await apikeys.issue(order_url, "bench: authentication cost", scopes=[PERMISSION])
    key_headers = apikeys.key_headers(issued["api_key"])
    engine = create_engine(settings, "order")
    try:
        await apikeys.wait_accepted(issued["api_key"], {"order": [order_url]})
        auth = AuthSettings()
        cached = Authenticator(auth, AccessDirectory(engine, auth.directory_cache_seconds))
        uncached = Authenticator(auth, AccessDirectory(engine, cache_seconds=0))
        token_headers = {"Authorization": f"Bearer {dev_issuer.mint('bench-auth', ['analyst'])}"}
        result: dict[str, Any] = {
            "jwt_us": round(await _per_request_us(cached, _request(token_headers), iterations), 1),
            "api_key_cached_us": round(await _per_request_us(cached, _request(key_headers), iterations), 1),
            "api_key_db_lookup_us": round(
                await _per_request_us(uncached, _request(key_headers), max(iterations // 10, 50)), 1
            ),
        }
        # A person may send 50 requests a second per replica: as many people as requests, so
        # the HTTP loop measures latency, not the rate limit.
        people = [
            {"Authorization": f"Bearer {dev_issuer.mint(f'bench-auth-{n}', ['analyst'])}"}
            for n in range(HTTP_REQUESTS)
        ]
        async with httpx.AsyncClient(base_url=order_url, timeout=10) as client:
            await _p50_ms(client, "/health", [{}])  # connection open, server warm
            result["http_p50_ms"] = {
                "open (/health)": await _p50_ms(client, "/health", [{}]),
                "jwt (/saga)": await _p50_ms(client, "/saga", people),
                "api_key (/saga)": await _p50_ms(client, "/saga", [key_headers]),
            }
        return result
    finally:
        await engine.dispose()
        await apikeys.revoke(order_url, issued["key_id"], "bench over")


def rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    http = result["http_p50_ms"]
    return [
        (
            "auth µs/request: JWT / key cached / key DB",
            f"{result['jwt_us']} / {result['api_key_cached_us']} / {result['api_key_db_lookup_us']}",
        ),
        (
            "GET p50 ms: open / JWT / API key",
            f"{http['open (/health)']} / {http['jwt (/saga)']} / {http['api_key (/saga)']}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--order-url", default=f"http://127.0.0.1:{SERVICES['order']}")
    args = parser.parse_args()
    result = asyncio.run(measure(RuntimeSettings(), args.order_url, args.iterations))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    width = max(len(name) for name, _ in rows(result))
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows(result)))


if __name__ == "__main__":
    main()
