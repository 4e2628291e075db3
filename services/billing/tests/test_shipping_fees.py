"""Shipping fee rules (issue 9): per currency, method, destination, weight and order value,
and what the invoice says about the rule it applied."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from libs.events.billing import InvoiceIssued
from libs.events.values import ShippingMethod
from services.billing.domain.invoice import Invoice, decide_issue
from services.billing.domain.policy import price
from services.billing.domain.shipping import (
    DestinationRule,
    MethodRule,
    NoShippingRules,
    ShippingFee,
    ShippingRules,
    WeightBand,
    shipping_fee,
)
from services.billing.tests.examples import POLICY, account_after, issue_command, line

D = Decimal
FLAT = ShippingRules.flat({"standard": D("4.90"), "express": D("14.90"), "pickup": D("0.00")})

# The EUR standard rule the examples below read against.
STANDARD_EUR = MethodRule(
    fee=D("4.90"),
    free_from=D("50.00"),
    destinations=(
        DestinationRule(fee=D("12.00"), country="ES", region="canarias", free_from=D("150.00")),
        DestinationRule(fee=D("19.90"), country="CH", free_from=None),
        DestinationRule(fee=D("9.90"), region="islands", free_from=D("50.00")),
    ),
    weight_bands=(
        WeightBand(above_kg=D("5"), add=D("3.00")),
        WeightBand(above_kg=D("20"), add=D("8.00"), per_kg=D("0.50")),
    ),
)
RULES = ShippingRules(
    {
        "EUR": {"standard": STANDARD_EUR, "express": MethodRule(D("14.90")), "pickup": MethodRule(D("0"))},
        "*": {
            "standard": MethodRule(D("6.00")),
            "express": MethodRule(D("16.00")),
            "pickup": MethodRule(D("0")),
        },
    }
)


def standard(
    order_value: str = "20.00",
    *,
    currency: str = "EUR",
    country: str | None = None,
    region: str | None = None,
    weight_kg: str | None = "1",
    rules: ShippingRules = RULES,
) -> ShippingFee:
    return shipping_fee(
        rules,
        "standard",
        currency,
        D(order_value),
        country=country,
        region=region,
        weight_kg=None if weight_kg is None else D(weight_kg),
    )


# -- the defaults: today's flat fee per method ----------------------------------------------


@pytest.mark.parametrize(("method", "fee"), [("standard", "4.90"), ("express", "14.90"), ("pickup", "0.00")])
@pytest.mark.parametrize("currency", ["EUR", "USD", "GBP"])
def test_flat_rules_charge_each_method_its_fee_in_any_currency_wherever_and_however_heavy(
    method: ShippingMethod, fee: str, currency: str
) -> None:
    charged = shipping_fee(
        FLAT,
        method,
        currency,
        D("1000000.00"),
        country="CH",
        region="islands",
        weight_kg=D("900"),
    )

    assert charged == ShippingFee(D(fee), f"{method} in any currency: base fee {fee}")


# -- currency -------------------------------------------------------------------------------


def test_a_currency_with_rules_of_its_own_uses_them() -> None:
    assert standard(currency="EUR") == ShippingFee(D("4.90"), "standard in EUR: base fee 4.90")


def test_a_currency_without_rules_of_its_own_uses_the_rules_for_any_currency() -> None:
    charged = standard(currency="USD", country="CH", weight_kg="30")

    assert charged == ShippingFee(D("6.00"), "standard in any currency: base fee 6.00")


def test_a_currency_the_rules_do_not_cover_is_refused_naming_what_they_cover() -> None:
    only_eur = ShippingRules({"EUR": RULES.by_currency["EUR"]})

    with pytest.raises(NoShippingRules) as refused:
        standard(currency="USD", rules=only_eur)

    assert refused.value.code == "no_shipping_rules"
    assert refused.value.message == (
        "the shipping rules price EUR only and have no '*' rules for other currencies,"
        " so an invoice in USD cannot be issued"
    )


# -- destination ----------------------------------------------------------------------------


def test_without_a_destination_the_base_fee_applies() -> None:
    assert standard().amount == D("4.90")


def test_a_country_rule_sets_the_fee_for_every_region_of_that_country() -> None:
    assert standard(country="CH") == ShippingFee(D("19.90"), "standard in EUR to country CH: 19.90")
    assert standard(country="CH", region="ticino").amount == D("19.90")


def test_a_region_rule_applies_in_any_country_or_none() -> None:
    assert standard(region="islands") == ShippingFee(D("9.90"), "standard in EUR to region islands: 9.90")
    assert standard(region="islands", country="GR").amount == D("9.90")


def test_destinations_match_ignoring_case_and_surrounding_spaces() -> None:
    assert standard(country=" ch ").amount == D("19.90")
    assert standard(region="ISLANDS").amount == D("9.90")


def test_a_rule_naming_country_and_region_needs_both() -> None:
    assert standard(country="ES", region="Canarias") == ShippingFee(
        D("12.00"), "standard in EUR to region canarias, country ES: 12.00"
    )
    assert standard(country="ES").amount == D("4.90")
    assert standard(region="canarias").amount == D("4.90")
    assert standard(country="PT", region="canarias").amount == D("4.90")


def test_the_first_matching_destination_wins() -> None:
    # Both the CH rule and the islands rule match; CH comes first.
    assert standard(country="CH", region="islands").amount == D("19.90")
    swapped = replace(STANDARD_EUR, destinations=STANDARD_EUR.destinations[::-1])
    rules = ShippingRules({"EUR": {**RULES.by_currency["EUR"], "standard": swapped}})
    assert standard(country="CH", region="islands", rules=rules).amount == D("9.90")


def test_another_method_has_its_own_rules() -> None:
    charged = shipping_fee(RULES, "express", "EUR", D("20.00"), country="CH", weight_kg=D("30"))

    assert charged == ShippingFee(D("14.90"), "express in EUR: base fee 14.90")


# -- free shipping above an order value -----------------------------------------------------


def test_an_order_worth_the_free_threshold_ships_free() -> None:
    assert standard("50.00") == ShippingFee(
        D("0.00"), "standard in EUR: free from an order value of 50.00 (this order 50.00)"
    )


def test_an_order_a_cent_below_the_free_threshold_pays() -> None:
    assert standard("49.99").amount == D("4.90")


def test_free_shipping_waives_the_weight_surcharge_too() -> None:
    assert standard("80.00", weight_kg="30").amount == D("0.00")


def test_a_destination_without_free_shipping_always_pays() -> None:
    assert standard("100000.00", country="CH").amount == D("19.90")


def test_a_destination_with_its_own_threshold_uses_it() -> None:
    assert standard("149.99", country="ES", region="canarias").amount == D("12.00")
    assert standard("150.00", country="ES", region="canarias") == ShippingFee(
        D("0.00"),
        "standard in EUR to region canarias, country ES: free from an order value of 150.00"
        " (this order 150.00)",
    )


def test_without_a_threshold_no_order_ships_free() -> None:
    assert shipping_fee(RULES, "express", "EUR", D("1000000000.00")).amount == D("14.90")


# -- weight ---------------------------------------------------------------------------------


def test_an_order_no_heavier_than_the_first_band_pays_no_surcharge() -> None:
    assert standard(weight_kg="5") == ShippingFee(D("4.90"), "standard in EUR: base fee 4.90")
    assert standard(weight_kg="0").amount == D("4.90")


def test_an_order_above_a_band_pays_its_surcharge() -> None:
    assert standard(weight_kg="5.001") == ShippingFee(
        D("7.90"), "standard in EUR: base fee 4.90 + 3.00 above 5 kg (5.001 kg) = 7.90"
    )
    assert standard(weight_kg="20").amount == D("7.90")


def test_only_the_heaviest_band_the_order_is_above_applies() -> None:
    # Above 20 kg: 8.00 and 0.50 a kg over 20, not the 3.00 of the band above 5 kg as well.
    assert standard(weight_kg="22") == ShippingFee(
        D("13.90"), "standard in EUR: base fee 4.90 + 8.00 + 0.50 per kg for 2 kg above 20 kg (22 kg) = 13.90"
    )


@pytest.mark.parametrize(
    ("weight", "started_kg"), [("20.001", 1), ("21", 1), ("21.5", 2), ("22.999", 3), ("120", 100)]
)
def test_per_kg_is_charged_for_each_started_kilogram_above_the_band(weight: str, started_kg: int) -> None:
    assert standard(weight_kg=weight).amount == D("4.90") + D("8.00") + D("0.50") * started_kg


def test_bands_apply_by_weight_whatever_their_order() -> None:
    reversed_bands = replace(STANDARD_EUR, weight_bands=STANDARD_EUR.weight_bands[::-1])
    rules = ShippingRules({"EUR": {**RULES.by_currency["EUR"], "standard": reversed_bands}})

    assert standard(weight_kg="7", rules=rules).amount == D("7.90")
    assert standard(weight_kg="22", rules=rules).amount == D("13.90")


def test_a_band_with_only_a_per_kg_rate() -> None:
    per_kg_only = replace(STANDARD_EUR, weight_bands=(WeightBand(above_kg=D("10"), per_kg=D("0.35")),))
    rules = ShippingRules({"EUR": {**RULES.by_currency["EUR"], "standard": per_kg_only}})

    assert standard(weight_kg="13.2", rules=rules) == ShippingFee(
        D("6.30"), "standard in EUR: base fee 4.90 + 0.35 per kg for 4 kg above 10 kg (13.2 kg) = 6.30"
    )


def test_weight_surcharges_add_to_a_destination_fee() -> None:
    assert standard(country="CH", weight_kg="6") == ShippingFee(
        D("22.90"), "standard in EUR to country CH: 19.90 + 3.00 above 5 kg (6 kg) = 22.90"
    )


def test_an_order_of_unknown_weight_pays_the_fee_without_surcharge_and_says_so() -> None:
    assert standard(weight_kg=None) == ShippingFee(
        D("4.90"), "standard in EUR: base fee 4.90 (weight unknown: no weight surcharge)"
    )


# -- on the invoice -------------------------------------------------------------------------


def test_the_invoice_charges_the_rules_fee_taxes_it_and_records_the_rule() -> None:
    policy = replace(POLICY, shipping=RULES)
    command = issue_command(line("SKU-1", 2, "10.00"), shipping="standard", country="CH", weight_kg="6")

    [issued] = decide_issue(Invoice(), command, account_after(), policy).invoice

    assert isinstance(issued, InvoiceIssued)
    assert (issued.subtotal, issued.shipping_fee, issued.tax, issued.total) == (
        D("20.00"),
        D("22.90"),
        D("8.58"),  # 20% of 42.90
        D("51.48"),
    )
    assert issued.shipping_rule == "standard in EUR to country CH: 19.90 + 3.00 above 5 kg (6 kg) = 22.90"


def test_free_shipping_is_judged_on_the_goods_subtotal_before_tax() -> None:
    policy = replace(POLICY, shipping=RULES)
    # 45.00 of goods is 54.00 with tax: still under the 50.00 threshold.
    charges = price(issue_command(line("SKU-1", 3, "15.00"), shipping="standard"), policy)

    assert (charges.subtotal, charges.shipping_fee) == (D("45.00"), D("4.90"))


def test_the_invoice_in_a_currency_without_rules_is_refused() -> None:
    policy = replace(POLICY, shipping=ShippingRules({"EUR": RULES.by_currency["EUR"]}))

    with pytest.raises(NoShippingRules):
        decide_issue(Invoice(), issue_command(currency="GBP"), account_after(), policy)
