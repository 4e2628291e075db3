"""Issuing and voiding invoices: pricing, credit checks, and the saga's compensation."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from libs.events.billing import (
    CreditCharged,
    CreditCheckFailed,
    CreditLimitSet,
    CreditReleased,
    InvoiceIssued,
    InvoiceVoided,
    RefundIssued,
)
from services.billing.domain.invoice import (
    Invoice,
    decide_issue,
    decide_payment,
    decide_void,
    invoice_id_for,
)
from services.billing.domain.policy import price
from services.billing.domain.tax import TaxRates
from services.billing.settings import BillingSettings
from services.billing.tests.examples import (
    CUSTOMER,
    DUE,
    ORDER,
    POLICY,
    account_after,
    invoice_after,
    issue_command,
    issued,
    line,
    payment,
)

# -- pricing ------------------------------------------------------------------------------


def test_tax_and_shipping_fee() -> None:
    lines = (line("SKU-1", 2, "10.00"), line("SKU-2", 1, "5.55"))

    charges = price(issue_command(*lines, shipping="express"), POLICY)

    assert charges.subtotal == Decimal("25.55")
    assert charges.shipping_fee == Decimal("14.90")
    assert charges.tax == Decimal("8.09")  # 20% of 40.45, shipping included
    assert charges.total == Decimal("48.54")


def test_tax_is_rounded_half_up_to_the_cent() -> None:
    policy = replace(POLICY, tax=TaxRates.flat(Decimal("0.15")))

    charges = price(issue_command(line("SKU-1", 1, "0.30")), policy)

    assert charges.tax == Decimal("0.05")  # 0.045: half up, not half to even


def test_each_shipping_method_has_its_own_fee() -> None:
    fees = {
        method: price(issue_command(line("SKU-1", 1, "1.00"), shipping=method), POLICY).shipping_fee
        for method in ("standard", "express", "pickup")
    }

    assert fees == {
        "standard": Decimal("4.90"),
        "express": Decimal("14.90"),
        "pickup": Decimal("0.00"),
    }


# -- issuing ------------------------------------------------------------------------------


def test_prepaid_order_gets_an_invoice_due_when_the_saga_said() -> None:
    command = issue_command(line("SKU-1", 3, "10.00"), shipping="standard")

    decision = decide_issue(Invoice(), command, account_after(), POLICY)

    [issued_event] = decision.invoice
    assert isinstance(issued_event, InvoiceIssued)
    assert issued_event.invoice_id == invoice_id_for(ORDER)
    assert issued_event.total == Decimal("41.88")  # (30.00 + 4.90) * 1.2
    assert issued_event.due_at == DUE
    assert decision.account == []  # prepaid orders use no credit


def test_invoice_id_is_derived_from_the_order_so_a_replay_names_the_same_invoice() -> None:
    assert invoice_id_for(ORDER) == invoice_id_for(ORDER)
    assert invoice_id_for(ORDER) != invoice_id_for("ORD-2")
    assert invoice_id_for(ORDER).startswith("INV-") and len(invoice_id_for(ORDER)) == 16


def test_a_repeated_issue_command_does_nothing() -> None:
    command = issue_command()
    invoice = invoice_after(*issued(command)[:1])

    decision = decide_issue(invoice, command, account_after(), POLICY)

    assert decision.invoice == [] and decision.account == []


def test_on_account_order_within_the_limit_charges_the_account() -> None:
    command = issue_command(line("SKU-1", 1, "100.00"), terms="on_account")

    decision = decide_issue(Invoice(), command, account_after(), POLICY)

    assert [type(e) for e in decision.invoice] == [InvoiceIssued]
    assert decision.account == [CreditCharged(customer_id=CUSTOMER, order_id=ORDER, amount=Decimal("120.00"))]


def test_on_account_order_over_the_credit_limit_gets_no_invoice() -> None:
    account = account_after(
        CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("500.00")),
        CreditCharged(customer_id=CUSTOMER, order_id="ORD-0", amount=Decimal("400.00")),
    )
    command = issue_command(line("SKU-1", 1, "100.00"), terms="on_account")  # 120.00

    decision = decide_issue(Invoice(), command, account, POLICY)

    assert decision.invoice == [
        CreditCheckFailed(
            order_id=ORDER,
            customer_id=CUSTOMER,
            amount=Decimal("120.00"),
            open_balance=Decimal("400.00"),
            credit_limit=Decimal("500.00"),
        )
    ]
    assert decision.account == []


def test_an_order_exactly_at_the_credit_limit_is_accepted() -> None:
    account = account_after(CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("120.00")))
    command = issue_command(line("SKU-1", 1, "100.00"), terms="on_account")

    decision = decide_issue(Invoice(), command, account, POLICY)

    assert [type(e) for e in decision.invoice] == [InvoiceIssued]


def test_without_a_limit_set_the_default_credit_limit_applies() -> None:
    command = issue_command(line("SKU-1", 1, "9000.00"), terms="on_account")  # 10800.00

    decision = decide_issue(Invoice(), command, account_after(), POLICY)

    [refused] = decision.invoice
    assert isinstance(refused, CreditCheckFailed)
    assert refused.credit_limit == Decimal("10000.00")


def test_by_default_a_customer_without_credit_granted_by_finance_cannot_buy_on_account() -> None:
    shipped = BillingSettings().policy()
    command = issue_command(line("SKU-1", 1, "0.01"), terms="on_account")

    refused = decide_issue(Invoice(), command, account_after(), shipped)
    granted = account_after(CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("100.00")))
    issued_once_granted = decide_issue(Invoice(), command, granted, shipped)

    assert refused.invoice == [
        CreditCheckFailed(
            order_id=ORDER,
            customer_id=CUSTOMER,
            amount=Decimal("0.01"),
            open_balance=Decimal("0"),
            credit_limit=Decimal("0"),
        )
    ]
    assert [type(e) for e in issued_once_granted.invoice] == [InvoiceIssued]


def test_released_credit_makes_room_for_new_orders() -> None:
    account = account_after(
        CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("200.00")),
        CreditCharged(customer_id=CUSTOMER, order_id="ORD-0", amount=Decimal("150.00")),
        CreditReleased(customer_id=CUSTOMER, order_id="ORD-0", amount=Decimal("150.00")),
    )
    command = issue_command(line("SKU-1", 1, "100.00"), terms="on_account")

    decision = decide_issue(Invoice(), command, account, POLICY)

    assert [type(e) for e in decision.invoice] == [InvoiceIssued]


def test_after_a_failed_credit_check_a_redelivered_command_is_not_invoiced() -> None:
    command = issue_command(line("SKU-1", 1, "9000.00"), terms="on_account")
    refused = decide_issue(Invoice(), command, account_after(), POLICY).invoice
    richer_account = account_after(CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("99999.00")))

    decision = decide_issue(invoice_after(*refused), command, richer_account, POLICY)

    assert decision.invoice == [] and decision.account == []


# -- voiding ------------------------------------------------------------------------------


def test_void_without_invoice_still_answers() -> None:
    decision = decide_void(Invoice(), account_after(), ORDER, "order cancelled")

    assert decision.invoice == [InvoiceVoided(order_id=ORDER, invoice_id=None, reason="order cancelled")]
    assert decision.account == []


def test_an_order_voided_before_its_invoice_is_never_invoiced() -> None:
    voided = decide_void(Invoice(), account_after(), ORDER, "order cancelled").invoice

    decision = decide_issue(invoice_after(*voided), issue_command(), account_after(), POLICY)

    assert decision.invoice == [] and decision.account == []


def test_void_of_an_unpaid_invoice_refunds_nothing() -> None:
    invoice = invoice_after(*issued(issue_command()))

    decision = decide_void(invoice, account_after(), ORDER, "out of stock")

    assert decision.invoice == [
        InvoiceVoided(order_id=ORDER, invoice_id=invoice_id_for(ORDER), reason="out of stock")
    ]
    assert decision.account == []


def test_void_after_payment_refunds_exactly_what_was_paid_once() -> None:
    history = list(issued(issue_command()))  # total 120.00
    invoice = invoice_after(*history)
    history += decide_payment(invoice, account_after(), payment("70.00")).invoice

    first = decide_void(invoice_after(*history), account_after(), ORDER, "out of stock")
    history += first.invoice
    again = decide_void(invoice_after(*history), account_after(), ORDER, "out of stock")

    refunds = [e for e in first.invoice + again.invoice if isinstance(e, RefundIssued)]
    assert [refund.amount for refund in refunds] == [Decimal("70.00")]
    assert [type(e) for e in again.invoice] == [InvoiceVoided]


def test_void_of_an_on_account_invoice_releases_the_credit_still_held() -> None:
    invoice_events, charge = issued(issue_command(terms="on_account"))  # 120.00 charged
    account = account_after(charge)
    paid_part = decide_payment(invoice_after(invoice_events), account, payment("20.00"))
    account = account_after(charge, *paid_part.account)

    decision = decide_void(invoice_after(invoice_events, *paid_part.invoice), account, ORDER, "x")

    assert decision.account == [
        CreditReleased(customer_id=CUSTOMER, order_id=ORDER, amount=Decimal("100.00"))
    ]
    assert account_after(charge, *paid_part.account, *decision.account).open_balance == 0


def test_void_after_a_failed_credit_check_answers_without_invoice() -> None:
    refused = decide_issue(
        Invoice(),
        issue_command(line("SKU-1", 1, "9000.00"), terms="on_account"),
        account_after(),
        POLICY,
    ).invoice

    decision = decide_void(invoice_after(*refused), account_after(), ORDER, "credit refused")

    assert decision.invoice == [InvoiceVoided(order_id=ORDER, invoice_id=None, reason="credit refused")]
