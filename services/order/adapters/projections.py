"""Inline projector: the orders and customers tables and the saga's deadlines.

Each event queues its statements on the unit of work's WriteBatch, naming the row it changes.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.order import (
    CompensationStepCompleted,
    CompensationStepRequested,
    CustomerBlocked,
    CustomerErased,
    CustomerEvent,
    CustomerRegistered,
    CustomerUnblocked,
    InvoiceRequested,
    OrderAmended,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderCancelled,
    OrderChangeApproved,
    OrderChangeHeld,
    OrderChangeRefused,
    OrderChangeRequested,
    OrderChangeResent,
    OrderChangeStepAnswered,
    OrderChangeUndoing,
    OrderCompensationStarted,
    OrderCompleted,
    OrderConfirmed,
    OrderDelivered,
    OrderHeld,
    OrderInvoiced,
    OrderMerged,
    OrderNeedsAttention,
    OrderPartiallyShipped,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrderShipmentUpdated,
    OrderShipped,
    OrderStepResent,
    OrderStockAllocated,
    OrderStockWaitOverdue,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.runtime.db import Sql, sql
from libs.runtime.personal_data import ERASED
from libs.runtime.writes import WriteBatch
from services.order.adapters import queries

_STATUS_AFTER: dict[type[DomainEvent], tuple[str | None, str | None]] = {
    # event -> (status, stage); None leaves the column as it is
    OrderHeld: ("on_hold", None),
    StockReservationRequested: (None, "reserving"),
    # OrderAwaitingStock, OrderStockAllocated, OrderStockWaitOverdue, InvoiceRequested: see
    # _STOCK_WAIT, _STOCK_BACK, _STOCK_OVERDUE and _INVOICE_REQUESTED below
    OrderAwaitingPayment: ("awaiting_payment", "awaiting_payment"),
    OrderConfirmed: ("confirmed", "done"),
    OrderCompensationStarted: (None, "compensating"),
    OrderCancelled: ("cancelled", "ended"),
    OrderRejected: ("rejected", "ended"),
    OrderNeedsAttention: ("needs_attention", None),
    ShipmentsRequested: (None, "fulfilling"),
    OrderPartiallyShipped: ("partially_shipped", None),
    OrderShipped: ("shipped", None),
    OrderDelivered: ("delivered", None),
    OrderCompleted: ("completed", "ended"),
    OrderMerged: ("merged", "ended"),
}
# Waiting for stock: before the reservation succeeded (backordered), or after it, when stock
# the order held was revoked; then the status to go back to is kept. An order held for
# finance meanwhile (its credit check ran beside the reservation) shows the hold: the status
# follows the order's evolve (services/order/domain/order.py) in each case.
_STOCK_WAIT = Sql(
    "UPDATE orders SET status_before_wait = CASE WHEN stage = 'reserving' THEN NULL ELSE status END,"
    " status = CASE WHEN status = 'on_hold' THEN status ELSE 'awaiting_stock' END,"
    " updated_at = :at WHERE order_id = :order_id"
)
_STOCK_OVERDUE = Sql(
    "UPDATE orders SET status = CASE WHEN status = 'on_hold' THEN status ELSE 'needs_attention' END,"
    " reason = :reason, updated_at = :at WHERE order_id = :order_id"
)
# Reserved: the group's other step (the invoice) is what the saga waits for next.
_STOCK_BACK = Sql(
    "UPDATE orders SET status = CASE WHEN status = 'on_hold' THEN status"
    " WHEN stage = 'reserving' THEN 'approved'"
    " WHEN status IN ('awaiting_stock', 'needs_attention') THEN coalesce(status_before_wait, 'approved')"
    " ELSE status END, status_before_wait = NULL,"
    " stage = CASE WHEN stage = 'reserving' THEN 'invoicing' ELSE stage END,"
    " updated_at = :at WHERE order_id = :order_id"
)
# Beside a reservation still open (a parallel group) the stage stays reserving.
_INVOICE_REQUESTED = Sql(
    "UPDATE orders SET stage = CASE WHEN stage = 'reserving' THEN stage ELSE 'invoicing' END,"
    " updated_at = :at WHERE order_id = :order_id"
)
# A change held for a person (desk.py): on_hold until decided, then the status it had.
_CHANGE_HELD = Sql(
    "UPDATE orders SET status_before_change = coalesce(status_before_change, status),"
    " status = 'on_hold', reason = :reason, updated_at = :at WHERE order_id = :order_id"
)
_CHANGE_DECIDED = Sql(
    "UPDATE orders SET status = coalesce(status_before_change, status), status_before_change = NULL,"
    " reason = CASE WHEN status_before_change IS NULL THEN reason END,"
    " updated_at = :at WHERE order_id = :order_id"
)
_AMENDED = Sql(
    "UPDATE orders SET lines = CAST(:lines AS jsonb), subtotal = :subtotal, shipping_method = :method,"
    " total = coalesce(:total, total), amount_paid = coalesce(:paid, amount_paid), updated_at = :at"
    " WHERE order_id = :order_id"
)
_UPSERT_SHIPMENT = Sql(
    "INSERT INTO order_shipments (order_id, shipment_id, warehouse, status, carrier, tracking_number,"
    " updated_at) VALUES (:o, :s, :w, :status, :carrier, :tracking, :at)"
    " ON CONFLICT (order_id, shipment_id) DO UPDATE SET status = excluded.status,"
    " carrier = coalesce(excluded.carrier, order_shipments.carrier),"
    " tracking_number = coalesce(excluded.tracking_number, order_shipments.tracking_number),"
    " updated_at = excluded.updated_at"
)


def fingerprint(event: OrderPlaced) -> str:
    """Same customer, same lines, same delivery: what a duplicate submission looks like."""
    lines = sorted(f"{line.sku}:{line.quantity}:{line.unit_price}" for line in event.lines)
    basis = json.dumps([event.customer_id, lines, event.shipping.method, event.currency])
    return hashlib.sha256(basis.encode()).hexdigest()


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    at = envelope.occurred_at
    if isinstance(event, OrderPlaced):
        _insert_order(writes, event, at)
        return
    if isinstance(event, CustomerRegistered | CustomerBlocked | CustomerUnblocked | CustomerErased):
        _project_customer(writes, event, at)
        return
    order_id: str = getattr(event, "order_id", "")
    changes: dict[str, Any] = {}
    status, stage = _STATUS_AFTER.get(type(event), (None, None))
    if status:
        changes["status"] = status
    if stage:
        changes["stage"] = stage
    if isinstance(event, OrderAwaitingPayment | OrderInvoiced):
        changes |= {"invoice_id": event.invoice_id, "total": event.amount_due}
    elif isinstance(event, OrderConfirmed):
        changes |= {"invoice_id": event.invoice_id, "total": event.total}
    elif isinstance(event, OrderPaymentRecorded):
        changes["amount_paid"] = event.amount_paid
    elif isinstance(event, OrderHeld):
        changes["reason"] = queries.HOLD_REASONS_SEPARATOR.join(event.reasons)
    elif isinstance(event, OrderApproved):
        changes["reason"] = None  # the decided hold is in the timeline, not the order's reason now
        changes["status"] = "awaiting_stock" if event.waiting_for_stock else "approved"
    elif isinstance(event, OrderCancelled | OrderRejected | OrderNeedsAttention):
        changes["reason"] = event.reason
    queued_insert = writes.queued(_INSERT_ORDER, ("order", order_id))
    if isinstance(event, InvoiceRequested) and queued_insert is not None:
        if queued_insert["stage"] != "reserving":
            changes["stage"] = "invoicing"  # placed, reviewed and requested in one transaction
    elif isinstance(event, InvoiceRequested):
        writes.add(_INVOICE_REQUESTED, {"at": at, "order_id": order_id}, ("order", order_id))
    if changes and queued_insert is not None:
        queued_insert.update(changes, updated_at=at)  # placed in this same transaction
    elif changes:
        assignments = ", ".join(f"{column} = :{column}" for column in changes)
        # Few distinct column sets occur, so sql() builds each statement once.
        writes.add(
            sql(f"UPDATE orders SET {assignments}, updated_at = :at WHERE order_id = :order_id"),
            {**changes, "at": at, "order_id": order_id},
            ("order", order_id),
        )
    if isinstance(event, OrderRefunded):
        writes.add(_ADD_REFUND, {"amount": event.amount, "at": at, "order_id": order_id}, ("order", order_id))
    elif isinstance(event, OrderAwaitingStock):
        writes.add(_STOCK_WAIT, {"at": at, "order_id": order_id}, ("order", order_id))
    elif isinstance(event, OrderStockAllocated):
        writes.add(_STOCK_BACK, {"at": at, "order_id": order_id}, ("order", order_id))
    elif isinstance(event, OrderStockWaitOverdue):
        writes.add(
            _STOCK_OVERDUE, {"reason": event.reason, "at": at, "order_id": order_id}, ("order", order_id)
        )
    elif isinstance(event, OrderChangeHeld) or (
        isinstance(event, OrderChangeRequested) and event.hold_reasons
    ):
        reason = queries.HOLD_REASONS_SEPARATOR.join(
            event.reasons if isinstance(event, OrderChangeHeld) else event.hold_reasons
        )
        writes.add(_CHANGE_HELD, {"reason": reason, "at": at, "order_id": order_id}, ("order", order_id))
    elif isinstance(event, OrderChangeApproved | OrderChangeUndoing | OrderChangeRefused | OrderAmended):
        writes.add(_CHANGE_DECIDED, {"at": at, "order_id": order_id}, ("order", order_id))
    if isinstance(event, OrderAmended):
        lines = json.dumps([line.model_dump(mode="json") for line in event.lines])
        amended = {
            "lines": lines,
            "subtotal": event.subtotal,
            "method": event.shipping.method,
            "total": event.total,
            "paid": event.amount_paid,
            "at": at,
            "order_id": order_id,
        }
        writes.add(_AMENDED, amended, ("order", order_id))
    elif isinstance(event, OrderShipmentUpdated):
        writes.add(
            _UPSERT_SHIPMENT,
            {
                "o": order_id,
                "s": event.shipment_id,
                "w": event.warehouse,
                "status": event.status,
                "carrier": event.carrier,
                "tracking": event.tracking_number,
                "at": at,
            },
            ("shipment", event.shipment_id),
        )
    _project_deadlines(writes, event, order_id)


_ADD_REFUND = Sql(
    "UPDATE orders SET amount_refunded = amount_refunded + :amount, updated_at = :at"
    " WHERE order_id = :order_id"
)
# Carries every column a later event may change: events recorded in the same transaction as
# OrderPlaced amend the queued insert instead of adding updates (WriteBatch.queued).
_INSERT_ORDER = Sql(
    "INSERT INTO orders (order_id, status, stage, channel, external_id, customer_id,"
    " customer_name, currency, payment_terms, shipping_method, lines, fingerprint,"
    " subtotal, total, amount_paid, invoice_id, reason, placed_at, updated_at)"
    " VALUES (:order_id, :status, :stage, :channel, :external_id, :customer_id, :customer_name,"
    " :currency, :payment_terms, :shipping_method, CAST(:lines AS jsonb), :fingerprint,"
    " :subtotal, :total, :amount_paid, :invoice_id, :reason, :at, :updated_at)"
)
_INSERT_CUSTOMER = Sql(
    "INSERT INTO customers (customer_id, name, email, phone, region)"
    " VALUES (:id, :name, :email, :phone, :region) ON CONFLICT DO NOTHING"
)
_SET_BLOCKED = Sql("UPDATE customers SET blocked = :blocked WHERE customer_id = :id")
# The key is gone, so the sealed values could not be read anyway; clearing them also erases
# rows written before sealing existed, and the blind indexes stop finding the customer.
_ERASE_CUSTOMER = Sql(
    "UPDATE customers SET name = :erased, email = NULL, phone = NULL, email_index = NULL,"
    " phone_index = NULL, erased_at = :at WHERE customer_id = :id"
)
_ERASE_ORDER_NAMES = Sql("UPDATE orders SET customer_name = :erased WHERE customer_id = :id")
_SET_DEADLINE = Sql(
    "INSERT INTO saga_deadlines (order_id, kind, due_at) VALUES (:o, :k, :due)"
    " ON CONFLICT (order_id, kind) DO UPDATE SET due_at = :due"
)
_DROP_DEADLINE = Sql("DELETE FROM saga_deadlines WHERE order_id = :o AND kind = :k")
_DROP_ALL_DEADLINES = Sql("DELETE FROM saga_deadlines WHERE order_id = :o")


def _insert_order(writes: WriteBatch, event: OrderPlaced, at: Any) -> None:
    writes.add(
        _INSERT_ORDER,
        {
            "order_id": event.order_id,
            "channel": event.channel,
            "external_id": event.external_id,
            "customer_id": event.customer_id,
            "customer_name": event.customer.name,
            "currency": event.currency,
            "payment_terms": event.payment_terms,
            "shipping_method": event.shipping.method,
            "lines": json.dumps([line.model_dump(mode="json") for line in event.lines]),
            "fingerprint": fingerprint(event),
            "subtotal": event.subtotal,
            "status": "placed",
            "stage": "review",
            "total": None,
            "amount_paid": Decimal("0"),
            "invoice_id": None,
            "reason": None,
            "at": at,
            "updated_at": at,
        },
        ("order", event.order_id),
    )


def _project_customer(writes: WriteBatch, event: CustomerEvent, at: Any) -> None:
    row = ("customer", event.customer_id)
    if isinstance(event, CustomerErased):
        writes.add(_ERASE_CUSTOMER, {"erased": ERASED, "at": at, "id": event.customer_id}, row)
        # Every order of the customer, the name shown in lists (sealed or plaintext).
        writes.add(_ERASE_ORDER_NAMES, {"erased": ERASED, "id": event.customer_id}, row)
    elif isinstance(event, CustomerRegistered):
        writes.add(
            _INSERT_CUSTOMER,
            {
                "id": event.customer_id,
                "name": event.name,
                "email": event.email,
                "phone": event.phone,
                "region": event.region,
            },
            row,
        )
    else:
        writes.add(
            _SET_BLOCKED, {"blocked": isinstance(event, CustomerBlocked), "id": event.customer_id}, row
        )


# The forward step whose request an event records (its reply deadline starts).
_REQUESTS = {
    StockReservationRequested: "reserve_stock",
    InvoiceRequested: "invoice",
    ShipmentsRequested: "ship",
}
# The forward step whose reply deadline an event settles (its participant answered).
_ANSWERS = {
    OrderStockAllocated: "reserve_stock",
    OrderAwaitingStock: "reserve_stock",
    OrderAwaitingPayment: "invoice",
    OrderInvoiced: "invoice",
    OrderConfirmed: "invoice",
    OrderShipmentUpdated: "ship",
}


def _project_deadlines(writes: WriteBatch, event: DomainEvent, order_id: str) -> None:  # noqa: C901
    row = ("deadlines", order_id)  # one key for all of an order's deadlines: DELETE ALL spans them
    requested, reply_by = _REQUESTS.get(type(event)), getattr(event, "reply_by", None)
    if requested is not None and reply_by is not None:
        writes.add(_SET_DEADLINE, {"o": order_id, "k": f"reply:{requested}", "due": reply_by}, row)
    elif isinstance(event, OrderStepResent):
        writes.add(_SET_DEADLINE, {"o": order_id, "k": f"reply:{event.step}", "due": event.reply_by}, row)
    if (answered := _ANSWERS.get(type(event))) is not None:
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": f"reply:{answered}"}, row)
    if isinstance(event, OrderAwaitingPayment):
        writes.add(_SET_DEADLINE, {"o": order_id, "k": "payment", "due": event.payment_deadline}, row)
    elif isinstance(event, CompensationStepRequested):
        writes.add(
            _SET_DEADLINE, {"o": order_id, "k": f"compensation:{event.step}", "due": event.retry_at}, row
        )
    elif isinstance(event, CompensationStepCompleted):
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": f"compensation:{event.step}"}, row)
    elif isinstance(event, OrderNeedsAttention):
        # Parked for a person: nothing is chased any more for that step.
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": f"compensation:{event.step}"}, row)
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": f"reply:{event.step}"}, row)
    elif isinstance(event, OrderConfirmed):
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": "payment"}, row)
    elif isinstance(event, OrderCompensationStarted):
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": "payment"}, row)
        for step in _REQUESTS.values():
            writes.add(_DROP_DEADLINE, {"o": order_id, "k": f"reply:{step}"}, row)
    elif isinstance(event, OrderCancelled | OrderRejected | OrderCompleted):
        writes.add(_DROP_ALL_DEADLINES, {"o": order_id}, row)
    _project_stock_deadline(writes, event, order_id)
    _project_change_deadline(writes, event, order_id)


# A change's request (desk.py) is chased when unanswered: its deadline is kind "change".
_CHANGE_ASKED = (
    OrderChangeRequested,
    OrderChangeApproved,
    OrderChangeStepAnswered,
    OrderChangeResent,
    OrderChangeUndoing,
)
_CHANGE_SETTLED = (OrderAmended, OrderMerged, OrderChangeRefused, OrderChangeHeld)


def _project_change_deadline(writes: WriteBatch, event: DomainEvent, order_id: str) -> None:
    row = ("deadlines", order_id)
    if isinstance(event, _CHANGE_ASKED) and event.reply_by is not None:
        writes.add(_SET_DEADLINE, {"o": order_id, "k": "change", "due": event.reply_by}, row)
    elif isinstance(event, _CHANGE_SETTLED) or (
        isinstance(event, OrderNeedsAttention) and event.step == "change"
    ):
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": "change"}, row)


def _project_stock_deadline(writes: WriteBatch, event: DomainEvent, order_id: str) -> None:
    """A backorder's wait: alerted at alert_at, then cancelled at cancel_at (if the policy
    sets them); ended when the stock is allocated."""
    row = ("deadlines", order_id)
    due = None
    if isinstance(event, OrderAwaitingStock):
        due = event.alert_at
    elif isinstance(event, OrderStockWaitOverdue):
        due = event.cancel_at
    elif not isinstance(event, OrderStockAllocated):
        return
    if due is None:
        writes.add(_DROP_DEADLINE, {"o": order_id, "k": "stock"}, row)
    else:
        writes.add(_SET_DEADLINE, {"o": order_id, "k": "stock", "due": due}, row)
