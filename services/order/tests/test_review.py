"""The automatic review of a placed order, in isolation: approve, hold for a person, or reject."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from libs.events.order import OrderPlaced
from libs.events.values import (
    Address,
    CustomerSnapshot,
    OrderLine,
    PaymentTerms,
    Shipping,
    ShippingMethod,
)
from services.order.domain.review import ReviewFacts, ReviewPolicy, Verdict, review

POLICY = ReviewPolicy(amount_limit=Decimal("100.00"))
ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")


def placed(
    subtotal: str = "50.00",
    method: ShippingMethod = "standard",
    address: Address | None = ADDRESS,
    terms: PaymentTerms = "prepaid",
    channel: str = "web",
) -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        channel=channel,
        customer_id="c-1",
        customer=CustomerSnapshot(name="Ada"),
        lines=(OrderLine(sku="SKU-A", quantity=1, unit_price=Decimal(subtotal)),),
        currency="EUR",
        payment_terms=terms,
        shipping=Shipping(method=method, address=address),
        subtotal=Decimal(subtotal),
    )


def test_order_under_the_limit_with_a_complete_address_is_approved() -> None:
    verdict = review(placed(), ReviewFacts(), POLICY)

    assert verdict == Verdict("approve")


def test_order_exactly_at_the_limit_is_approved() -> None:
    verdict = review(placed("100.00"), ReviewFacts(), POLICY)

    assert verdict == Verdict("approve")


def test_order_over_the_limit_is_held_with_its_value_and_the_limit() -> None:
    verdict = review(placed("100.01"), ReviewFacts(), POLICY)

    assert verdict == Verdict("hold", ("order value 100.01 EUR is over the review limit of 100.00 EUR",))


def test_default_limit_is_5000() -> None:
    under, over = placed("5000.00"), placed("5000.01")

    assert review(under, ReviewFacts(), ReviewPolicy()).outcome == "approve"
    assert review(over, ReviewFacts(), ReviewPolicy()).outcome == "hold"


def test_the_review_limit_is_set_per_currency_so_a_yen_order_is_not_judged_in_euros() -> None:
    yen_lunch = placed(subtotal="12000").model_copy(update={"currency": "JPY"})
    yen_order_over_the_limit = placed(subtotal="800000").model_copy(update={"currency": "JPY"})
    assert review(yen_lunch, ReviewFacts(), ReviewPolicy()) == Verdict("approve")
    assert review(yen_order_over_the_limit, ReviewFacts(), ReviewPolicy()) == Verdict(
        "hold", ("order value 800000 JPY is over the review limit of 750000 JPY",)
    )


@pytest.mark.parametrize("method", ["standard", "express"])
def test_delivery_without_an_address_is_held_naming_every_missing_field(
    method: ShippingMethod,
) -> None:
    verdict = review(placed(method=method, address=None), ReviewFacts(), POLICY)

    assert verdict == Verdict(
        "hold", ("delivery address is incomplete (missing line1, city, postal_code, country)",)
    )


@pytest.mark.parametrize("method", ["standard", "express"])
def test_delivery_with_an_incomplete_address_is_held_naming_only_the_missing_fields(
    method: ShippingMethod,
) -> None:
    address = Address(line1="1 Main St", line2="Flat 2", city="", country="US")

    verdict = review(placed(method=method, address=address), ReviewFacts(), POLICY)

    assert verdict == Verdict("hold", ("delivery address is incomplete (missing city, postal_code)",))


@pytest.mark.parametrize("address", [None, Address()], ids=["no_address", "empty_address"])
def test_pickup_needs_no_address(address: Address | None) -> None:
    verdict = review(placed(method="pickup", address=address), ReviewFacts(), POLICY)

    assert verdict == Verdict("approve")


def test_possible_duplicate_is_held_naming_the_other_order() -> None:
    verdict = review(placed(), ReviewFacts(possible_duplicate_of="o-0"), POLICY)

    assert verdict == Verdict("hold", ("possible duplicate of order o-0",))


def test_every_hold_reason_that_applies_is_given() -> None:
    order = placed("250.00", address=None)

    verdict = review(order, ReviewFacts(possible_duplicate_of="o-0"), POLICY)

    assert verdict.outcome == "hold"
    assert verdict.reasons == (
        "order value 250.00 EUR is over the review limit of 100.00 EUR",
        "delivery address is incomplete (missing line1, city, postal_code, country)",
        "possible duplicate of order o-0",
    )


@pytest.mark.parametrize(
    "order",
    [placed(), placed("250.00", address=None)],
    ids=["duplicate_only", "every_hold_reason"],
)
def test_blocked_customer_is_rejected_even_when_hold_reasons_apply(order: OrderPlaced) -> None:
    facts = ReviewFacts(customer_blocked=True, possible_duplicate_of="o-0")

    verdict = review(order, facts, POLICY)

    assert verdict == Verdict("reject", ("customer is blocked",))


@pytest.mark.parametrize(
    ("price", "outcome"),
    [("50.00", "approve"), ("45.00", "approve"), ("44.99", "hold"), ("5.00", "hold")],
    ids=["at_list", "at_tolerance", "just_below", "typo"],
)
def test_a_line_priced_below_its_list_price_beyond_the_tolerance_is_held(price: str, outcome: str) -> None:
    facts = ReviewFacts(list_prices={"SKU-A": Decimal("50.00")})

    verdict = review(placed(subtotal=price), facts, POLICY)

    assert verdict.outcome == outcome
    if outcome == "hold":
        assert verdict.reasons[0].startswith(f"line SKU-A is priced {price} EUR")
        assert "below its list price of 50.00 (tolerance 10%)" in verdict.reasons[0]


def test_a_sku_without_a_list_price_in_the_order_currency_is_not_price_checked() -> None:
    verdict = review(placed(subtotal="1.00"), ReviewFacts(list_prices={}), POLICY)

    assert verdict == Verdict("approve")


# -- on-account terms ---------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["b2b", "erp", "phone"])
def test_on_account_order_from_a_channel_offering_account_terms_is_approved(channel: str) -> None:
    verdict = review(placed(terms="on_account", channel=channel), ReviewFacts(), ReviewPolicy())

    assert verdict == Verdict("approve")


@pytest.mark.parametrize("channel", ["web", "marketplace"])
def test_on_account_order_from_a_channel_not_offering_account_terms_is_rejected_naming_it(
    channel: str,
) -> None:
    verdict = review(placed(terms="on_account", channel=channel), ReviewFacts(), ReviewPolicy())

    assert verdict == Verdict(
        "reject",
        (f"payment terms on_account are not offered on channel {channel} (offered by b2b, erp, phone)",),
    )


def test_prepaid_order_from_any_channel_is_not_judged_on_its_terms() -> None:
    policy = ReviewPolicy(on_account_channels=frozenset())

    verdict = review(
        placed(channel="marketplace"), ReviewFacts(customer_matched_by_contact_only=True), policy
    )

    assert verdict == Verdict("approve")


def test_the_channels_offering_account_terms_are_the_merchants_to_choose() -> None:
    policy = replace(POLICY, on_account_channels=frozenset({"web"}))

    assert review(placed(terms="on_account", channel="web"), ReviewFacts(), policy) == Verdict("approve")
    assert review(placed(terms="on_account", channel="b2b"), ReviewFacts(), policy).outcome == "reject"


def test_on_account_order_matched_to_a_customer_by_contact_details_only_is_held_naming_the_customer() -> None:
    order = placed(terms="on_account", channel="b2b")

    verdict = review(order, ReviewFacts(customer_matched_by_contact_only=True), ReviewPolicy())

    assert verdict == Verdict(
        "hold",
        (
            "on-account order matched to customer c-1 by contact details (email or phone) only,"
            " not by a customer id from the channel: confirm the customer placed it",
        ),
    )


def test_a_blocked_customer_and_a_channel_without_account_terms_are_both_named_in_the_rejection() -> None:
    order = placed(terms="on_account", channel="web")

    verdict = review(order, ReviewFacts(customer_blocked=True, customer_matched_by_contact_only=True), POLICY)

    assert verdict.outcome == "reject"
    assert verdict.reasons[0] == "customer is blocked"
    assert verdict.reasons[1].startswith("payment terms on_account are not offered on channel web")
