"""Money going back after the sale: a return's credit note (and the refund of what was paid
for its lines), and finance's goodwill refunds.

The rule both keep: a refund is never larger than what was paid and not yet refunded
(Invoice.refundable), whoever asks and however often. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import NAMESPACE_URL, uuid5

from libs.domain import DomainError, InvalidRequest, NotFound
from libs.events.base import DomainEvent
from libs.events.billing import CreditNoteIssued, IssueReturnCredit, RefundIssued
from libs.events.values import SkuQuantity
from services.billing.domain.invoice import ZERO, Decision, Invoice, refund_id_for
from services.billing.domain.money import in_smallest_units, rounded


def credit_note_id_for(order_id: str, return_id: str) -> str:
    """Derived from the return, so a redelivered command names the same credit note."""
    return "CN-" + uuid5(NAMESPACE_URL, f"credit-note:{order_id}:{return_id}").hex[:12].upper()


def goodwill_refund_id(order_id: str, idempotency_key: str) -> str:
    return refund_id_for(order_id, f"goodwill:{idempotency_key}")


@dataclass(frozen=True)
class Portion:
    """Units taken from one invoice line, at what they were invoiced at: `gross` (tax
    included) and its `net` and `tax` (None on lines issued before tax per line)."""

    index: int  # of the line in the invoice's lines
    quantity: int
    gross: Decimal
    net: Decimal | None
    tax: Decimal | None


def portions(invoice: Invoice, sku: str, quantity: int) -> list[Portion]:
    """Where `quantity` more units of `sku` come from on the invoice, after the units credited
    before: lines are taken in order, the credited units counted off the first ones; a line's
    units are valued at its gross (else its price) over its quantity, rounded to the
    currency's smallest unit, and all of a line is exactly its gross."""
    skip = invoice.credited_units.get(sku, 0)
    left = quantity
    taken: list[Portion] = []
    for index, line in enumerate(invoice.lines):
        if line.sku != sku or left == 0:
            continue
        available = line.quantity - min(skip, line.quantity)
        skip = max(skip - line.quantity, 0)
        take = min(available, left)
        if take <= 0:
            continue
        whole = line.gross if line.gross is not None else line.unit_price * line.quantity
        gross = _share(whole, take, line.quantity, invoice.currency)
        net = None if line.net is None else _share(line.net, take, line.quantity, invoice.currency)
        taken.append(Portion(index, take, gross, net, None if net is None else gross - net))
        left -= take
    return taken


def _share(amount: Decimal, part: int, whole: int, currency: str) -> Decimal:
    if part == whole:
        return amount
    return rounded(amount * part / whole, currency)


def line_value(invoice: Invoice, sku: str, quantity: int) -> tuple[int, Decimal]:
    """What `quantity` more units of `sku` were invoiced at (tax included), after the units
    credited before: (units that can still be credited, their value); see `portions`."""
    taken = portions(invoice, sku, quantity)
    return sum(p.quantity for p in taken), sum((p.gross for p in taken), ZERO)


def decide_return_credit(invoice: Invoice, command: IssueReturnCredit) -> Decision:
    """Credit the received lines (never more units than were invoiced, counting earlier
    credit notes) and refund what was paid for them, at most what was paid and not yet
    refunded; what is left of the credit lowers what is still owed. Once per return."""
    if invoice.invoice_id is None:
        raise NotFound("unknown_invoice", f"order {command.order_id!r} has no invoice to credit")
    if command.return_id in invoice.credited_returns:
        return Decision()
    lines: list[SkuQuantity] = []
    amount = ZERO
    for line in command.lines:
        units, value = line_value(invoice, line.sku, line.quantity)
        if units:
            lines.append(SkuQuantity(sku=line.sku, quantity=units))
            amount += value
    refund_amount = min(amount, max(invoice.refundable, ZERO))
    credit_note_id = credit_note_id_for(command.order_id, command.return_id)
    refund_id = refund_id_for(command.order_id, f"return:{command.return_id}") if refund_amount > 0 else None
    events: list[DomainEvent] = [
        CreditNoteIssued(
            order_id=command.order_id,
            credit_note_id=credit_note_id,
            invoice_id=invoice.invoice_id,
            return_id=command.return_id,
            lines=tuple(lines),
            amount=amount,
            refund_amount=refund_amount,
            refund_id=refund_id,
            reason=command.reason,
        )
    ]
    if refund_id is not None:
        events.append(
            RefundIssued(
                order_id=command.order_id,
                refund_id=refund_id,
                invoice_id=invoice.invoice_id,
                amount=refund_amount,
                reason=command.reason,
                credit_note_id=credit_note_id,
            )
        )
    return Decision(invoice=events)


def decide_goodwill_refund(
    invoice: Invoice, order_id: str, amount: Decimal, reason: str, refund_id: str
) -> Decision:
    """Finance gives money back as a gesture: never more than was paid and not yet refunded
    (409 naming that limit). The same refund id again changes nothing."""
    if invoice.invoice_id is None:
        raise NotFound("unknown_invoice", f"order {order_id!r} has no invoice: nothing was paid to refund")
    if refund_id in invoice.refund_ids:
        return Decision()
    if amount <= 0:
        raise InvalidRequest("invalid_amount", "amount: a refund must be positive")
    if not in_smallest_units(amount, invoice.currency):
        raise InvalidRequest(
            "invalid_amount",
            f"amount: a refund must be a whole number of the smallest unit of {invoice.currency}:"
            f" {amount} is not",
        )
    limit = max(invoice.refundable, ZERO)
    if amount > limit:
        raise DomainError(
            "refund_limit",
            f"amount: at most {limit:.2f} {invoice.currency} can be refunded for order {order_id}"
            f" (paid {invoice.amount_paid:.2f}, refunded {invoice.amount_refunded:.2f});"
            f" {amount:.2f} was asked",
        )
    refund = RefundIssued(
        order_id=order_id,
        refund_id=refund_id,
        invoice_id=invoice.invoice_id,
        amount=amount,
        reason=f"goodwill: {reason}",
    )
    return Decision(invoice=[refund])
