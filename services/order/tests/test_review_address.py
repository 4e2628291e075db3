"""The review holds a delivery only for what its country's address rules call incomplete."""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.events.order import OrderPlaced
from libs.events.values import Address, CustomerSnapshot, OrderLine, Shipping
from services.order.adapters.address_rules import CountryAddressRules
from services.order.domain.review import ReviewFacts, ReviewPolicy, Verdict, review

POLICY = ReviewPolicy(address_rules=CountryAddressRules())


def placed(address: Address | None, method: str = "standard") -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        channel="web",
        customer_id="c-1",
        customer=CustomerSnapshot(name="Ada"),
        lines=(OrderLine(sku="SKU-1", quantity=1, unit_price=Decimal("10.00")),),
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping(method=method, address=address),  # type: ignore[arg-type]
        subtotal=Decimal("10.00"),
    )


@pytest.mark.parametrize(
    "address",
    [
        Address(line1="1 Grafton Street", city="Dublin", country="IE"),  # Ireland: no postal code needed
        Address(line1="1 Queen's Road Central", country="HK"),  # Hong Kong: no postal code, no city
        Address(line1="Bahnhofstrasse 1", city="Zürich", postal_code="8001", country="ch"),
    ],
    ids=["IE_without_postal_code", "HK_without_postal_code_or_city", "CH_complete_lower_case_code"],
)
def test_an_address_complete_by_its_country_s_rules_is_approved(address: Address) -> None:
    assert review(placed(address), ReviewFacts(), POLICY) == Verdict("approve")


def test_a_missing_postal_code_holds_where_the_country_requires_one_naming_the_field() -> None:
    address = Address(line1="Unter den Linden 1", city="Berlin", country="DE")

    verdict = review(placed(address), ReviewFacts(), POLICY)

    assert verdict == Verdict("hold", ("delivery address is incomplete (missing postal_code)",))


def test_a_missing_street_holds_even_where_little_else_is_required() -> None:
    verdict = review(placed(Address(city="Dublin", country="IE")), ReviewFacts(), POLICY)

    assert verdict == Verdict("hold", ("delivery address is incomplete (missing line1)",))


def test_a_country_the_rules_do_not_know_is_held_naming_it() -> None:
    address = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="Germany")

    verdict = review(placed(address), ReviewFacts(), POLICY)

    assert verdict.outcome == "hold"
    assert verdict.reasons[0].startswith("delivery address country Germany is not a country code")


def test_no_country_is_held_naming_every_missing_field() -> None:
    verdict = review(placed(Address(line1="1 Main St")), ReviewFacts(), POLICY)

    missing = "delivery address is incomplete (missing city, postal_code, country)"
    assert verdict == Verdict("hold", (missing,))


def test_pickup_needs_no_address_whatever_the_rules() -> None:
    assert review(placed(None, method="pickup"), ReviewFacts(), POLICY) == Verdict("approve")
