"""POST /orders refuses money a currency cannot hold and more lines than an order may have,
with 422 problem+json naming the field and the limit; nothing is accepted."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest

from libs.events.values import MAX_LINES_PER_ORDER
from tests.integration.conftest import Oms, order_body

pytestmark = pytest.mark.integration


def in_yen(sku: str, unit_price: str) -> dict[str, Any]:
    return order_body(sku, unit_price=unit_price) | {"currency": "JPY"}


def with_lines(sku: str, count: int) -> dict[str, Any]:
    body = order_body(sku)
    body["lines"] = [{"sku": f"{sku}-{n}", "quantity": 1, "unit_price": "1.00"} for n in range(count)]
    return body


@pytest.mark.parametrize(
    ("make_body", "field", "message"),
    [
        (lambda sku: in_yen(sku, "1500.50"), "lines[0].unit_price", "at most 0 decimal places for JPY"),
        (lambda sku: order_body(sku, unit_price="NaN"), "lines[0].unit_price", "finite number"),
        (lambda sku: order_body(sku, unit_price="Infinity"), "lines[0].unit_price", "finite number"),
        (lambda sku: order_body(sku, unit_price="19.999"), "lines[0].unit_price", "2 decimal places"),
        (lambda sku: with_lines(sku, MAX_LINES_PER_ORDER + 1), "lines", "at most 500 lines"),
    ],
    ids=["yen-with-sen", "nan", "infinity", "three-decimals", "501-lines"],
)
async def test_an_order_past_a_money_or_line_limit_is_refused_naming_the_field_and_the_limit(
    oms: Oms, sku: str, make_body: Any, field: str, message: str
) -> None:
    key = f"limits-{sku}"

    response = await oms.submit(make_body(sku), key=key)

    assert response.status_code == 422, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert message in fields[field], fields
    order_id = uuid5(NAMESPACE_URL, f"ordermesh:idem:{key}")
    assert (await oms.order.get(f"/orders/{order_id}")).status_code == 404


async def test_a_whole_yen_price_is_accepted(oms: Oms, sku: str) -> None:
    response = await oms.submit(in_yen(sku, "1500"), key=f"yen-{sku}")

    assert response.status_code == 202, response.text
    order = await oms.get_order(response.json()["order_id"])
    assert order["currency"] == "JPY"
