"""Pure helpers of the customer desk and the order export: name words, exact money, cells."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.order.adapters.customer_desk import money, name_words
from services.order.entrypoints.order_export import cell_text


def test_name_words_are_case_folded_whole_words_without_punctuation() -> None:
    assert name_words("  Ada  LOVELACE-Byron, Countess ") == ["ada", "byron", "countess", "lovelace"]
    assert name_words("Jürgen STRAßE") == ["jürgen", "strasse"]


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [("1200", "JPY", "1200"), ("12.5", "EUR", "12.50"), ("1.2345", "KWD", "1.234"), ("3", "XAU", "3")],
)
def test_money_is_exact_to_the_currency_s_smallest_unit(amount: str, currency: str, shown: str) -> None:
    assert money(Decimal(amount), currency) == shown


@pytest.mark.parametrize("formula", ['=HYPERLINK("http://evil")', "+1+1", "-2", "@SUM(A1)"])
def test_a_text_cell_that_starts_like_a_formula_stays_text(formula: str) -> None:
    assert cell_text("customer_name", formula) == "'" + formula


def test_amounts_and_lists_are_written_as_they_are() -> None:
    assert cell_text("subtotal", "12.50") == "12.50"
    assert cell_text("hold_reasons", ["a", "b"]) == "a; b"
    assert cell_text("invoice_id", None) == ""
