"""Finance overrides the credit limit for one order: billing issues the invoice it refused and
charges the credit anyway, recording the override beside the charge."""

from __future__ import annotations

from decimal import Decimal

from libs.events.billing import (
    CreditCharged,
    CreditCheckFailed,
    CreditLimitOverridden,
    CreditLimitSet,
    InvoiceIssued,
)
from services.billing.domain.invoice import decide_issue
from services.billing.tests.examples import (
    CUSTOMER,
    ORDER,
    POLICY,
    account_after,
    invoice_after,
    issue_command,
)

LIMIT = CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("100.00"))


def test_an_invoice_refused_for_credit_is_issued_when_finance_overrides_and_the_credit_is_charged() -> None:
    command = issue_command(terms="on_account")  # 120.00 against a limit of 100.00
    account = account_after(LIMIT)
    refused = decide_issue(invoice_after(), command, account, POLICY).invoice
    assert [type(e) for e in refused] == [CreditCheckFailed]

    overridden = command.model_copy(update={"credit_limit_overridden_by": "user:fiona"})
    decision = decide_issue(invoice_after(*refused), overridden, account, POLICY)

    assert [type(e) for e in decision.invoice] == [InvoiceIssued]
    assert decision.account == [
        CreditLimitOverridden(
            customer_id=CUSTOMER,
            order_id=ORDER,
            amount=Decimal("120.00"),
            open_balance=Decimal("0.00"),
            credit_limit=Decimal("100.00"),
            approved_by="user:fiona",
        ),
        CreditCharged(customer_id=CUSTOMER, order_id=ORDER, amount=Decimal("120.00")),
    ]
    assert account_after(LIMIT, *decision.account).open_balance == Decimal("120.00")


def test_an_override_within_the_limit_is_a_plain_charge_with_no_override_recorded() -> None:
    # The customer paid something back meanwhile: no limit is overridden, so none is recorded.
    generous = CreditLimitSet(customer_id=CUSTOMER, credit_limit=Decimal("500.00"))
    command = issue_command(terms="on_account", order_id=ORDER)
    refused = [
        CreditCheckFailed(
            order_id=ORDER,
            customer_id=CUSTOMER,
            amount=Decimal("120.00"),
            open_balance=Decimal("0.00"),
            credit_limit=Decimal("100.00"),
        )
    ]
    overridden = command.model_copy(update={"credit_limit_overridden_by": "user:fiona"})

    decision = decide_issue(invoice_after(*refused), overridden, account_after(generous), POLICY)

    assert [type(e) for e in decision.account] == [CreditCharged]


def test_the_override_delivered_again_after_the_invoice_was_issued_changes_nothing() -> None:
    command = issue_command(terms="on_account").model_copy(
        update={"credit_limit_overridden_by": "user:fiona"}
    )
    account = account_after(LIMIT)
    first = decide_issue(invoice_after(), command, account, POLICY)

    again = decide_issue(invoice_after(*first.invoice), command, account_after(LIMIT, *first.account), POLICY)

    assert (again.invoice, again.account) == ([], [])


def test_without_an_override_a_refused_invoice_stays_refused() -> None:
    command = issue_command(terms="on_account")
    account = account_after(LIMIT)
    refused = decide_issue(invoice_after(), command, account, POLICY).invoice

    again = decide_issue(invoice_after(*refused), command, account, POLICY)

    assert (again.invoice, again.account) == ([], [])
