"""Inline projector of returns: the returns table, and the order's status when goods come
back (OrderGoodsReturned). Writes to an order's row name the same row key as the orders
projector (`("order", order_id)`), so they keep their order within a batch."""

from __future__ import annotations

import json
from typing import Any

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.order import (
    OrderGoodsReturned,
    ReturnApproved,
    ReturnCompleted,
    ReturnCredited,
    ReturnEvent,
    ReturnNeedsAttention,
    ReturnReceived,
    ReturnRejected,
    ReturnReplacementRequested,
    ReturnReplacementUpdated,
    ReturnRequested,
    ReturnStepResent,
)
from libs.runtime.db import Sql, sql
from libs.runtime.writes import WriteBatch

_INSERT_RETURN = Sql(
    "INSERT INTO returns (return_id, order_id, status, resolution, lines, requested_by, requested_at,"
    " updated_at) VALUES (:r, :o, 'requested', :resolution, CAST(:lines AS jsonb), :by, :at, :at)"
    " ON CONFLICT (return_id) DO NOTHING"
)
_RECEIVED = Sql(
    "UPDATE returns SET status = 'received', received = CAST(:received AS jsonb), updated_at = :at"
    " WHERE return_id = :return_id"
)
_ORDER_STATUS = Sql("UPDATE orders SET status = :status, updated_at = :at WHERE order_id = :o")
# A received return's deadline (domain/returns.py chase): in the order service's
# saga_deadlines table, kind "return:<return id>", fired by the same loop as the saga's.
RETURN_DEADLINE = "return"
_SET_DEADLINE = Sql(
    "INSERT INTO saga_deadlines (order_id, kind, due_at) VALUES (:o, :k, :due)"
    " ON CONFLICT (order_id, kind) DO UPDATE SET due_at = :due"
)
_DROP_DEADLINE = Sql("DELETE FROM saga_deadlines WHERE order_id = :o AND kind = :k")


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    at = envelope.occurred_at
    if isinstance(event, OrderGoodsReturned) and not event.replaced:
        status = "returned" if event.fully_returned else "partially_returned"
        writes.add(
            _ORDER_STATUS, {"status": status, "at": at, "o": event.order_id}, ("order", event.order_id)
        )
        return
    if not isinstance(event, ReturnEvent):
        return
    row = ("return", event.return_id)
    _project_deadline(writes, event)
    if isinstance(event, ReturnRequested):
        lines = json.dumps([line.model_dump(mode="json") for line in event.lines])
        params = {
            "r": event.return_id,
            "o": event.order_id,
            "resolution": event.resolution,
            "lines": lines,
            "by": event.requested_by,
            "at": at,
        }
        writes.add(_INSERT_RETURN, params, row)
        return
    if isinstance(event, ReturnReceived):
        received = json.dumps([line.model_dump(mode="json") for line in event.lines])
        writes.add(_RECEIVED, {"received": received, "at": at, "return_id": event.return_id}, row)
        return
    changes = _changes(event)
    if changes:
        assignments = ", ".join(f"{column} = :{column}" for column in changes)
        # Column names come from _changes' own keys; every value is a bind parameter.
        statement = f"UPDATE returns SET {assignments}, updated_at = :at WHERE return_id = :return_id"  # noqa: S608
        writes.add(
            sql(statement),
            {**changes, "at": at, "return_id": event.return_id},
            row,
        )


def _project_deadline(writes: WriteBatch, event: ReturnEvent) -> None:
    # The order's deadline row key, so these keep their order with the saga's own deadlines.
    row = ("deadlines", event.order_id)
    kind = f"{RETURN_DEADLINE}:{event.return_id}"
    due = event.reply_by if isinstance(event, ReturnReceived | ReturnStepResent) else None
    if due is not None:
        writes.add(_SET_DEADLINE, {"o": event.order_id, "k": kind, "due": due}, row)
    elif isinstance(event, ReturnCompleted | ReturnNeedsAttention):
        writes.add(_DROP_DEADLINE, {"o": event.order_id, "k": kind}, row)


def _changes(event: ReturnEvent) -> dict[str, Any]:  # noqa: PLR0911 - one per event
    match event:
        case ReturnApproved():
            return {"status": "approved"}
        case ReturnRejected():
            return {"status": "rejected", "reason": event.reason}
        case ReturnCredited():
            return {
                "credit_note_id": event.credit_note_id,
                "credit_amount": event.credit_amount,
                "refund_id": event.refund_id,
                "refund_amount": event.refund_amount,
            }
        case ReturnReplacementRequested():
            return {"replacement_status": "requested"}
        case ReturnReplacementUpdated():
            return {"replacement_status": event.status}
        case ReturnCompleted():
            return {"status": "completed"}
        case ReturnNeedsAttention():
            return {"attention": event.reason}
    return {}
