"""Payments reported by the gateway: partial, failed, too much, late, and credit release."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from libs.domain import DomainError, InvalidRequest, NotFound
from libs.events.billing import (
    CreditReleased,
    InvoicePaid,
    InvoiceVoided,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
)
from services.billing.domain.invoice import (
    Invoice,
    PaymentAttempt,
    check_repeated_payment,
    decide_payment,
    decide_void,
    invoice_id_for,
    refund_id_for,
)
from services.billing.tests.examples import (
    CUSTOMER,
    ORDER,
    account_after,
    invoice_after,
    issue_command,
    issued,
    payment,
)

INVOICE_ID = invoice_id_for(ORDER)


def test_partial_payments_accumulate_until_paid() -> None:
    history = list(issued(issue_command()))  # total 120.00

    first = decide_payment(invoice_after(*history), account_after(), payment("50.00", "PAY-1"))
    history += first.invoice
    second = decide_payment(invoice_after(*history), account_after(), payment("70.00", "PAY-2"))
    history += second.invoice

    assert [type(e) for e in first.invoice] == [PaymentReceived]
    assert [type(e) for e in second.invoice] == [PaymentReceived, InvoicePaid]
    assert second.invoice[0] == PaymentReceived(
        order_id=ORDER,
        invoice_id=INVOICE_ID,
        reference="PAY-2",
        method="card",
        amount=Decimal("70.00"),
        amount_paid=Decimal("120.00"),
    )
    assert invoice_after(*history).status == "paid"


def test_failed_payment_leaves_the_invoice_open() -> None:
    invoice = invoice_after(*issued(issue_command()))

    decision = decide_payment(invoice, account_after(), payment("120.00", outcome="failed"))

    assert decision.invoice == [
        PaymentFailed(
            order_id=ORDER,
            invoice_id=INVOICE_ID,
            reference="PAY-1",
            method="card",
            amount=Decimal("120.00"),
        )
    ]
    assert invoice_after(*issued(issue_command()), *decision.invoice).status == "open"


def test_payment_over_the_outstanding_amount_is_refused() -> None:
    history = list(issued(issue_command()))  # total 120.00
    history += decide_payment(invoice_after(*history), account_after(), payment("100.00")).invoice

    with pytest.raises(InvalidRequest, match="exceeds the 20.00 still owed"):
        decide_payment(invoice_after(*history), account_after(), payment("20.01", "PAY-2"))


def test_payment_on_a_paid_invoice_is_refused() -> None:
    history = list(issued(issue_command()))
    history += decide_payment(invoice_after(*history), account_after(), payment("120.00")).invoice

    with pytest.raises(InvalidRequest, match="already paid in full"):
        decide_payment(invoice_after(*history), account_after(), payment("1.00", "PAY-2"))


def test_payment_amount_must_be_positive_whole_cents() -> None:
    invoice = invoice_after(*issued(issue_command()))

    for amount in ("0.00", "-5.00", "1.005"):
        with pytest.raises(InvalidRequest):
            decide_payment(invoice, account_after(), payment(amount))


def test_payment_for_an_order_without_invoice_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_payment(Invoice(), account_after(), payment("10.00"))


def test_payment_on_void_invoice_is_refunded() -> None:
    history = list(issued(issue_command()))
    history += decide_void(invoice_after(*history), account_after(), ORDER, "cancelled").invoice

    decision = decide_payment(invoice_after(*history), account_after(), payment("120.00", "LATE"))

    assert decision.invoice == [
        PaymentReceived(
            order_id=ORDER,
            invoice_id=INVOICE_ID,
            reference="LATE",
            method="card",
            amount=Decimal("120.00"),
            amount_paid=Decimal("120.00"),
        ),
        RefundIssued(
            order_id=ORDER,
            refund_id=refund_id_for(ORDER, "LATE"),
            invoice_id=INVOICE_ID,
            amount=Decimal("120.00"),
            reason="invoice void",
        ),
    ]


def test_late_payment_refund_and_void_refund_have_different_ids() -> None:
    assert refund_id_for(ORDER) != refund_id_for(ORDER, "LATE")
    assert refund_id_for(ORDER, "LATE") == refund_id_for(ORDER, "LATE")


def test_a_repeated_void_after_a_late_payment_refunds_nothing_more() -> None:
    history = list(issued(issue_command()))
    history += decide_void(invoice_after(*history), account_after(), ORDER, "cancelled").invoice
    history += decide_payment(invoice_after(*history), account_after(), payment("120.00")).invoice

    decision = decide_void(invoice_after(*history), account_after(), ORDER, "cancelled")

    assert [type(e) for e in decision.invoice] == [InvoiceVoided]


def test_on_account_payment_releases_the_credit_it_pays_off() -> None:
    invoice_events, charge = issued(issue_command(terms="on_account"))  # 120.00 charged

    decision = decide_payment(invoice_after(invoice_events), account_after(charge), payment("45.50"))

    assert decision.account == [CreditReleased(customer_id=CUSTOMER, order_id=ORDER, amount=Decimal("45.50"))]


def test_prepaid_payment_releases_no_credit() -> None:
    invoice = invoice_after(*issued(issue_command()))

    decision = decide_payment(invoice, account_after(), payment("120.00"))

    assert decision.account == []


def test_the_same_payment_reported_again_is_a_repeat() -> None:
    check_repeated_payment(payment("10.00"), payment("10"))


@pytest.mark.parametrize(
    "again",
    [payment("10.01"), payment("10.00", outcome="failed"), replace(payment("10.00"), method="wire")],
    ids=["amount", "outcome", "method"],
)
def test_another_payment_under_a_used_reference_is_refused_naming_both(again: PaymentAttempt) -> None:
    with pytest.raises(
        DomainError, match="payment reference PAY-1 was already used for a succeeded card"
    ) as refused:
        check_repeated_payment(payment("10.00"), again)

    assert refused.value.code == "payment_reference_reused" and refused.value.status == 409
    assert f"this request says {again}" in refused.value.message
