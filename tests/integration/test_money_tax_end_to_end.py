"""Money and tax on the real platform: prices in each currency's own units, fees per currency,
an order in a currency the shop does not sell in held for a person, tax per invoice line by
destination and product tax category, and a channel whose prices include tax."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import TAX_INCLUSIVE_CHANNEL, Oms, order_body

pytestmark = pytest.mark.integration


def delivered_to(country: str) -> dict[str, Any]:
    return {
        "method": "standard",
        "address": {"line1": "1 Main St", "city": "Somewhere", "postal_code": "12345", "country": country},
    }


async def invoiced(oms: Oms, body: dict[str, Any]) -> dict[str, Any]:
    for line in body["lines"]:
        await oms.receive(line["sku"], line["quantity"])
    order_id = await oms.place(body)
    await oms.wait_status(order_id, "awaiting_payment")
    return await oms.invoice(order_id)


def taxes(invoice: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [
        (ln["tax_category"], ln["tax_rate"], ln["net"], ln["tax"], ln["gross"]) for ln in invoice["lines"]
    ]


async def test_a_yen_price_is_entered_and_invoiced_in_whole_yen_with_the_yen_shipping_fee(
    oms: Oms, sku: str
) -> None:
    body = order_body(sku, quantity=2, unit_price="1200", shipping=delivered_to("JP")) | {"currency": "JPY"}

    invoice = await invoiced(oms, body)

    # Goods 2400 and the JPY standard fee 800, taxed at the default 20 %.
    assert (invoice["currency"], invoice["subtotal"], invoice["shipping_fee"]) == ("JPY", "2400.00", "800.00")
    assert (invoice["tax"], invoice["amount"]) == ("640.00", "3840.00")
    assert taxes(invoice) == [("standard", "0.20", "2400.00", "480.00", "2880.00")]


async def test_twelve_and_a_half_yen_is_refused_naming_the_line_and_the_rule(oms: Oms, sku: str) -> None:
    body = order_body(sku, unit_price="12.5") | {"currency": "JPY"}

    response = await oms.submit(body, key=f"sen-{sku}")

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "field": "lines[0].unit_price",
            "message": "at most 0 decimal places for JPY",
            "rule": "currency_decimal_places",
        }
    ]


async def test_a_usd_order_pays_the_usd_shipping_fee(oms: Oms, sku: str) -> None:
    body = order_body(sku, unit_price="10.00", shipping=delivered_to("US")) | {"currency": "USD"}

    invoice = await invoiced(oms, body)

    assert (invoice["currency"], invoice["shipping_fee"]) == ("USD", "5.90")
    assert "standard in USD: base fee 5.90" in invoice["shipping_rule"]


async def test_an_order_in_a_currency_the_shop_does_not_sell_in_is_held_with_that_reason(
    oms: Oms, sku: str
) -> None:
    response = await oms.submit(order_body(sku) | {"currency": "CHF"}, key=f"chf-{sku}")

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "on_hold"
    assert response.json()["hold_reasons"] == [
        "currency CHF is not one the shop is configured for (EUR, GBP, JPY, USD):"
        " no shipping fees or credit defaults in it"
    ]


async def test_each_invoice_line_is_taxed_by_destination_and_tax_category(oms: Oms, sku: str) -> None:
    body = order_body(sku, unit_price="10.00", shipping=delivered_to("DE"))
    body["lines"] = [
        {"sku": f"{sku}-BOOK", "quantity": 2, "unit_price": "10.00", "tax_category": "reduced"},
        {"sku": f"{sku}-LAMP", "quantity": 1, "unit_price": "50.00"},
    ]

    invoice = await invoiced(oms, body)

    assert taxes(invoice) == [
        ("reduced", "0.07", "20.00", "1.40", "21.40"),
        ("standard", "0.19", "50.00", "9.50", "59.50"),
    ]
    # Shipping 4.90 at DE's standard 19 %: 0.93.
    assert (invoice["subtotal"], invoice["shipping_fee"], invoice["tax"]) == ("70.00", "4.90", "11.83")
    assert invoice["amount"] == "86.73"


async def test_a_channel_whose_prices_include_tax_is_charged_what_it_showed(oms: Oms, sku: str) -> None:
    body = order_body(sku, unit_price="119.00", channel=TAX_INCLUSIVE_CHANNEL, shipping=delivered_to("DE"))

    invoice = await invoiced(oms, body)

    assert taxes(invoice) == [("standard", "0.19", "100.00", "19.00", "119.00")]
    # 119.00 + the 4.90 fee, both with their tax inside: the customer pays what the shop showed.
    assert (invoice["shipping_fee"], invoice["tax"], invoice["amount"]) == ("4.12", "19.78", "123.90")
