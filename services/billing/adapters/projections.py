"""Inline projector: keeps the billing query tables in step with the events."""

from __future__ import annotations

import json

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.billing import (
    CreditCharged,
    CreditLimitSet,
    CreditReleased,
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
    "INSERT INTO refunds (refund_id, order_id, invoice_id, amount, reason, issued_at)"
    " VALUES (:refund_id, :order_id, :invoice_id, :amount, :reason, :at) ON CONFLICT DO NOTHING"
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
    elif isinstance(event, InvoicePaid):
        writes.add(_MARK_PAID, {"i": event.invoice_id}, row)
    elif isinstance(event, InvoiceVoided):
        writes.add(_MARK_VOID, {"o": event.order_id}, row)
    elif isinstance(event, RefundIssued):
        writes.add(
            _INSERT_REFUND,
            {
                **event.model_dump(include={"refund_id", "order_id", "invoice_id", "amount", "reason"}),
                "at": envelope.occurred_at,
            },
            row,
        )
