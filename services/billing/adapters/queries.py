"""Read-side queries over the billing tables (never the event store's internals).

Amounts leave here as strings with two decimals, so no client meets a binary float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing.domain.invoice import PaymentAttempt


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


_INVOICE_COLUMNS = (
    "invoice_id, order_id, customer_id, currency, total, subtotal, tax, shipping_fee,"
    " shipping_rule, amount_paid, status, payment_terms, due_at, lines"
)


def _invoice(row: Any) -> dict[str, Any]:
    return {
        "invoice_id": row.invoice_id,
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "currency": row.currency,
        "amount": money(row.total),
        "subtotal": money(row.subtotal),
        "tax": money(row.tax),
        "shipping_fee": money(row.shipping_fee),
        "shipping_rule": row.shipping_rule,
        "amount_paid": money(row.amount_paid),
        "status": row.status,
        "payment_terms": row.payment_terms,
        "due_at": row.due_at,
        "lines": row.lines,
    }


async def invoices_of_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE order_id = :o"), {"o": order_id}
    )
    return [{**_invoice(row), "changes": await changes_of_order(conn, row.order_id)} for row in rows]


async def invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE invoice_id = :i"),
            {"i": invoice_id},
        )
    ).first()
    return {**_invoice(row), "changes": await changes_of_order(conn, row.order_id)} if row else None


def _optional_money(amount: Decimal | None) -> str | None:
    return None if amount is None else money(amount)


def _document_kind(document_id: str | None) -> str | None:
    if document_id is None:
        return None
    return "supplementary_invoice" if document_id.startswith("SUP-") else "credit_note"


async def changes_of_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    """The order desk's changes to the order's invoice, oldest first: amendments, and lines moved
    out to (a split, a merge) or in from other orders."""
    rows = await conn.execute(
        text(
            "SELECT change_id, kind, other_order_id, document_id, previous_total, total, difference,"
            " refund_id, refund_amount, transferred, recorded_at FROM invoice_changes"
            " WHERE order_id = :o ORDER BY recorded_at, change_id, kind, other_order_id"
        ),
        {"o": order_id},
    )
    return [
        {
            "change_id": row.change_id,
            "kind": row.kind,
            "other_order_id": row.other_order_id or None,
            "document_id": row.document_id,
            "document_kind": _document_kind(row.document_id),
            "previous_total": _optional_money(row.previous_total),
            "total": _optional_money(row.total),
            "difference": money(row.difference),
            "refund_id": row.refund_id,
            "refund_amount": money(row.refund_amount),
            "transferred": money(row.transferred),
            "recorded_at": row.recorded_at,
        }
        for row in rows
    ]


def _payment(row: Any) -> dict[str, Any]:
    return {
        "reference": row.reference,
        "order_id": row.order_id,
        "invoice_id": row.invoice_id,
        "method": row.method,
        "amount": money(row.amount),
        "outcome": row.outcome,
        "recorded_at": row.recorded_at,
    }


async def payments_of_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT reference, order_id, invoice_id, method, amount, outcome, recorded_at"
            " FROM payments WHERE order_id = :o ORDER BY recorded_at, reference"
        ),
        {"o": order_id},
    )
    return [_payment(row) for row in rows]


async def payment_attempt(conn: AsyncConnection, reference: str) -> PaymentAttempt | None:
    """The payment applied under `reference`, as the gateway reported it."""
    row = (
        await conn.execute(
            text("SELECT order_id, method, amount, outcome FROM payments WHERE reference = :r"),
            {"r": reference},
        )
    ).first()
    if row is None:
        return None
    return PaymentAttempt(row.order_id, reference, row.method, row.amount, row.outcome)


async def payment_result(conn: AsyncConnection, reference: str) -> dict[str, Any] | None:
    """The payment and where its invoice stands now."""
    row = (
        await conn.execute(
            text(
                "SELECT p.reference, p.order_id, p.invoice_id, p.outcome, p.amount,"
                " i.amount_paid, i.status AS invoice_status"
                " FROM payments p JOIN invoices i ON i.invoice_id = p.invoice_id"
                " WHERE p.reference = :r"
            ),
            {"r": reference},
        )
    ).first()
    if row is None:
        return None
    return {
        "reference": row.reference,
        "order_id": row.order_id,
        "invoice_id": row.invoice_id,
        "outcome": row.outcome,
        "amount": money(row.amount),
        "amount_paid": money(row.amount_paid),
        "invoice_status": row.invoice_status,
    }


async def refunds_of_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT refund_id, order_id, invoice_id, amount, reason, credit_note_id, issued_at FROM refunds"
            " WHERE order_id = :o ORDER BY issued_at, refund_id"
        ),
        {"o": order_id},
    )
    return [
        {
            "refund_id": row.refund_id,
            "order_id": row.order_id,
            "invoice_id": row.invoice_id,
            "amount": money(row.amount),
            "reason": row.reason,
            "credit_note_id": row.credit_note_id,
            "issued_at": row.issued_at,
        }
        for row in rows
    ]


async def account(conn: AsyncConnection, customer_id: str, default_credit_limit: Decimal) -> dict[str, Any]:
    """Every customer has an account: an untouched one has the default limit and owes nothing."""
    row = (
        await conn.execute(
            text("SELECT credit_limit, open_balance FROM customer_accounts WHERE customer_id = :c"),
            {"c": customer_id},
        )
    ).first()
    credit_limit: Decimal = default_credit_limit
    open_balance = Decimal("0")
    if row is not None:
        open_balance = row.open_balance
        if row.credit_limit is not None:
            credit_limit = row.credit_limit
    return {
        "customer_id": customer_id,
        "credit_limit": money(credit_limit),
        "open_balance": money(open_balance),
        "available_credit": money(max(credit_limit - open_balance, Decimal("0"))),
    }
