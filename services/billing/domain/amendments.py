"""The order desk's changes to invoices (docs/billing.md): an amendment (AdjustInvoice) works
an order's invoice out again for its new lines; a split or a merge (MoveInvoiceLines) moves
lines, with the money paid for them, from the sources' invoices to a new order's.

What each keeps: money is never created or lost (over the invoices a change touches, what was
paid and not refunded before is what is after plus what the change refunds); a refund is never
larger than what its invoice was paid and not yet refunded; a change applied once is never
applied again (its id is remembered on every invoice it touched). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal
from uuid import NAMESPACE_URL, uuid5

from libs.events.base import DomainEvent
from libs.events.billing import (
    AdjustInvoice,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
    InvoiceIssued,
    InvoiceLine,
    InvoicePaid,
    MoveInvoiceLines,
    PaymentReceived,
    RefundIssued,
)
from libs.events.values import SkuQuantity
from services.billing.domain.account import (
    CustomerAccount,
    decide_charge,
    decide_release,
    decide_transferred_charge,
)
from services.billing.domain.invoice import (
    ZERO,
    Decision,
    Invoice,
    invoice_id_for,
    invoice_issued,
    refund_id_for,
)
from services.billing.domain.policy import MAX_RULE_TEXT, BillingPolicy, price, price_in
from services.billing.domain.refunds import portions

TRANSFER_METHOD = "transfer"


def supplementary_invoice_id_for(order_id: str, change_id: str) -> str:
    """Derived from the order and the amendment, so a repeated command names the same document."""
    return "SUP-" + uuid5(NAMESPACE_URL, f"supplementary-invoice:{order_id}:{change_id}").hex[:12].upper()


def change_credit_note_id_for(order_id: str, change_id: str) -> str:
    """An amendment's, a split's or a merge's credit note on `order_id`'s invoice (a return's
    credit notes are named by refunds.credit_note_id_for: another key, so never the same id)."""
    return "CN-" + uuid5(NAMESPACE_URL, f"change-credit-note:{order_id}:{change_id}").hex[:12].upper()


def transfer_reference(move_id: str, from_order_id: str) -> str:
    """The PaymentReceived reference of money carried from one order's invoice to another's."""
    return f"transfer:{move_id}:{from_order_id}"


def _status_after(invoice: Invoice, owed: Decimal) -> tuple[Literal["open", "paid"], list[DomainEvent]]:
    """The status an issued invoice takes when `owed` is what it still owes, and the
    InvoicePaid an open invoice that owes nothing any more answers with."""
    if owed > 0:
        return "open", []
    if invoice.status == "open" and invoice.invoice_id is not None:
        paid = InvoicePaid(
            order_id=invoice.order_id, invoice_id=invoice.invoice_id, amount_paid=invoice.amount_paid
        )
        return "paid", [paid]
    return "paid", []


# -- amend ---------------------------------------------------------------------------------


def decide_adjustment(
    invoice: Invoice, command: AdjustInvoice, account: CustomerAccount, policy: BillingPolicy
) -> Decision:
    """Work the invoice out for the amendment's lines and shipping as IssueInvoice would, and
    keep the money paid: more is a supplementary invoice for the difference (on account, the
    credit check asks for the difference only); less is a credit note for it, and what was
    paid beyond the new total is refunded at once (never more than paid and not refunded).
    A goodwill refund before stays a gift: it is not counted as paying for the goods."""
    order_id, amendment_id = command.order_id, command.amendment_id
    if amendment_id in invoice.changes_applied:
        return Decision()  # applied before: a repeat (a redelivery or the saga's retry)
    credit_limit = account.credit_limit_or(policy.default_credit_limit_in(invoice.currency))
    if invoice.invoice_id is None or invoice.status not in ("open", "paid"):
        state = "no invoice issued" if invoice.invoice_id is None else f"the invoice is {invoice.status}"
        refused = InvoiceAdjustmentRefused(
            order_id=order_id,
            amendment_id=amendment_id,
            reason=f"order {order_id} cannot be amended in billing: {state}",
            amount=ZERO,
            open_balance=account.open_balance,
            credit_limit=credit_limit,
        )
        return Decision(invoice=[refused])
    charges = price_in(command, invoice.currency, policy)
    difference = charges.total - invoice.total
    on_account = invoice.payment_terms == "on_account"
    credit: list[DomainEvent] = []
    if on_account and difference > 0:
        charged = decide_charge(
            account,
            invoice.customer_id,
            order_id,
            difference,
            credit_limit,
            command.credit_limit_overridden_by,
        )
        if charged is None:
            refused = InvoiceAdjustmentRefused(
                order_id=order_id,
                amendment_id=amendment_id,
                reason=f"credit limit: {difference:.2f} more would take the open balance"
                f" {account.open_balance:.2f} over the limit {credit_limit:.2f}",
                amount=difference,
                open_balance=account.open_balance,
                credit_limit=credit_limit,
            )
            return Decision(invoice=[refused])
        credit = charged
    elif on_account and difference < 0:
        credit = decide_release(account, invoice.customer_id, order_id, -difference)
    document_id = None
    if difference > 0:
        document_id = supplementary_invoice_id_for(order_id, amendment_id)
    elif difference < 0:
        document_id = change_credit_note_id_for(order_id, amendment_id)
    refund = ZERO
    if difference < 0:
        refund = min(max(-invoice.owed_at(charges.total), ZERO), max(invoice.refundable, ZERO))
    refund_id = refund_id_for(order_id, f"amendment:{amendment_id}") if refund > 0 else None
    owed = replace(invoice, total=charges.total, paid_back=invoice.paid_back + refund).outstanding
    status, paid = _status_after(invoice, owed)
    events: list[DomainEvent] = [
        InvoiceAdjusted(
            order_id=order_id,
            invoice_id=invoice.invoice_id,
            amendment_id=amendment_id,
            document_id=document_id,
            lines=charges.lines,
            previous_total=invoice.total,
            total=charges.total,
            difference=difference,
            amount_paid=invoice.amount_paid,
            refund_id=refund_id,
            refund_amount=refund,
            subtotal=charges.subtotal,
            tax=charges.tax,
            shipping_fee=charges.shipping_fee,
            outstanding=max(owed, ZERO),
            status=status,
        )
    ]
    if refund_id is not None:
        events.append(
            RefundIssued(
                order_id=order_id,
                refund_id=refund_id,
                invoice_id=invoice.invoice_id,
                amount=refund,
                reason=f"amendment {amendment_id}: paid beyond the new total",
                credit_note_id=document_id,
            )
        )
    return Decision(invoice=[*events, *paid], account=credit)


# -- split and merge -------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveDecision:
    """Events to append per invoice stream (by order id) and per account stream (by customer)."""

    invoices: dict[str, list[DomainEvent]] = field(default_factory=dict)
    accounts: dict[str, list[DomainEvent]] = field(default_factory=dict)

    def add_account(self, customer_id: str, events: list[DomainEvent]) -> None:
        if events:
            self.accounts.setdefault(customer_id, []).extend(events)


@dataclass(frozen=True)
class _Moved:
    """A source after a move: its new lines and amounts, and the lines that left it."""

    lines: tuple[InvoiceLine, ...]
    total: Decimal
    subtotal: Decimal
    tax: Decimal
    shipping_fee: Decimal
    moved: tuple[InvoiceLine, ...]


def decide_move(
    target: Invoice,
    sources: Mapping[str, Invoice],
    command: MoveInvoiceLines,
    accounts: Mapping[str, CustomerAccount],
    policy: BillingPolicy,
) -> MoveDecision:
    """A split (the sources keep what was not moved) or a merge (the sources are closed): the
    target order is invoiced, and money paid on the sources beyond what they still charge is
    carried over as payments (method "transfer"). `sources` and `accounts` (the target's
    customer's and each source's) are keyed by order id and customer id."""
    target_id, move_id = command.order_id, command.move_id
    if any(move_id in source.changes_applied for source in sources.values()):
        return MoveDecision()  # applied before (each source remembers it): a repeat
    problem = _why_not(target, sources, command)
    if problem is not None:
        account = accounts.get(command.customer_id, CustomerAccount())
        refused = InvoiceAdjustmentRefused(
            order_id=target_id,
            amendment_id=move_id,
            reason=problem,
            amount=ZERO,
            open_balance=account.open_balance,
            credit_limit=account.credit_limit_or(policy.default_credit_limit_in(command.currency)),
        )
        return MoveDecision(invoices={target_id: [refused]})
    decision = MoveDecision()
    if command.kind == "split":
        afters = {m.from_order_id: _without_moved(sources[m.from_order_id], m.lines) for m in command.sources}
        issued = _split_target(command, afters, policy)
    else:
        afters = {m.from_order_id: _Moved((), ZERO, ZERO, ZERO, ZERO, ()) for m in command.sources}
        issued = _merged_target(command, policy)
    need = issued.total
    carried: list[tuple[str, Decimal]] = []
    for move in command.sources:
        source, after = sources[move.from_order_id], afters[move.from_order_id]
        if command.kind == "split":
            # What it was paid beyond what it still charges (and still holds), up to what the
            # target is invoiced for.
            beyond = -source.owed_at(after.total)
            transferred = min(max(beyond, ZERO), max(source.refundable, ZERO), need)
        else:
            transferred = max(source.refundable, ZERO)  # all it holds: the target charges it all
        need = max(need - transferred, ZERO)
        carried.append((move.from_order_id, transferred))
        decision.invoices[move.from_order_id] = _source_events(source, after, command, transferred)
        if source.payment_terms == "on_account":
            account = accounts.get(source.customer_id, CustomerAccount())
            owed = replace(
                source, total=after.total, amount_paid=source.amount_paid - transferred
            ).outstanding
            still_held = ZERO if command.kind == "merge" else max(owed, ZERO)
            release = account.held_by(source.order_id) - still_held
            decision.add_account(
                source.customer_id, decide_release(account, source.customer_id, source.order_id, release)
            )
    decision.invoices[target_id] = _target_events(issued, carried, move_id)
    paid_in = sum((amount for _, amount in carried), ZERO)
    if command.payment_terms == "on_account":
        decision.add_account(
            command.customer_id,
            decide_transferred_charge(command.customer_id, target_id, max(issued.total - paid_in, ZERO)),
        )
    return decision


def _why_not(target: Invoice, sources: Mapping[str, Invoice], command: MoveInvoiceLines) -> str | None:
    """Why billing cannot carry out the move, for the saga and a person; None if it can."""
    if target.status != "new":
        return f"order {command.order_id} already has an invoice ({target.status})"
    named = [move.from_order_id for move in command.sources]
    if len(set(named)) != len(named) or command.order_id in named:
        return f"the {command.kind}'s sources must be other orders, each named once: {', '.join(named)}"
    for order_id in named:
        source = sources.get(order_id, Invoice())
        if source.invoice_id is None or source.status not in ("open", "paid"):
            state = "no invoice issued" if source.invoice_id is None else f"its invoice is {source.status}"
            done = "split" if command.kind == "split" else "merged"
            return f"order {order_id} cannot be {done} in billing: {state}"
        if source.currency != command.currency:
            return f"order {order_id} is invoiced in {source.currency}, not {command.currency}"
    return None


def _without_moved(source: Invoice, moved: tuple[SkuQuantity, ...]) -> _Moved:
    """The source's lines less the moved units, each at what it was invoiced at (so the target
    carries exactly the amounts that leave the source)."""
    lines = list(source.lines)
    moved_lines: list[InvoiceLine] = []
    for wanted in moved:
        for part in portions(replace(source, lines=tuple(lines)), wanted.sku, wanted.quantity):
            line = lines[part.index]
            moved_lines.append(
                InvoiceLine(
                    sku=line.sku,
                    quantity=part.quantity,
                    unit_price=line.unit_price,
                    tax_category=line.tax_category,
                    tax_rate=line.tax_rate,
                    net=part.net,
                    tax=part.tax,
                    gross=part.gross if line.gross is not None else None,
                )
            )
            lines[part.index] = line.model_copy(
                update={
                    "quantity": line.quantity - part.quantity,
                    "net": None if line.net is None or part.net is None else line.net - part.net,
                    "tax": None if line.tax is None or part.tax is None else line.tax - part.tax,
                    "gross": None if line.gross is None else line.gross - part.gross,
                }
            )
    value = sum((_gross(line) for line in moved_lines), ZERO)
    net = sum((line.net if line.net is not None else _gross(line) for line in moved_lines), ZERO)
    tax = sum((line.tax or ZERO for line in moved_lines), ZERO)
    return _Moved(
        lines=tuple(line for line in lines if line.quantity > 0),
        total=source.total - value,
        subtotal=source.subtotal - net,
        tax=source.tax - tax,
        shipping_fee=source.shipping_fee,
        moved=tuple(moved_lines),
    )


def _gross(line: InvoiceLine) -> Decimal:
    """A line as invoiced, tax included (its price times quantity on lines before tax per line)."""
    return line.gross if line.gross is not None else line.unit_price * line.quantity


def _source_events(
    source: Invoice, after: _Moved, command: MoveInvoiceLines, transferred: Decimal
) -> list[DomainEvent]:
    invoice_id = source.invoice_id or invoice_id_for(source.order_id)  # issued: checked by _why_not
    difference = after.total - source.total
    moved_out = replace(source, total=after.total, amount_paid=source.amount_paid - transferred)
    owed = moved_out.outstanding
    status: Literal["open", "paid", "merged"] = "merged"
    paid: list[DomainEvent] = []
    if command.kind == "split":
        status, paid = _status_after(moved_out, owed)
    adjusted = InvoiceAdjusted(
        order_id=source.order_id,
        invoice_id=invoice_id,
        amendment_id=command.move_id,
        document_id=change_credit_note_id_for(source.order_id, command.move_id) if difference < 0 else None,
        lines=after.lines,
        previous_total=source.total,
        total=after.total,
        difference=difference,
        amount_paid=moved_out.amount_paid,
        moved_to=command.order_id,
        transferred=transferred,
        subtotal=after.subtotal,
        tax=after.tax,
        shipping_fee=after.shipping_fee,
        outstanding=ZERO if command.kind == "merge" else max(owed, ZERO),
        status=status,
    )
    return [adjusted, *paid]


def _split_target(
    command: MoveInvoiceLines, afters: Mapping[str, _Moved], policy: BillingPolicy
) -> InvoiceIssued:
    """The new order's invoice carries the moved units at exactly what they were invoiced at on
    their source, and no shipping fee (each source keeps the one it charged)."""
    lines = [line for move in command.sources for line in afters[move.from_order_id].moved]
    named = ", ".join(move.from_order_id for move in command.sources)
    subtotal = sum((line.net if line.net is not None else _gross(line) for line in lines), ZERO)
    tax = sum((line.tax or ZERO for line in lines), ZERO)
    return InvoiceIssued(
        order_id=command.order_id,
        invoice_id=invoice_id_for(command.order_id),
        customer_id=command.customer_id,
        currency=command.currency,
        lines=tuple(lines),
        subtotal=subtotal,
        tax=tax,
        shipping_fee=ZERO,
        total=subtotal + tax,
        payment_terms=command.payment_terms,
        due_at=command.due_at,
        shipping_rule=_rule_text(f"split from order {named}: the shipping fee stays on that invoice"),
        prices_include_tax=command.channel is not None
        and command.channel in policy.prices_include_tax_channels,
        tax_rule=_rule_text(f"as invoiced on order {named}"),
    )


def _rule_text(text: str) -> str:
    return text if len(text) <= MAX_RULE_TEXT else text[: MAX_RULE_TEXT - 1] + "…"


def _merged_target(command: MoveInvoiceLines, policy: BillingPolicy) -> InvoiceIssued:
    """The merged order's invoice is worked out anew for all its lines, with one shipping fee."""
    return invoice_issued(command, price(command, policy))


def _target_events(
    issued: InvoiceIssued, carried: list[tuple[str, Decimal]], move_id: str
) -> list[DomainEvent]:
    """InvoiceIssued, a transfer payment per source that had money to carry, InvoicePaid when
    they cover it, and the refund of what they carried beyond its total (a merge's saved
    shipping fee, say), paying out a credit note of the move's on this invoice."""
    events: list[DomainEvent] = [issued]
    paid = ZERO
    for from_order_id, amount in carried:
        if amount <= 0:
            continue
        paid += amount
        events.append(
            PaymentReceived(
                order_id=issued.order_id,
                invoice_id=issued.invoice_id,
                reference=transfer_reference(move_id, from_order_id),
                method=TRANSFER_METHOD,
                amount=amount,
                amount_paid=paid,
            )
        )
    if paid >= issued.total:
        events.append(InvoicePaid(order_id=issued.order_id, invoice_id=issued.invoice_id, amount_paid=paid))
    excess = paid - issued.total
    if excess > 0:
        events.append(
            RefundIssued(
                order_id=issued.order_id,
                refund_id=refund_id_for(issued.order_id, f"move:{move_id}"),
                invoice_id=issued.invoice_id,
                amount=excess,
                reason=f"{move_id}: the orders' payments exceed the merged invoice's total",
                credit_note_id=change_credit_note_id_for(issued.order_id, move_id),
            )
        )
    return events
