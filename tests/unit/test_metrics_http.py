"""ordermesh_http_requests_total: every answer counted by its route template (never the raw
path) and status class, whatever answered it (an endpoint, a refusal, an unexpected error)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from libs.runtime.http import NO_ROUTE, AccessLogMiddleware
from libs.runtime.metrics import HTTP_REQUESTS


@pytest.fixture
def service() -> str:
    return f"test-{uuid4().hex[:8]}"  # a label value of its own: counts start at zero


@pytest.fixture
async def client(service: str) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def read(order_id: str) -> dict[str, str]:
        if order_id == "missing":
            raise HTTPException(404, "no such order")
        if order_id == "broken":
            raise RuntimeError("a bug")
        return {"order_id": order_id}

    app.add_middleware(AccessLogMiddleware, service=service)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def counted(service: str, method: str, route: str, status_class: str) -> float:
    value: float = HTTP_REQUESTS.labels(service, method, route, status_class)._value.get()
    return value


async def test_answers_are_counted_by_route_template_and_status_class(
    client: httpx.AsyncClient, service: str
) -> None:
    for order_id in ("o-1", "o-2", "missing", "broken"):
        await client.get(f"/orders/{order_id}")

    assert counted(service, "GET", "/orders/{order_id}", "2xx") == 2
    assert counted(service, "GET", "/orders/{order_id}", "4xx") == 1
    assert counted(service, "GET", "/orders/{order_id}", "5xx") == 1  # the unexpected error's 500
    assert counted(service, "GET", "/orders/o-1", "2xx") == 0  # never the raw path


async def test_unknown_paths_and_methods_share_one_series_each(
    client: httpx.AsyncClient, service: str
) -> None:
    for path in ("/a", "/b/c", "/d"):
        await client.get(path)
    await client.request("BREW", "/orders/o-1")
    await client.request("WHATEVER", "/orders/o-1")

    assert counted(service, "GET", NO_ROUTE, "4xx") == 3
    assert counted(service, "other", "/orders/{order_id}", "4xx") == 2  # 405
    assert counted(service, "BREW", "/orders/{order_id}", "4xx") == 0
