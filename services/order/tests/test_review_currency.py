"""An order in a currency the shop is not configured for (OM_CURRENCIES) is held for a person."""

from __future__ import annotations

from dataclasses import replace

import pytest

from libs.runtime.currencies import CurrencySettings
from services.order.domain.review import ReviewFacts, Verdict, review
from services.order.settings import OrderSettings
from services.order.tests.test_review import POLICY, placed

SHOP = replace(POLICY, currencies=frozenset({"EUR", "USD"}))


def test_an_order_in_a_currency_the_shop_sells_in_is_approved() -> None:
    assert review(placed(), ReviewFacts(), SHOP) == Verdict("approve")


def test_an_order_in_another_currency_is_held_with_that_reason() -> None:
    in_francs = placed().model_copy(update={"currency": "CHF"})

    assert review(in_francs, ReviewFacts(), SHOP) == Verdict(
        "hold",
        (
            "currency CHF is not one the shop is configured for (EUR, USD):"
            " no shipping fees or credit defaults in it",
        ),
    )


def test_the_order_service_reads_the_currencies_billing_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_CURRENCIES", "EUR, JPY")

    assert OrderSettings().saga_policy().review.currencies == CurrencySettings().currencies == {"EUR", "JPY"}


def test_a_currency_list_naming_no_iso_4217_currency_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_CURRENCIES", "EUR,XAU,EURO")

    with pytest.raises(ValueError, match="EURO, XAU is not an ISO 4217 currency with a minor unit"):
        CurrencySettings()
