"""Inline projector: keeps the billing query tables in step with the events."""

from __future__ import annotations

import json
from decimal import Decimal

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.billing import (
    CreditCharged,
    CreditLimitSet,
    CreditReleased,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
)
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

_INSERT_INVOICE = Sql(
    "INSERT INTO invoices (invoice_id, order_id, customer_id, currency, subtotal, tax,"
    " shipping_fee, shipping_rule, total, status, payment_terms, due_at, lines, issued_at)"
    " VALUES (:invoice_id, :order_id, :customer_id, :currency, :subtotal, :tax, :shipping_fee,"
    " :shipping_rule, :total, 'open', :payment_terms, :due_at, CAST(:lines AS jsonb), :at)"
    " ON CONFLICT DO NOTHING"
)
_INSERT_PAYMENT = Sql(
    "INSERT INTO payments (reference, order_id, invoice_id, method, amount, outcome, recorded_at)"
    " VALUES (:reference, :order_id, :invoice_id, :method, :amount, :outcome, :at)"
    " ON CONFLICT DO NOTHING"
)
_INSERT_REFUND = Sql(
    "INSERT INTO refunds (refund_id, order_id, invoice_id, amount, reason, credit_note_id, issued_at)"
    " VALUES (:refund_id, :order_id, :invoice_id, :amount, :reason, :credit_note_id, :at)"
    " ON CONFLICT DO NOTHING"
)
_ADJUST_INVOICE = Sql(
    "UPDATE invoices SET lines = CAST(:lines AS jsonb), total = :total,"
    " subtotal = coalesce(:subtotal, subtotal), tax = coalesce(:tax, tax),"
    " shipping_fee = coalesce(:shipping_fee, shipping_fee), amount_paid = :amount_paid,"
    " status = coalesce(:status, status) WHERE invoice_id = :invoice_id"
)
_INSERT_CHANGE = Sql(
    "INSERT INTO invoice_changes (order_id, change_id, kind, other_order_id, document_id,"
    " previous_total, total, difference, refund_id, refund_amount, transferred, recorded_at)"
    " VALUES (:order_id, :change_id, :kind, :other_order_id, :document_id, :previous_total, :total,"
    " :difference, :refund_id, :refund_amount, :transferred, :at) ON CONFLICT DO NOTHING"
)
_SET_CREDIT_LIMIT = Sql(
    "INSERT INTO customer_accounts (customer_id, credit_limit) VALUES (:c, :limit)"
    " ON CONFLICT (customer_id) DO UPDATE SET credit_limit = :limit"
)
_ADD_TO_BALANCE = Sql(
    "INSERT INTO customer_accounts (customer_id, open_balance) VALUES (:c, :amount)"
    " ON CONFLICT (customer_id) DO UPDATE"
    " SET open_balance = customer_accounts.open_balance + :amount"
)

_SET_PAID = Sql("UPDATE invoices SET amount_paid = :paid WHERE invoice_id = :i")
_MARK_PAID = Sql("UPDATE invoices SET status = 'paid' WHERE invoice_id = :i")
_MARK_VOID = Sql("UPDATE invoices SET status = 'void' WHERE order_id = :o")


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, CreditLimitSet | CreditCharged | CreditReleased):
        account = ("account", event.customer_id)
        if isinstance(event, CreditLimitSet):
            writes.add(_SET_CREDIT_LIMIT, {"c": event.customer_id, "limit": event.credit_limit}, account)
        else:
            sign = 1 if isinstance(event, CreditCharged) else -1
            writes.add(_ADD_TO_BALANCE, {"c": event.customer_id, "amount": sign * event.amount}, account)
        return
    # An order has one invoice, and its payments and refunds hang off it: one key for all.
    row = ("order", getattr(event, "order_id", ""))
    if isinstance(event, InvoiceIssued):
        writes.add(
            _INSERT_INVOICE,
            {
                **event.model_dump(exclude={"lines"}),
                "lines": json.dumps([line.model_dump(mode="json") for line in event.lines]),
                "at": envelope.occurred_at,
            },
            row,
        )
    elif isinstance(event, PaymentReceived | PaymentFailed):
        writes.add(
            _INSERT_PAYMENT,
            {
                **event.model_dump(include={"reference", "order_id", "invoice_id", "method", "amount"}),
                "outcome": "succeeded" if isinstance(event, PaymentReceived) else "failed",
                "at": envelope.occurred_at,
            },
            row,
        )
        if isinstance(event, PaymentReceived):
            writes.add(_SET_PAID, {"paid": event.amount_paid, "i": event.invoice_id}, row)
    elif isinstance(event, InvoiceAdjusted):
        _project_change(writes, envelope, event)
    elif isinstance(event, InvoicePaid):
        writes.add(_MARK_PAID, {"i": event.invoice_id}, row)
    elif isinstance(event, InvoiceVoided):
        writes.add(_MARK_VOID, {"o": event.order_id}, row)
    elif isinstance(event, RefundIssued):
        writes.add(
            _INSERT_REFUND,
            {
                **event.model_dump(
                    include={"refund_id", "order_id", "invoice_id", "amount", "reason", "credit_note_id"}
                ),
                "at": envelope.occurred_at,
            },
            row,
        )


def _project_change(writes: WriteBatch, envelope: Envelope, event: InvoiceAdjusted) -> None:
    """The invoice as it stands after an amendment or a move, and the change on the invoices it
    touched (a move's also on the order its lines went to)."""
    row = ("order", event.order_id)
    writes.add(
        _ADJUST_INVOICE,
        {
            **event.model_dump(
                include={"invoice_id", "total", "subtotal", "tax", "shipping_fee", "amount_paid", "status"}
            ),
            "lines": json.dumps([line.model_dump(mode="json") for line in event.lines]),
        },
        row,
    )
    change = {
        "order_id": event.order_id,
        "change_id": event.amendment_id,
        "kind": "amendment" if event.moved_to is None else "moved_out",
        "other_order_id": event.moved_to or "",
        "document_id": event.document_id,
        "previous_total": event.previous_total,
        "total": event.total,
        "difference": event.difference,
        "refund_id": event.refund_id,
        "refund_amount": event.refund_amount,
        "transferred": event.transferred,
        "at": envelope.occurred_at,
    }
    writes.add(_INSERT_CHANGE, change, row)
    if event.moved_to is not None:
        moved_in = {
            **change,
            "order_id": event.moved_to,
            "kind": "moved_in",
            "other_order_id": event.order_id,
            "document_id": None,
            "previous_total": None,
            "total": None,
            "difference": -event.difference,
            "refund_id": None,
            "refund_amount": Decimal("0.00"),
        }
        writes.add(_INSERT_CHANGE, moved_in, ("order", event.moved_to))
