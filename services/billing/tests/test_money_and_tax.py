"""Money in each currency's own units, tax by destination and product tax category, prices
with or without tax per channel, tax shown per invoice line, credit defaults per currency."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from libs.domain import InvalidRequest
from libs.events.billing import CreditCheckFailed, InvoiceIssued, IssueInvoice
from libs.events.values import OrderLine
from services.billing.domain.invoice import Invoice, decide_issue, decide_payment
from services.billing.domain.money import rounded
from services.billing.domain.policy import BillingPolicy, price
from services.billing.domain.shipping import ShippingRules
from services.billing.domain.tax import TaxRates, split
from services.billing.settings import BillingSettings
from services.billing.shipping_config import DEFAULT_SHIPPING_RULES, parse_shipping_rules
from services.billing.tax_config import TaxRatesError, parse_tax_rates
from services.billing.tests.examples import POLICY, account_after, invoice_after, issue_command, payment

D = Decimal
TAX_TABLE = {
    "*": {"standard": "0.20"},
    "DE": {"standard": "0.19", "reduced": "0.07"},
    "JP": {"standard": "0.10", "reduced": "0.08"},
    "US": {"standard": "0", "regions": {"CA": {"standard": "0.0725"}}},
}
RATES = parse_tax_rates(json.dumps(TAX_TABLE), D("0.20"))
SHOP = replace(
    POLICY,
    tax=RATES,
    shipping=parse_shipping_rules(json.dumps(DEFAULT_SHIPPING_RULES)),
    prices_include_tax_channels=frozenset({"web"}),
)


def line(sku: str, quantity: int, unit_price: str, category: str = "standard") -> OrderLine:
    return OrderLine(sku=sku, quantity=quantity, unit_price=D(unit_price), tax_category=category)


def command(*lines: OrderLine, channel: str = "b2b", **fields: object) -> IssueInvoice:
    return issue_command(*lines, **fields).model_copy(update={"channel": channel})  # type: ignore[arg-type]


def test_a_yen_invoice_is_in_whole_yen() -> None:
    charges = price(
        command(line("TEA", 3, "1234", "reduced"), currency="JPY", country="JP", shipping="standard"), SHOP
    )

    # 3702 x 8% = 296.16 -> 296 yen; shipping 800 x 10% = 80 yen
    assert [(ln.net, ln.tax, ln.gross) for ln in charges.lines] == [(D(3702), D(296), D(3998))]
    assert (charges.subtotal, charges.shipping_fee, charges.shipping_tax) == (D(3702), D(800), D(80))
    assert charges.tax == D(376) and charges.total == D(4878)
    assert all(amount == amount.to_integral_value() for amount in (charges.tax, charges.total))


def test_rounding_follows_the_currency_not_the_cent() -> None:
    assert rounded(D("1200.5"), "JPY") == D("1201") and rounded(D("19.995"), "EUR") == D("20.00")


def test_each_line_is_taxed_at_its_category_s_rate_in_the_destination_country() -> None:
    charges = price(
        command(line("BOOK", 2, "10.00", "reduced"), line("LAMP", 1, "50.00"), country="de"), SHOP
    )

    assert [(ln.sku, ln.tax_rate, ln.tax) for ln in charges.lines] == [
        ("BOOK", D("0.07"), D("1.40")),
        ("LAMP", D("0.19"), D("9.50")),
    ]
    assert charges.tax == sum(ln.tax or D(0) for ln in charges.lines) + charges.shipping_tax
    assert (
        charges.tax_rule
        == "prices exclude tax; goods: reduced 7% (de), standard 19% (de); shipping: standard 19% (de)"
    )


def test_a_region_s_own_rate_wins_over_its_country_s() -> None:
    to_california = price(command(line("LAMP", 1, "100.00"), currency="USD", country="US", region="ca"), SHOP)
    to_texas = price(command(line("LAMP", 1, "100.00"), currency="USD", country="US", region="tx"), SHOP)

    assert (to_california.tax, to_texas.tax) == (D("7.25"), D("0.00"))


def test_a_country_the_table_does_not_list_pays_the_rate_for_anywhere() -> None:
    assert price(command(line("LAMP", 1, "100.00"), country="FR"), SHOP).tax == D("20.00")


def test_a_category_no_table_names_is_taxed_at_the_standard_rate_and_the_invoice_says_so() -> None:
    charges = price(command(line("CIGAR", 1, "100.00", "luxury"), country="DE"), SHOP)

    assert charges.lines[0].tax_rate == D("0.19")
    assert "standard 19% (DE; category luxury not in the table)" in charges.tax_rule


def test_tax_inclusive_prices_are_what_the_customer_pays() -> None:
    charges = price(
        command(line("LAMP", 1, "119.00"), country="DE", shipping="standard", channel="web"), SHOP
    )

    assert (charges.lines[0].net, charges.lines[0].tax, charges.lines[0].gross) == (
        D("100.00"),
        D("19.00"),
        D("119.00"),
    )
    # The 4.90 shipping fee includes its tax too: 4.12 + 0.78.
    assert (charges.shipping_fee, charges.shipping_tax) == (D("4.12"), D("0.78"))
    assert charges.total == D("123.90") and charges.prices_include_tax


def test_the_invoice_shows_the_tax_of_each_line() -> None:
    decision = decide_issue(
        Invoice(), command(line("BOOK", 1, "10.00", "reduced"), country="DE"), account_after(), SHOP
    )

    issued = decision.invoice[0]
    assert isinstance(issued, InvoiceIssued)
    assert issued.lines[0].model_dump(mode="json") == {
        "sku": "BOOK",
        "quantity": 1,
        "unit_price": "10.00",
        "tax_category": "reduced",
        "tax_rate": "0.07",
        "net": "10.00",
        "tax": "0.70",
        "gross": "10.70",
    }
    assert (issued.subtotal, issued.tax, issued.total) == (D("10.00"), D("0.70"), D("10.70"))


@pytest.mark.parametrize(
    ("amount", "rate", "includes_tax", "expected"),
    [
        ("100.00", "0.19", False, ("100.00", "19.00", "119.00")),
        ("119.00", "0.19", True, ("100.00", "19.00", "119.00")),
        ("0.01", "0.19", True, ("0.01", "0.00", "0.01")),
        ("999", "0.08", True, ("925", "74", "999")),
    ],
)
def test_net_plus_tax_is_always_gross(
    amount: str, rate: str, includes_tax: bool, expected: tuple[str, ...]
) -> None:
    currency = "JPY" if "." not in amount else "EUR"
    taxed = split(D(amount), D(rate), currency, includes_tax=includes_tax)

    assert (taxed.net, taxed.tax, taxed.gross) == tuple(D(x) for x in expected)
    assert taxed.net + taxed.tax == taxed.gross


def test_the_default_credit_limit_is_per_currency() -> None:
    policy = replace(SHOP, default_credit_limit=D("0"), default_credit_limit_by_currency={"JPY": D("300000")})
    yen = command(line("TEA", 1, "100000"), currency="JPY", terms="on_account", country="JP")
    euros = command(line("TEA", 1, "100.00"), terms="on_account")

    assert isinstance(decide_issue(Invoice(), yen, account_after(), policy).invoice[0], InvoiceIssued)
    refused = decide_issue(Invoice(), euros, account_after(), policy).invoice[0]
    assert isinstance(refused, CreditCheckFailed) and refused.credit_limit == D("0")


def test_a_payment_in_fractions_of_a_yen_is_refused() -> None:
    issued = decide_issue(Invoice(), command(line("TEA", 1, "1200"), currency="JPY"), account_after(), SHOP)
    invoice = invoice_after(*issued.invoice)

    with pytest.raises(InvalidRequest, match="smallest unit of JPY"):
        decide_payment(invoice, account_after(), payment("100.50"))
    assert decide_payment(invoice, account_after(), payment("100")).invoice


def test_without_a_rate_table_the_one_rate_applies_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OM_BILLING_TAX_RATES", raising=False)
    monkeypatch.setenv("OM_BILLING_TAX_RATE", "0.25")

    assert BillingSettings().policy().tax == TaxRates.flat(D("0.25"))


def test_the_rate_table_and_channels_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_BILLING_TAX_RATES", json.dumps(TAX_TABLE))
    monkeypatch.setenv("OM_BILLING_PRICES_INCLUDE_TAX_CHANNELS", "web, shop")
    monkeypatch.setenv("OM_BILLING_DEFAULT_CREDIT_LIMIT_BY_CURRENCY", '{"JPY": "300000"}')

    policy = BillingSettings().policy()

    assert policy.tax == RATES and policy.prices_include_tax_channels == {"web", "shop"}
    assert (policy.default_credit_limit_in("JPY"), policy.default_credit_limit_in("EUR")) == (D(300000), D(0))


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"DE": {"standard": "19"}}, "DE.standard: 19 is not a fraction below 1 (0.19 is 19 %)"),
        ({"DE": {"Reduced": "0.07"}}, "DE: 'Reduced' is not a tax category"),
        ({"DE": {"standard": "0.19"}, "de": {"standard": "0.19"}}, "de: named twice"),
        ({"*": {"reduced": "0.05"}}, "*: needs a standard rate"),
        ({"US": {"regions": {"CA": {"regions": {}}}}}, "US.regions.CA: a region has no regions"),
        (
            {"DE": {"standard": "0.1234567"}},
            "DE.standard: Decimal input should have no more than 6 decimal places",
        ),
    ],
)
def test_a_bad_rate_table_is_refused_naming_the_place(table: dict[str, object], problem: str) -> None:
    with pytest.raises(TaxRatesError) as refused:
        parse_tax_rates(json.dumps(table), D("0.20"))

    assert problem in str(refused.value)


def test_a_yen_credit_default_in_fractions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_BILLING_DEFAULT_CREDIT_LIMIT_BY_CURRENCY", '{"JPY": "1000.5"}')

    with pytest.raises(ValueError, match="DEFAULT_CREDIT_LIMIT_BY_CURRENCY.JPY: 1000.5"):
        BillingSettings()


def test_the_examples_policy_still_charges_twenty_percent_on_everything() -> None:
    assert isinstance(POLICY, BillingPolicy) and POLICY.shipping == ShippingRules.flat(
        {"standard": D("4.90"), "express": D("14.90"), "pickup": D("0.00")}
    )
    assert price(issue_command(), POLICY).total == D("120.00")
