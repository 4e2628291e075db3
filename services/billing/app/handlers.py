"""Billing use cases: each loads the order's invoice and its customer's account, asks the
domain, and records the events in the caller's unit of work (one transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import NAMESPACE_URL, uuid5

from libs.events import Decoded
from libs.events.billing import (
    AdjustInvoice,
    IssueInvoice,
    IssueReturnCredit,
    MoveInvoiceLines,
    PaymentFailed,
    PaymentReceived,
    VoidInvoice,
)
from libs.runtime import inbox
from libs.runtime.uow import UnitOfWork
from services.billing.adapters import queries
from services.billing.domain.account import ACCOUNT, CustomerAccount, decide_credit_limit
from services.billing.domain.amendments import decide_adjustment, decide_move
from services.billing.domain.invoice import (
    INVOICE,
    Decision,
    Invoice,
    PaymentAttempt,
    PaymentOutcome,
    check_repeated_payment,
    decide_issue,
    decide_payment,
    decide_void,
)
from services.billing.domain.invoice import evolve as evolve_invoice
from services.billing.domain.policy import BillingPolicy
from services.billing.domain.refunds import decide_goodwill_refund, decide_return_credit


@dataclass(frozen=True)
class OrderBilling:
    """An order's invoice and its customer's account, with the versions they were loaded at."""

    order_id: str
    invoice: Invoice
    invoice_version: int
    customer_id: str
    account: CustomerAccount
    account_version: int

    async def record(self, uow: UnitOfWork, decision: Decision) -> None:
        if decision.account:
            await uow.record(ACCOUNT, self.customer_id, self.account_version, decision.account)
        if decision.invoice:
            await uow.record(INVOICE, self.order_id, self.invoice_version, decision.invoice)


async def load_billing(uow: UnitOfWork, order_id: str, customer_id: str | None = None) -> OrderBilling:
    """Load the invoice, then the account of `customer_id` or else of the invoice's customer."""
    invoice, invoice_version = await uow.load(INVOICE, order_id)
    customer_id = customer_id or invoice.customer_id
    account, account_version = await uow.load(ACCOUNT, customer_id) if customer_id else (CustomerAccount(), 0)
    return OrderBilling(order_id, invoice, invoice_version, customer_id, account, account_version)


async def preload(uow: UnitOfWork, batch: Sequence[Decoded]) -> None:
    """The invoices and accounts a batch of billing commands will load, in two round trips."""
    commands = [d.message for d in batch if isinstance(d.message, IssueInvoice | VoidInvoice)]
    await uow.preload(INVOICE, [c.order_id for c in commands])
    await uow.preload(ACCOUNT, [c.customer_id for c in commands if isinstance(c, IssueInvoice)])


async def issue_invoice(uow: UnitOfWork, decoded: Decoded, policy: BillingPolicy) -> None:
    command = decoded.message
    if not isinstance(command, IssueInvoice):  # routed by type, so a bug if it happens
        raise TypeError(f"issue_invoice was given a {type(command).__name__}")
    billing = await load_billing(uow, command.order_id, command.customer_id)
    await billing.record(uow, decide_issue(billing.invoice, command, billing.account, policy))


async def void_invoice(uow: UnitOfWork, decoded: Decoded) -> None:
    command = decoded.message
    if not isinstance(command, VoidInvoice):  # routed by type, so a bug if it happens
        raise TypeError(f"void_invoice was given a {type(command).__name__}")
    billing = await load_billing(uow, command.order_id)
    await billing.record(uow, decide_void(billing.invoice, billing.account, command.order_id, command.reason))


async def record_payment(uow: UnitOfWork, attempt: PaymentAttempt) -> Invoice | None:
    """Apply the gateway's report once per payment reference: the invoice as it stands after
    it, or None if this reference was applied before."""
    claimed = await inbox.claim(uow.conn, "payments", uuid5(NAMESPACE_URL, f"payment:{attempt.reference}"))
    if not claimed:
        applied = _applied_in(uow, attempt.reference) or await queries.payment_attempt(
            uow.conn, attempt.reference
        )
        if applied is not None:
            check_repeated_payment(applied, attempt)
        return None
    billing = await load_billing(uow, attempt.order_id)
    decision = decide_payment(billing.invoice, billing.account, attempt)
    await billing.record(uow, decision)
    invoice = billing.invoice
    for event in decision.invoice:
        invoice = evolve_invoice(invoice, event)
    return invoice


def _applied_in(uow: UnitOfWork, reference: str) -> PaymentAttempt | None:
    """A payment applied earlier in this unit of work (a group of concurrent requests): not in
    the payments table until it flushes."""
    for event in uow.recorded:
        if isinstance(event, PaymentReceived | PaymentFailed) and event.reference == reference:
            outcome: PaymentOutcome = "succeeded" if isinstance(event, PaymentReceived) else "failed"
            return PaymentAttempt(event.order_id, reference, event.method, event.amount, outcome)
    return None


async def set_credit_limit(uow: UnitOfWork, customer_id: str, credit_limit: Decimal) -> bool:
    account, version = await uow.load(ACCOUNT, customer_id)
    events = decide_credit_limit(account, customer_id, credit_limit)
    await uow.record(ACCOUNT, customer_id, version, events)
    return bool(events)


async def issue_return_credit(uow: UnitOfWork, decoded: Decoded) -> None:
    """A return was received: its credit note, and the refund of what was paid for its lines."""
    command = decoded.message
    if not isinstance(command, IssueReturnCredit):  # routed by type, so a bug if it happens
        raise TypeError(f"issue_return_credit was given a {type(command).__name__}")
    billing = await load_billing(uow, command.order_id)
    await billing.record(uow, decide_return_credit(billing.invoice, command))


async def refund_goodwill(
    uow: UnitOfWork, order_id: str, amount: Decimal, reason: str, refund_id: str
) -> Invoice:
    """Finance's goodwill refund (once per refund id): the invoice as it stands after it."""
    billing = await load_billing(uow, order_id)
    decision = decide_goodwill_refund(billing.invoice, order_id, amount, reason, refund_id)
    await billing.record(uow, decision)
    invoice = billing.invoice
    for event in decision.invoice:
        invoice = evolve_invoice(invoice, event)
    return invoice


async def adjust_invoice(uow: UnitOfWork, decoded: Decoded, policy: BillingPolicy) -> None:
    """An amendment: the invoice worked out again for the order's new lines (docs/billing.md)."""
    command = decoded.message
    if not isinstance(command, AdjustInvoice):  # routed by type, so a bug if it happens
        raise TypeError(f"adjust_invoice was given a {type(command).__name__}")
    billing = await load_billing(uow, command.order_id)
    await billing.record(uow, decide_adjustment(billing.invoice, command, billing.account, policy))


async def move_invoice_lines(uow: UnitOfWork, decoded: Decoded, policy: BillingPolicy) -> None:
    """A split or a merge: the target's invoice, the sources' and their customers' accounts
    change in one transaction, each stream checked at the version it was loaded at."""
    command = decoded.message
    if not isinstance(command, MoveInvoiceLines):  # routed by type, so a bug if it happens
        raise TypeError(f"move_invoice_lines was given a {type(command).__name__}")
    order_ids = [command.order_id, *(move.from_order_id for move in command.sources)]
    invoices = {order_id: await uow.load(INVOICE, order_id) for order_id in dict.fromkeys(order_ids)}
    customer_ids = {command.customer_id, *(invoice.customer_id for invoice, _ in invoices.values())} - {""}
    accounts = {customer_id: await uow.load(ACCOUNT, customer_id) for customer_id in sorted(customer_ids)}
    sources = {order_id: invoices[order_id][0] for order_id in order_ids[1:]}
    decision = decide_move(
        invoices[command.order_id][0],
        sources,
        command,
        {customer_id: account for customer_id, (account, _) in accounts.items()},
        policy,
    )
    for customer_id, events in decision.accounts.items():
        await uow.record(ACCOUNT, customer_id, accounts[customer_id][1], events)
    for order_id, events in decision.invoices.items():
        await uow.record(INVOICE, order_id, invoices[order_id][1], events)
