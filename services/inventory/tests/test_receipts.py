"""A receipt id names one delivery: the same stock again is a repeat, other stock is refused."""

from __future__ import annotations

import pytest

from libs.domain import DomainError
from services.inventory.domain.stock import Receipt, check_repeated_receipt

BOOKED = Receipt("R-1", "SKU-A", "NORTH", 5)


def test_the_same_receipt_again_is_a_repeat() -> None:
    check_repeated_receipt(BOOKED, Receipt("R-1", "SKU-A", "NORTH", 5))


@pytest.mark.parametrize(
    "again",
    [
        Receipt("R-1", "SKU-A", "NORTH", 7),
        Receipt("R-1", "SKU-A", "SOUTH", 5),
        Receipt("R-1", "SKU-B", "NORTH", 5),
    ],
    ids=["quantity", "warehouse", "sku"],
)
def test_a_receipt_id_reused_for_other_stock_is_refused_naming_both(again: Receipt) -> None:
    with pytest.raises(DomainError) as refused:
        check_repeated_receipt(BOOKED, again)

    assert (refused.value.code, refused.value.status) == ("receipt_reused", 409)
    assert refused.value.message == (
        f"receipt R-1 was already used for SKU-A x 5 at NORTH; this request says {again.sku} x"
        f" {again.quantity} at {again.warehouse}"
    )
