"""An order's invoice: issued (after a credit check for on-account orders), paid in one or
more payments, voided by the order saga's compensation, with refunds for money kept.

Pure: no I/O, no clock. `decide_*` functions return a Decision (the events for the invoice
stream and for the customer's account stream, recorded in one transaction); `evolve` folds
an event into the invoice's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal
from uuid import NAMESPACE_URL, uuid5

from libs.domain import AggregateKind, DomainError, InvalidRequest, NotFound
from libs.events.base import DomainEvent
from libs.events.billing import (
    CreditCheckFailed,
    CreditNoteIssued,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceLine,
    InvoicePaid,
    InvoiceVoided,
    IssueInvoice,
    MoveInvoiceLines,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
)
from services.billing.domain.account import CustomerAccount, decide_charge, decide_release
from services.billing.domain.money import in_smallest_units
from services.billing.domain.policy import BillingPolicy, Charges, price

ZERO = Decimal("0.00")

# "new": nothing decided yet; "refused": the credit check failed, so no invoice exists;
# "merged": closed into another order's invoice, which took its lines and its money.
Status = Literal["new", "open", "paid", "void", "refused", "merged"]
PaymentOutcome = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class Invoice:
    order_id: str = ""
    status: Status = "new"
    invoice_id: str | None = None
    customer_id: str = ""
    currency: str = ""
    payment_terms: str = "prepaid"
    total: Decimal = ZERO
    subtotal: Decimal = ZERO
    tax: Decimal = ZERO
    shipping_fee: Decimal = ZERO
    # Received on this invoice (payments, and money moved in from a split or merged order),
    # less what was moved on to another order's invoice.
    amount_paid: Decimal = ZERO
    lines: tuple[InvoiceLine, ...] = ()
    # Refunds (a void's, a late payment's, a return's, an amendment's, goodwill): what went
    # back, by id.
    amount_refunded: Decimal = ZERO
    refund_ids: frozenset[str] = frozenset()
    # Refunds that pay out a credit note (a return's, an amendment's, a merge's excess): they
    # give back money paid for goods no longer charged, so what is owed counts them. The
    # others (goodwill, a void's) are not paid back for goods and leave it as it was.
    paid_back: Decimal = ZERO
    # Credit notes (returns): units credited per SKU, the returns credited, and their amounts
    # (they lower what is owed; the part refunded is in `paid_back`).
    credited_units: dict[str, int] = field(default_factory=dict)
    credited_returns: frozenset[str] = frozenset()
    credited: Decimal = ZERO
    # Amendments and moves (split, merge) applied, by id: a repeated one changes nothing.
    changes_applied: frozenset[str] = frozenset()
    merged_into: str | None = None

    @property
    def outstanding(self) -> Decimal:
        return self.owed_at(self.total)

    def owed_at(self, total: Decimal) -> Decimal:
        """What would still be owed if the invoice's total were `total` (negative: paid beyond it)."""
        return total - self.credited - (self.amount_paid - self.paid_back)

    @property
    def refundable(self) -> Decimal:
        """Paid and not yet refunded: no refund may ever be larger."""
        return self.amount_paid - self.amount_refunded


def evolve(state: Invoice, event: DomainEvent) -> Invoice:
    if isinstance(event, InvoiceIssued):
        return replace(
            state,
            order_id=event.order_id,
            status="open",
            invoice_id=event.invoice_id,
            customer_id=event.customer_id,
            currency=event.currency,
            payment_terms=event.payment_terms,
            total=event.total,
            subtotal=event.subtotal,
            tax=event.tax,
            shipping_fee=event.shipping_fee,
            lines=event.lines,
        )
    if isinstance(event, RefundIssued):
        return replace(
            state,
            amount_refunded=state.amount_refunded + event.amount,
            refund_ids=state.refund_ids | {event.refund_id},
            paid_back=state.paid_back + (event.amount if event.credit_note_id else ZERO),
        )
    if isinstance(event, InvoiceAdjusted):
        return replace(
            state,
            lines=event.lines,
            total=event.total,
            subtotal=state.subtotal if event.subtotal is None else event.subtotal,
            tax=state.tax if event.tax is None else event.tax,
            shipping_fee=state.shipping_fee if event.shipping_fee is None else event.shipping_fee,
            amount_paid=event.amount_paid,
            status=state.status if event.status is None else event.status,
            merged_into=event.moved_to if event.status == "merged" else state.merged_into,
            changes_applied=state.changes_applied | {event.amendment_id},
        )
    if isinstance(event, CreditNoteIssued):
        units = dict(state.credited_units)
        for line in event.lines:
            units[line.sku] = units.get(line.sku, 0) + line.quantity
        returns = state.credited_returns | ({event.return_id} if event.return_id else set())
        return replace(
            state,
            credited_units=units,
            credited_returns=returns,
            credited=state.credited + event.amount,
        )
    if isinstance(event, CreditCheckFailed):
        return replace(state, order_id=event.order_id, status="refused", customer_id=event.customer_id)
    if isinstance(event, PaymentReceived):
        return replace(state, amount_paid=event.amount_paid)
    if isinstance(event, InvoicePaid):
        return replace(state, status="paid")
    if isinstance(event, InvoiceVoided):
        return replace(state, order_id=event.order_id, status="void")
    return state


INVOICE = AggregateKind[Invoice]("invoice", Invoice, evolve)


def invoice_id_for(order_id: str) -> str:
    """Derived from the order id, so a replayed IssueInvoice names the same invoice."""
    return "INV-" + uuid5(NAMESPACE_URL, f"invoice:{order_id}").hex[:12].upper()


def refund_id_for(order_id: str, payment_reference: str | None = None) -> str:
    """The void's refund is one per order; a payment arriving after the void gets its own."""
    key = f"refund:{order_id}" + (f":{payment_reference}" if payment_reference else "")
    return "RFD-" + uuid5(NAMESPACE_URL, key).hex[:12].upper()


@dataclass(frozen=True)
class Decision:
    """Events to append: to the invoice's stream, and to its customer's account stream."""

    invoice: list[DomainEvent] = field(default_factory=list)
    account: list[DomainEvent] = field(default_factory=list)


@dataclass(frozen=True)
class PaymentAttempt:
    """What the payment gateway reports about one payment, identified by its reference."""

    order_id: str
    reference: str
    method: str
    amount: Decimal
    outcome: PaymentOutcome

    def __str__(self) -> str:
        return f"a {self.outcome} {self.method} payment of {self.amount:.2f} for order {self.order_id}"


def check_repeated_payment(applied: PaymentAttempt, again: PaymentAttempt) -> None:
    """A payment reference names one payment. Reported again as it was, it is the gateway's
    retry and changes nothing; reported as another payment, it must not be dropped unheard."""
    if (applied.order_id, applied.method, applied.amount, applied.outcome) != (
        again.order_id,
        again.method,
        again.amount,
        again.outcome,
    ):
        raise DomainError(
            "payment_reference_reused",
            f"payment reference {again.reference} was already used for {applied}; this request says {again}",
        )


def decide_issue(
    invoice: Invoice, command: IssueInvoice, account: CustomerAccount, policy: BillingPolicy
) -> Decision:
    # Refused for credit, the invoice is issued after all when finance overrides the limit.
    overriding = invoice.status == "refused" and command.credit_limit_overridden_by is not None
    if invoice.status != "new" and not overriding:
        return Decision()  # already answered (issued, refused or voided): a redelivery
    charges = price(command, policy)
    charge: list[DomainEvent] = []
    if command.payment_terms == "on_account":
        credit_limit = account.credit_limit_or(policy.default_credit_limit_in(command.currency))
        charged = decide_charge(
            account,
            command.customer_id,
            command.order_id,
            charges.total,
            credit_limit,
            command.credit_limit_overridden_by,
        )
        if charged is None:
            refused = CreditCheckFailed(
                order_id=command.order_id,
                customer_id=command.customer_id,
                amount=charges.total,
                open_balance=account.open_balance,
                credit_limit=credit_limit,
            )
            return Decision(invoice=[refused])
        charge = charged
    return Decision(invoice=[invoice_issued(command, charges)], account=charge)


def invoice_issued(command: IssueInvoice | MoveInvoiceLines, charges: Charges) -> InvoiceIssued:
    """The order's invoice as priced: a new order's, or a merged order's worked out anew."""
    return InvoiceIssued(
        order_id=command.order_id,
        invoice_id=invoice_id_for(command.order_id),
        customer_id=command.customer_id,
        currency=command.currency,
        lines=charges.lines,
        subtotal=charges.subtotal,
        tax=charges.tax,
        shipping_fee=charges.shipping_fee,
        shipping_rule=charges.shipping_rule,
        shipping_tax=charges.shipping_tax,
        tax_rule=charges.tax_rule,
        prices_include_tax=charges.prices_include_tax,
        total=charges.total,
        payment_terms=command.payment_terms,
        due_at=command.due_at,
    )


def decide_payment(invoice: Invoice, account: CustomerAccount, attempt: PaymentAttempt) -> Decision:
    invoice_id = invoice.invoice_id
    if invoice_id is None:
        raise NotFound("unknown_invoice", f"order {attempt.order_id!r} has no invoice to pay")
    if attempt.amount <= 0:
        raise InvalidRequest("invalid_amount", "a payment's amount must be positive")
    currency = invoice.currency
    if not in_smallest_units(attempt.amount, currency):
        raise InvalidRequest(
            "invalid_amount",
            f"a payment's amount must be a whole number of the smallest unit of {currency},"
            f" the invoice's currency: {attempt.amount} is not",
        )
    if attempt.outcome == "failed":
        failed = PaymentFailed(
            order_id=attempt.order_id,
            invoice_id=invoice_id,
            reference=attempt.reference,
            method=attempt.method,
            amount=attempt.amount,
        )
        return Decision(invoice=[failed])
    received = PaymentReceived(
        order_id=attempt.order_id,
        invoice_id=invoice_id,
        reference=attempt.reference,
        method=attempt.method,
        amount=attempt.amount,
        amount_paid=invoice.amount_paid + attempt.amount,
    )
    if invoice.status in ("void", "merged"):
        # The money arrived after the order was cancelled, or merged into another whose
        # invoice already took what its customer paid: book it, and give it straight back.
        refund = RefundIssued(
            order_id=attempt.order_id,
            refund_id=refund_id_for(attempt.order_id, attempt.reference),
            invoice_id=invoice_id,
            amount=attempt.amount,
            reason="invoice void"
            if invoice.status == "void"
            else f"invoice merged into order {invoice.merged_into}'s: pay that one",
        )
        return Decision(invoice=[received, refund])
    if invoice.status == "paid":
        raise InvalidRequest("invoice_already_paid", f"invoice {invoice_id} is already paid in full")
    if attempt.amount > invoice.outstanding:
        raise InvalidRequest(
            "overpayment",
            f"a payment of {attempt.amount} exceeds the {invoice.outstanding} still owed"
            f" on invoice {invoice_id}",
        )
    events: list[DomainEvent] = [received]
    if attempt.amount == invoice.outstanding:
        events.append(
            InvoicePaid(order_id=attempt.order_id, invoice_id=invoice_id, amount_paid=received.amount_paid)
        )
    release = decide_release(account, invoice.customer_id, attempt.order_id, attempt.amount)
    return Decision(invoice=events, account=release)


def decide_void(invoice: Invoice, account: CustomerAccount, order_id: str, reason: str) -> Decision:
    """Always answers InvoiceVoided, so the saga's compensation completes; refunds and
    releases credit only the first time, when the invoice is still open or paid."""
    voided = InvoiceVoided(order_id=order_id, invoice_id=invoice.invoice_id, reason=reason)
    if invoice.invoice_id is None or invoice.status == "void":
        return Decision(invoice=[voided])
    events: list[DomainEvent] = [voided]
    if invoice.refundable > 0:  # what an earlier refund (goodwill) gave back is not given twice
        events.append(
            RefundIssued(
                order_id=order_id,
                refund_id=refund_id_for(order_id),
                invoice_id=invoice.invoice_id,
                amount=invoice.refundable,
                reason=reason,
            )
        )
    release = decide_release(account, invoice.customer_id, order_id, account.held_by(order_id))
    return Decision(invoice=events, account=release)
