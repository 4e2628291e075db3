"""Every size and amount is bounded where it enters: an order or a receipt that could not be
stored, priced or published is refused with 422 naming the field, never accepted and stuck."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import httpx
import pytest

from libs.events.values import MAX_LINES_PER_ORDER
from tests.integration.conftest import Oms, order_body
from tests.unit.test_input_bounds import maximal_order_body

pytestmark = pytest.mark.integration

TEN_MB = 10 * 1024 * 1024


def problem_fields(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {error["field"]: error["message"] for error in response.json()["errors"]}


def address_of(line1: str) -> dict[str, Any]:
    return {
        "method": "standard",
        "address": {"line1": line1, "city": "Springfield", "postal_code": "12345", "country": "US"},
    }


def order_id_for(key: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"ordermesh:idem:{key}"))


async def test_an_address_line_of_10_mb_is_refused_and_no_order_exists(oms: Oms, sku: str) -> None:
    key = f"big-{sku}"

    response = await oms.submit(order_body(sku, shipping=address_of("x" * TEN_MB)), key=key)

    # The HTTP layer refuses a body this large (413) before the model sees it; without that
    # limit the model refuses the line (422). Either way nothing is accepted.
    assert response.status_code in (413, 422), response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    if response.status_code == 422:
        assert "shipping.address.line1" in problem_fields(response)
    assert (await oms.order.get(f"/orders/{order_id_for(key)}")).status_code == 404


@pytest.mark.parametrize("length", [201, 900_000], ids=["just-over", "900-kB"])
async def test_an_address_line_over_200_characters_is_refused_naming_the_field(
    oms: Oms, sku: str, length: int
) -> None:
    key = f"long-{length}-{sku}"

    response = await oms.submit(order_body(sku, shipping=address_of("x" * length)), key=key)

    assert response.status_code == 422, response.text[:500]
    assert "at most 200 characters" in problem_fields(response)["shipping.address.line1"]
    assert (await oms.order.get(f"/orders/{order_id_for(key)}")).status_code == 404


async def test_an_order_at_every_limit_is_accepted(oms: Oms) -> None:
    body = maximal_order_body()

    response = await oms.submit(body, key=f"max-{uuid4()}")

    assert response.status_code == 202, response.text[:500]
    order = await oms.get_order(response.json()["order_id"])
    assert len(order["lines"]) == MAX_LINES_PER_ORDER


async def test_two_lines_of_one_sku_summing_past_the_quantity_limit_are_refused(oms: Oms, sku: str) -> None:
    body: dict[str, Any] = order_body(sku, quantity=600_000, unit_price="0.00")
    body["lines"].append({"sku": sku, "quantity": 600_000, "unit_price": "0.00"})

    response = await oms.submit(body, key=f"sum-{sku}")

    assert response.status_code == 422, response.text
    fields = problem_fields(response)
    assert "lines" in fields
    assert sku in fields["lines"] and "1000000" in fields["lines"].replace(",", "")


async def test_an_order_whose_subtotal_overflows_is_refused(oms: Oms, sku: str) -> None:
    body = order_body(sku, quantity=1_000_000, unit_price="900000000.00")

    response = await oms.submit(body, key=f"value-{sku}")

    assert response.status_code == 422, response.text
    fields = problem_fields(response)
    assert "lines" in fields and "order value" in fields["lines"]


async def test_a_receipt_quantity_over_the_limit_is_refused_naming_the_field(oms: Oms, sku: str) -> None:
    response = await oms.inventory.post(
        "/stock/receipts", json={"sku": sku, "warehouse": "NORTH", "quantity": 10**12}
    )

    assert response.status_code == 422, response.text
    assert "quantity" in problem_fields(response)
