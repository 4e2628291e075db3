"""Inline projector: keeps the billing query tables in step with the events."""

from __future__ import annotations

import json

import asyncpg

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

_INSERT_INVOICE = Sql(
    "INSERT INTO invoices (invoice_id, order_id, customer_id, currency, subtotal, tax,"
    " shipping_fee, total, status, payment_terms, due_at, lines, issued_at)"
    " VALUES (:invoice_id, :order_id, :customer_id, :currency, :subtotal, :tax, :shipping_fee,"
    " :total, 'open', :payment_terms, :due_at, CAST(:lines AS jsonb), :at)"
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


async def project(db: asyncpg.Connection, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, InvoiceIssued):
        await _INSERT_INVOICE.execute(
            db,
            {
                **event.model_dump(exclude={"lines"}),
                "lines": json.dumps([line.model_dump(mode="json") for line in event.lines]),
                "at": envelope.occurred_at,
            },
        )
    elif isinstance(event, PaymentReceived | PaymentFailed):
        await _INSERT_PAYMENT.execute(
            db,
            {
                **event.model_dump(include={"reference", "order_id", "invoice_id", "method", "amount"}),
                "outcome": "succeeded" if isinstance(event, PaymentReceived) else "failed",
                "at": envelope.occurred_at,
            },
        )
        if isinstance(event, PaymentReceived):
            await _SET_PAID.execute(db, {"paid": event.amount_paid, "i": event.invoice_id})
    elif isinstance(event, InvoicePaid):
        await _MARK_PAID.execute(db, {"i": event.invoice_id})
    elif isinstance(event, InvoiceVoided):
        await _MARK_VOID.execute(db, {"o": event.order_id})
    elif isinstance(event, RefundIssued):
        await _INSERT_REFUND.execute(
            db,
            {
                **event.model_dump(include={"refund_id", "order_id", "invoice_id", "amount", "reason"}),
                "at": envelope.occurred_at,
            },
        )
    elif isinstance(event, CreditLimitSet):
        await _SET_CREDIT_LIMIT.execute(db, {"c": event.customer_id, "limit": event.credit_limit})
    elif isinstance(event, CreditCharged | CreditReleased):
        sign = 1 if isinstance(event, CreditCharged) else -1
        await _ADD_TO_BALANCE.execute(db, {"c": event.customer_id, "amount": sign * event.amount})
