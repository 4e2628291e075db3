"""The Order aggregate: its state, rebuilt from its events, and the status a person sees."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from libs.domain import AggregateKind
from libs.events.base import DomainEvent
from libs.events.order import (
    CompensationStepCompleted,
    CompensationStepRequested,
    InvoiceRequested,
    OrderApproved,
    OrderAwaitingPayment,
    OrderAwaitingStock,
    OrderCancelled,
    OrderCompensationStarted,
    OrderConfirmed,
    OrderHeld,
    OrderNeedsAttention,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrderStepResent,
    OrderStockAllocated,
    StockReservationRequested,
)

Status = Literal[
    "new",
    "placed",
    "on_hold",
    "approved",
    "awaiting_stock",
    "awaiting_payment",
    "confirmed",
    "cancelled",
    "rejected",
    "needs_attention",
]
TERMINAL: frozenset[str] = frozenset({"cancelled", "rejected"})

# Where the saga stands. The status is what a person sees; the stage is what the saga waits for.
Stage = Literal[
    "none", "review", "reserving", "invoicing", "awaiting_payment", "done", "compensating", "ended"
]


@dataclass(frozen=True)
class Compensation:
    reason: str
    final_status: Literal["cancelled", "rejected"]
    actor: str
    pending: frozenset[str]
    attempts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Order:
    order_id: str = ""
    status: Status = "new"
    stage: Stage = "none"
    placed: OrderPlaced | None = None
    hold_reasons: tuple[str, ...] = ()
    stock_requested: bool = False
    stock_allocated: bool = False
    invoice_requested: bool = False
    invoice_id: str | None = None
    amount_due: Decimal = Decimal("0")
    amount_paid: Decimal = Decimal("0")
    amount_refunded: Decimal = Decimal("0")
    # Replies identify themselves by refund id / payment reference; seen ones change nothing.
    refund_ids: frozenset[str] = frozenset()
    payment_references: frozenset[str] = frozenset()
    payment_deadline: datetime | None = None
    compensation: Compensation | None = None
    last_reason: str | None = None
    # How many times each forward step's request was sent (absent: once).
    step_attempts: dict[str, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.placed is not None

    @property
    def is_closed(self) -> bool:
        return self.status in TERMINAL


def evolve(state: Order, event: DomainEvent) -> Order:  # noqa: C901 - one branch per event
    match event:
        case OrderPlaced():
            return replace(state, order_id=event.order_id, status="placed", stage="review", placed=event)
        case OrderHeld():
            return replace(state, status="on_hold", hold_reasons=event.reasons)
        case OrderApproved():
            return replace(state, status="approved", hold_reasons=())
        case StockReservationRequested():
            return replace(state, stage="reserving", stock_requested=True)
        case OrderStepResent():
            return replace(state, step_attempts={**state.step_attempts, event.step: event.attempt})
        case OrderAwaitingStock():
            return replace(state, status="awaiting_stock")
        case OrderStockAllocated():
            # Also after a needs_attention park for a late answer: the saga goes on.
            return replace(state, status="approved", stock_allocated=True)
        case InvoiceRequested():
            return replace(state, stage="invoicing", invoice_requested=True)
        case OrderAwaitingPayment():
            return replace(
                state,
                status="awaiting_payment",
                stage="awaiting_payment",
                invoice_id=event.invoice_id,
                amount_due=event.amount_due,
                payment_deadline=event.payment_deadline,
            )
        case OrderPaymentRecorded():
            return replace(
                state,
                amount_paid=event.amount_paid,
                payment_references=state.payment_references | {event.reference},
            )
        case OrderConfirmed():
            return replace(
                state, status="confirmed", stage="done", invoice_id=event.invoice_id, amount_due=event.total
            )
        case OrderCompensationStarted():
            return replace(
                state,
                stage="compensating",
                last_reason=event.reason,
                compensation=Compensation(
                    event.reason,
                    "rejected" if event.final_status == "rejected" else "cancelled",
                    event.requested_by,
                    frozenset(event.steps),
                ),
            )
        case CompensationStepRequested() if state.compensation is not None:
            attempts = {**state.compensation.attempts, event.step: event.attempt}
            return replace(state, compensation=replace(state.compensation, attempts=attempts))
        case CompensationStepCompleted() if state.compensation is not None:
            pending = state.compensation.pending - {event.step}
            return replace(state, compensation=replace(state.compensation, pending=pending))
        case OrderRefunded():
            return replace(
                state,
                amount_refunded=state.amount_refunded + event.amount,
                refund_ids=state.refund_ids | {event.refund_id},
            )
        case OrderCancelled():
            return replace(state, status="cancelled", stage="ended", last_reason=event.reason)
        case OrderRejected():
            return replace(state, status="rejected", stage="ended", last_reason=event.reason)
        case OrderNeedsAttention():
            return replace(state, status="needs_attention", last_reason=event.reason)
    return state


ORDER = AggregateKind[Order]("order", Order, evolve)
