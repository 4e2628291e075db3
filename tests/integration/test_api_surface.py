"""The HTTP API as a new user meets it (issue 11): documents that tell the truth and work
offline, errors that point at the fix, actions that answer what they produced, registrations
that can be repeated, and one access log line per request."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.security.dev_issuer import bearer
from services.order.domain.order import Status
from tests.integration.conftest import Oms, order_body
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration

SERVICES = ("order", "inventory", "billing")  # the services the end-to-end platform runs


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_assets_the_service_serves_itself(
    platform: Platform, page: str
) -> None:
    for service in SERVICES:
        async with httpx.AsyncClient(base_url=platform.url(service), timeout=30) as client:
            html = await client.get(page)
            assert html.status_code == 200, html.text
            referenced = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
            referenced += re.findall(r"""url:\s*["']([^"']+)["']""", html.text)  # the OpenAPI document
            referenced += re.findall(r"""spec-url=["']([^"']+)["']""", html.text)

            assert referenced, html.text
            for url in referenced:
                assert not re.match(r"^(https?:)?//", url), f"{service}{page} loads {url} from elsewhere"
                assert (await client.get(url)).status_code == 200, f"{service}{page}: {url}"


async def test_the_document_declares_problems_enums_and_no_free_form_answers(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url("order"), timeout=30) as client:
        document = (await client.get("/openapi.json")).json()

    submit = document["paths"]["/orders"]["post"]["responses"]
    for status in ("401", "403", "409", "413", "415", "422", "429"):
        assert list(submit[status]["content"]) == ["application/problem+json"], status
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(problem["properties"])
    status_filter = next(
        p for p in document["paths"]["/orders"]["get"]["parameters"] if p["name"] == "status"
    )
    assert set(_enum_of(status_filter["schema"])) == set(Status.__args__)
    assert "404" in document["paths"]["/orders/{order_id}"]["get"]["responses"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for media, content in (answer.get("content") or {}).items():
                    if media.endswith("json"):
                        assert content["schema"] not in ({}, {"type": "object"}), (method, path, status)


def _enum_of(schema: dict[str, Any]) -> list[str]:
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            return list(option["enum"])
    return []


async def test_a_body_without_json_content_type_is_refused_415_naming_it(oms: Oms, sku: str) -> None:
    response = await oms.order.post(
        "/orders",
        content=b'{"channel": "web"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Content-Type: application/json" in response.json()["detail"]
    assert response.json()["expected"] == "application/json"


async def test_one_bad_line_price_is_one_error_naming_its_path_and_rule(oms: Oms, sku: str) -> None:
    response = await oms.submit(order_body(sku, unit_price="-1"))

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "field": "lines[0].unit_price",
            "message": "Input should be greater than or equal to 0",
            "rule": "greater_than_equal",
        }
    ]


async def test_a_json_syntax_error_names_its_line_and_column(oms: Oms) -> None:
    broken = b'{\n  "channel": "web",\n  "lines": [}\n}'

    response = await oms.order.post("/orders", content=broken, headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert (error["field"], error["line"], error["column"]) == ("body", 3, 13)
    assert "line 3, column 13" in error["message"]


async def test_an_unknown_status_filter_is_refused_listing_the_statuses(oms: Oms) -> None:
    response = await oms.order.get("/orders", params={"status": "bogus"})

    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["field"] == "status"
    assert set(error["allowed"]) == set(Status.__args__)


async def test_a_held_order_says_why_and_once_approved_keeps_the_hold_only_in_its_timeline(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 1)
    submitted = await oms.submit(order_body(sku, shipping={"method": "standard"}), key=str(uuid4()))
    assert submitted.status_code == 202, submitted.text
    accepted = submitted.json()
    assert accepted["status"] == "on_hold"
    assert accepted["hold_reasons"] == [
        "delivery address is incomplete (missing line1, city, postal_code, country)"
    ]
    order_id = accepted["order_id"]

    approved = await oms.order.post(f"/orders/{order_id}/approve")

    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["outcome"], approved.json()["pending"]) == (
        "approved",
        "approved",
        [],
    )
    order = await oms.get_order(order_id)
    assert (order["reason"], order["hold_reasons"]) == (None, [])
    approval = next(entry for entry in order["timeline"] if entry["type"] == "OrderApproved")
    assert approval["details"]["decided_hold"] == accepted["hold_reasons"]


async def test_cancelling_a_paid_order_answers_202_with_what_is_pending_then_it_is_cancelled(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(order_body(sku))
    await oms.wait_status(order_id, "awaiting_payment")
    invoice = await oms.invoice(order_id)
    assert (await oms.pay(order_id, invoice["amount"])).status_code == 201
    await oms.wait_status(order_id, "confirmed")

    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "changed mind"})

    assert cancelled.status_code == 202, cancelled.text
    answer = cancelled.json()
    assert (answer["status"], answer["outcome"], answer["stage"]) == (
        "cancelling",
        "cancelled",
        "compensating",
    )
    assert answer["pending"] == ["release_stock", "void_invoice"]
    await oms.wait_status(order_id, "cancelled")


async def test_repeating_a_registration_answers_200_and_a_different_one_409_naming_the_difference(
    oms: Oms,
) -> None:
    customer = {"customer_id": f"C-{uuid4().hex[:8]}", "name": "Ada Lovelace", "email": "Ada@Example.com"}

    first = await oms.order.post("/customers", json=customer)
    again = await oms.order.post("/customers", json=customer)
    other = await oms.order.post("/customers", json={**customer, "name": "Ada King", "region": "south"})

    assert first.status_code == 201 and again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json()
    assert other.status_code == 409, other.text
    assert other.json()["differences"] == ["name", "region"]
    assert "name, region" in other.json()["detail"]

    warehouse = {"code": f"W{uuid4().hex[:6]}", "name": "East DC", "region": "east"}
    assert (await oms.inventory.post("/warehouses", json=warehouse)).status_code == 201
    assert (await oms.inventory.post("/warehouses", json=warehouse)).status_code == 200
    moved = await oms.inventory.post("/warehouses", json={**warehouse, "region": "west"})
    assert moved.status_code == 409, moved.text


async def test_each_request_is_logged_once_by_route_with_status_duration_and_request_id(
    platform: Platform, oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 1)
    order_id = await oms.place(
        order_body(sku, customer={"name": "Grace Hopper", "email": "grace@example.com"})
    )
    request_id = f"req-{uuid4().hex}"

    answer = await oms.order.get(
        f"/orders/{order_id}", headers={"X-Request-Id": request_id, **bearer("admin")}
    )

    assert answer.headers["x-request-id"] == request_id
    log = platform.log_path("order")

    def logged() -> list[str]:
        return [line for line in log.read_text().splitlines() if request_id in line]

    async def lines() -> list[str]:
        return logged()

    (line,) = await eventually_value(lines, lambda found: len(found) == 1)
    assert "ordermesh.access" in line
    assert re.search(r"GET /orders/\{order_id\} 200 \d+\.\dms request_id=" + request_id, line), line
    assert order_id not in line and "grace" not in line.lower()
