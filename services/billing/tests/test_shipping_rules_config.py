"""OM_BILLING_SHIPPING_RULES: the documented format, the defaults it replaces, and a bad rule
set stopping the service with a message that says what is wrong where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from libs.events.billing import InvoiceIssued
from libs.events.values import MAX_ORDER_VALUE
from services.billing.domain.invoice import Invoice, decide_issue
from services.billing.domain.shipping import (
    DestinationRule,
    MethodRule,
    NoShippingRules,
    ShippingRules,
    WeightBand,
    shipping_fee,
)
from services.billing.settings import BillingSettings
from services.billing.shipping_config import MAX_FEE, MAX_PER_KG, ShippingRulesError, parse_shipping_rules
from services.billing.tests.examples import POLICY, account_after, issue_command, line

D = Decimal
ROOT = Path(__file__).resolve().parents[3]

# The example of the README and of shipping_config's docstring.
EXAMPLE = {
    "EUR": {
        "standard": {
            "fee": "4.90",
            "free_from": "50.00",
            "destinations": [
                {"country": "CH", "fee": "19.90", "free_from": None},
                {"region": "islands", "fee": "9.90"},
            ],
            "weight": [
                {"above_kg": "5", "add": "3.00"},
                {"above_kg": "20", "add": "8.00", "per_kg": "0.50"},
            ],
        },
        "express": {"fee": "14.90", "destinations": [{"country": "CH", "fee": "29.90"}]},
        "pickup": {"fee": "0.00"},
    },
    "*": {"standard": {"fee": "4.90"}, "express": {"fee": "14.90"}, "pickup": {"fee": "0.00"}},
}
FLAT_ANY = {"standard": {"fee": "4.90"}, "express": {"fee": "14.90"}, "pickup": {"fee": "0.00"}}


def with_standard(**standard: Any) -> str:
    return json.dumps({"EUR": {**FLAT_ANY, "standard": {"fee": "4.90", **standard}}})


def test_the_documented_example_reads_as_written() -> None:
    rules = parse_shipping_rules(json.dumps(EXAMPLE))

    assert rules == ShippingRules(
        {
            "EUR": {
                "standard": MethodRule(
                    fee=D("4.90"),
                    free_from=D("50.00"),
                    destinations=(
                        DestinationRule(fee=D("19.90"), country="CH", free_from=None),
                        # No free_from of its own: the method's.
                        DestinationRule(fee=D("9.90"), region="islands", free_from=D("50.00")),
                    ),
                    weight_bands=(
                        WeightBand(D("5"), add=D("3.00")),
                        WeightBand(D("20"), add=D("8.00"), per_kg=D("0.50")),
                    ),
                ),
                "express": MethodRule(D("14.90"), destinations=(DestinationRule(D("29.90"), country="CH"),)),
                "pickup": MethodRule(D("0.00")),
            },
            "*": {
                "standard": MethodRule(D("4.90")),
                "express": MethodRule(D("14.90")),
                "pickup": MethodRule(D("0.00")),
            },
        }
    )


def test_amounts_may_be_json_numbers_read_as_decimals_not_floats() -> None:
    rules = parse_shipping_rules(
        '{"*": {"standard": {"fee": 4.9}, "express": {"fee": 14.90}, "pickup": {"fee": 0}}}'
    )

    assert [rules.by_currency["*"][m].fee for m in ("standard", "express", "pickup")] == [
        D("4.90"),
        D("14.90"),
        D("0.00"),
    ]
    # As a float this would be 4.9 and pass; as the decimal it is, it has too many places.
    with pytest.raises(
        ShippingRulesError,
        match=r"EUR\.standard\.fee: Decimal input should have no more than 2 decimal places",
    ):
        parse_shipping_rules(with_standard(fee=None).replace('"fee": null', '"fee": 4.900000000000000001'))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[]", "the rules are a JSON object from currency codes (or '*' for any currency) to the rules of"),
        ("{}", "the rules are a JSON object from currency codes"),
        (json.dumps({"euro": FLAT_ANY}), "'euro' is not a currency code (three capital letters) or '*'"),
        (
            json.dumps({"EUR": {"standard": {"fee": "4.90"}}}),
            "EUR.express: Field required; EUR.pickup: Field required",
        ),
        (
            json.dumps({"EUR": {**FLAT_ANY, "overnight": {"fee": "30"}}}),
            "EUR.overnight: Extra inputs are not permitted",
        ),
        (
            with_standard(fee="4.999"),
            "EUR.standard.fee: Decimal input should have no more than 2 decimal places",
        ),
        (with_standard(fee="-1"), "EUR.standard.fee: Input should be greater than or equal to 0"),
        (with_standard(fee="NaN"), "EUR.standard.fee: Input should be a finite number"),
        (
            with_standard(fee=str(MAX_FEE + 1)),
            "EUR.standard.fee: Input should be less than or equal to 100000.00",
        ),
        (
            with_standard(free_from="1000000000.01"),
            "EUR.standard.free_from: Input should be less than or equal to",
        ),
        (with_standard(colour="red"), "EUR.standard.colour: Extra inputs are not permitted"),
        (
            with_standard(destinations=[{"fee": "1.00"}]),
            "EUR.standard.destinations.0: a destination names a 'country', a 'region' or both",
        ),
        (
            with_standard(destinations=[{"country": "", "fee": "1.00"}]),
            "EUR.standard.destinations.0.country: String should have at least 1 character",
        ),
        (
            with_standard(destinations=[{"region": "r" * 41, "fee": "1.00"}]),
            "EUR.standard.destinations.0.region: String should have at most 40 characters",
        ),
        (
            with_standard(destinations=[{"country": "CH", "fee": "1.00", "zone": 3}]),
            "EUR.standard.destinations.0.zone: Extra inputs are not permitted",
        ),
        (
            with_standard(
                destinations=[
                    {"country": "ES", "fee": "5.00"},
                    {"country": "es", "region": "canarias", "fee": "12.00"},
                ]
            ),
            "EUR.standard.destinations: destination 1 (region canarias, country es) never applies:"
            " destination 0 (country ES) matches first",
        ),
        (
            with_standard(
                destinations=[{"region": "north", "fee": "5.00"}, {"region": "North", "fee": "6.00"}]
            ),
            "EUR.standard.destinations: destination 1 (region North) never applies:"
            " destination 0 (region north) matches first",
        ),
        (
            with_standard(weight=[{"above_kg": "5"}]),
            "EUR.standard.weight.0: a weight band needs an 'add', a 'per_kg' or both",
        ),
        (
            with_standard(weight=[{"above_kg": "-1", "add": "1.00"}]),
            "EUR.standard.weight.0.above_kg: Input should be greater than or equal to 0",
        ),
        (
            with_standard(weight=[{"above_kg": "1.0001", "add": "1.00"}]),
            "EUR.standard.weight.0.above_kg: Decimal input should have no more than 3 decimal places",
        ),
        (
            with_standard(weight=[{"above_kg": "1", "per_kg": str(MAX_PER_KG + 1)}]),
            "EUR.standard.weight.0.per_kg: Input should be less than or equal to 100.00",
        ),
        (
            with_standard(weight=[{"above_kg": "20", "add": "8.00"}, {"above_kg": "5", "add": "3.00"}]),
            "EUR.standard.weight: weight bands go from light to heavy: above_kg 5 follows 20",
        ),
        (
            with_standard(weight=[{"above_kg": "5", "add": "3.00"}, {"above_kg": "5.000", "add": "4.00"}]),
            "EUR.standard.weight: weight bands go from light to heavy: above_kg 5.000 follows 5",
        ),
    ],
)
def test_a_bad_rule_set_is_refused_saying_what_is_wrong_where(raw: str, problem: str) -> None:
    with pytest.raises(ShippingRulesError) as refused:
        parse_shipping_rules(raw)

    assert problem in str(refused.value)


def test_the_largest_fee_the_rules_allow_still_fits_on_the_largest_invoice() -> None:
    rules = parse_shipping_rules(
        with_standard(
            fee=str(MAX_FEE), weight=[{"above_kg": "0", "add": str(MAX_FEE), "per_kg": str(MAX_PER_KG)}]
        )
    )
    policy = replace(POLICY, shipping=rules)
    command = issue_command(
        line("SKU-1", 1, str(MAX_ORDER_VALUE)), shipping="standard", weight_kg="999999999.999"
    )

    [issued] = decide_issue(Invoice(), command, account_after(), policy).invoice

    assert isinstance(issued, InvoiceIssued)
    assert issued.shipping_fee == MAX_FEE * 2 + MAX_PER_KG * 1_000_000_000


# -- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OM_BILLING_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_without_rules_each_default_currency_pays_fees_of_its_own(clean_env: pytest.MonkeyPatch) -> None:
    rules = BillingSettings().policy().shipping

    assert shipping_fee(rules, "standard", "EUR", D("10.00")).amount == D("4.90")
    assert shipping_fee(rules, "standard", "USD", D("10.00")).amount == D("5.90")
    assert shipping_fee(rules, "express", "JPY", D("1200")).amount == D("2000")
    with pytest.raises(NoShippingRules, match="an invoice in CHF cannot be issued"):
        shipping_fee(rules, "standard", "CHF", D("10.00"))


def test_a_flat_fee_variable_in_no_currency_stops_billing_saying_how_to_set_it_per_currency(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("OM_BILLING_SHIPPING_FEE_EXPRESS", "9.50")

    with pytest.raises(ValidationError, match="OM_BILLING_SHIPPING_FEE_EXPRESS: a flat fee in any currency"):
        BillingSettings()


def test_configured_rules_replace_the_default_fees(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OM_CURRENCIES", "EUR,USD")
    clean_env.setenv("OM_BILLING_SHIPPING_RULES", json.dumps(EXAMPLE))

    rules = BillingSettings().policy().shipping

    assert shipping_fee(rules, "express", "EUR", D("10.00"), country="ch").amount == D("29.90")
    assert shipping_fee(rules, "express", "USD", D("10.00")).amount == D("14.90")


def test_rules_that_leave_a_currency_sold_in_without_fees_stop_billing(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OM_CURRENCIES", "EUR,CHF")
    clean_env.setenv("OM_BILLING_SHIPPING_RULES", with_standard())

    with pytest.raises(ValidationError, match="CHF is in OM_CURRENCIES but has no shipping rules"):
        BillingSettings()


def test_any_currency_rules_in_cents_cannot_price_yen(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OM_CURRENCIES", "EUR,JPY")
    clean_env.setenv("OM_BILLING_SHIPPING_RULES", json.dumps(EXAMPLE))

    with pytest.raises(
        ValidationError, match=r"\*.standard.fee: 4.90 applies to JPY too, but is not a whole"
    ):
        BillingSettings()


def test_yen_rules_in_fractions_of_a_yen_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OM_CURRENCIES", "JPY")
    clean_env.setenv("OM_BILLING_SHIPPING_RULES", json.dumps({"JPY": {**FLAT_ANY, "pickup": {"fee": "0"}}}))

    with pytest.raises(
        ValidationError, match="JPY.standard.fee: 4.90 is not a whole number of JPY's smallest"
    ):
        BillingSettings()


def test_an_invalid_rule_set_stops_the_service_with_a_clear_message() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OM_BILLING_")}
    env["OM_BILLING_SHIPPING_RULES"] = with_standard(
        weight=[{"above_kg": "20", "add": "8.00"}, {"above_kg": "5", "add": "3.00"}]
    )

    started = subprocess.run(
        [sys.executable, "-m", "services.billing"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode == 1
    assert started.stderr.strip() == (
        "billing cannot start: OM_BILLING_SHIPPING_RULES is invalid:"
        " EUR.standard.weight: weight bands go from light to heavy: above_kg 5 follows 20"
    )
