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
    OrderCreditLimitOverridden,
    OrderDelivered,
    OrderGoodsReturned,
    OrderHeld,
    OrderInvoiced,
    OrderMerged,
    OrderNeedsAttention,
    OrderPartiallyShipped,
    OrderPaymentFailed,
    OrderPaymentRecorded,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrderReservationRevoked,
    OrderReturnRejected,
    OrderReturnRequested,
    OrderShipmentUpdated,
    OrderShipped,
    OrderStepResent,
    OrderStockAllocated,
    OrderStockWaitOverdue,
    ShipmentsRequested,
    StockReservationRequested,
)
from libs.events.values import Allocation, OrderLine, Shipping, SkuQuantity

Status = Literal[
    "new",
    "placed",
    "on_hold",
    "approved",
    "awaiting_stock",
    "awaiting_payment",
    "confirmed",
    "partially_shipped",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "rejected",
    "needs_attention",
    # After delivery, goods came back (returns received): some of them, or every unit.
    "partially_returned",
    "returned",
    # Merged into another order by the order desk (its stock and money went there).
    "merged",
]
TERMINAL: frozenset[str] = frozenset({"completed", "cancelled", "rejected", "merged"})

# Where the saga stands. The status is what a person sees; the stage is what the saga waits for.
# "fulfilling": confirmed, its shipments asked for, until it is delivered and paid in full.
Stage = Literal[
    "none",
    "review",
    "reserving",
    "invoicing",
    "awaiting_payment",
    "done",
    "fulfilling",
    "compensating",
    "ended",
]
# Shipment milestones after which the goods have left the warehouse.
LEFT_THE_WAREHOUSE = frozenset({"dispatched", "collected", "delivered"})
ARRIVED = frozenset({"collected", "delivered"})


@dataclass(frozen=True)
class ShipmentView:
    """One of the order's shipments, as far as the order follows it."""

    warehouse: str
    status: str
    carrier: str | None = None
    tracking_number: str | None = None


@dataclass(frozen=True)
class Compensation:
    reason: str
    final_status: Literal["cancelled", "rejected"]
    actor: str
    pending: frozenset[str]
    attempts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingChange:
    """An amendment, split or merge under way (services/order/domain/desk.py): what the order
    will be once it is done, and what it waits for. Until then the order is as it was."""

    change_id: str
    kind: str
    lines: tuple[OrderLine, ...]
    shipping: Shipping
    subtotal: Decimal
    weight_kg: Decimal | None
    reason: str
    actor: str
    status_before: Status
    # "review": a person decides first (it crosses a review rule); "steps": the participants'
    # answers (`answered`); "credit": held for finance (billing refused the extra amount);
    # "undo": its reservation is being put back (finance refused).
    awaiting: str
    other_order_id: str | None = None
    moved: tuple[SkuQuantity, ...] = ()
    attempts: int = 1
    credit_override_by: str | None = None
    # The participants that did their part ("stock", "invoice"), and the invoice's answer.
    answered: frozenset[str] = frozenset()
    invoice_total: Decimal | None = None
    invoice_paid: Decimal | None = None
    transferred: Decimal = Decimal("0")
    refunded: Decimal = Decimal("0")


@dataclass(frozen=True)
class Order:
    order_id: str = ""
    status: Status = "new"
    stage: Stage = "none"
    placed: OrderPlaced | None = None
    hold_reasons: tuple[str, ...] = ()
    # The saga step a person's decision is awaited at: "review" (the automatic review held
    # it) or "invoice" (billing refused the credit and the policy holds it for finance).
    held_at: str | None = None
    # Who in finance let the order take its customer over the credit limit.
    credit_override_by: str | None = None
    stock_requested: bool = False
    stock_allocated: bool = False
    invoice_requested: bool = False
    invoice_id: str | None = None
    # The invoice's own due date, kept while the order waits for the other step of its group.
    invoice_due_at: datetime | None = None
    amount_due: Decimal = Decimal("0")
    amount_paid: Decimal = Decimal("0")
    amount_refunded: Decimal = Decimal("0")
    # Replies identify themselves by refund id / payment reference; seen ones change nothing.
    refund_ids: frozenset[str] = frozenset()
    payment_references: frozenset[str] = frozenset()
    payment_deadline: datetime | None = None
    # Declined payment attempts while the order waited for payment, by their references.
    payment_failures: int = 0
    failed_payment_references: frozenset[str] = frozenset()
    compensation: Compensation | None = None
    last_reason: str | None = None
    # How many times each forward step's request was sent (absent: once).
    step_attempts: dict[str, int] = field(default_factory=dict)
    # The forward step whose unanswered request parked the order for a person (its reply
    # deadline is no longer chased); cleared when it is answered or sent again.
    parked_step: str | None = None
    allocations: tuple[Allocation, ...] = ()
    shipments_requested: bool = False
    shipments: dict[str, ShipmentView] = field(default_factory=dict)
    # Shipments that had left when the order's stock was last revoked. The allocation it is
    # reserved again with holds only what had not left, so they cover none of its warehouses.
    left_before_revocation: frozenset[str] = frozenset()
    # Stock the order held was revoked (an adjustment) and inventory is reserving it again.
    stock_revoked: bool = False
    # The status to go back to when re-reserved stock arrives for an order past reservation.
    status_before_stock_wait: Status | None = None
    # Backordered: inventory will reserve the missing stock when it arrives. Overdue: the wait
    # passed the policy's alert time (a person was told); then cancelled at stock_cancel_at.
    waiting_for_stock: bool = False
    stock_missing: tuple[SkuQuantity, ...] = ()
    stock_alert_at: datetime | None = None
    stock_wait_overdue: bool = False
    stock_cancel_at: datetime | None = None
    # Returns: units that came back per SKU, and the units open returns have asked for (by
    # return id) until each is rejected or received.
    returned: dict[str, int] = field(default_factory=dict)
    returns_open: dict[str, tuple[SkuQuantity, ...]] = field(default_factory=dict)
    # The order desk: the change under way, how many were made (each makes the commands that
    # follow it new messages), the orders units were split into, the order it was merged into.
    change: PendingChange | None = None
    change_ids: frozenset[str] = frozenset()
    changes_made: int = 0
    split_into: tuple[str, ...] = ()
    merged_into: str | None = None
    amount_transferred: Decimal = Decimal("0")

    @property
    def ordered(self) -> dict[str, int]:
        """Units ordered per SKU (an order may list a SKU on several lines)."""
        quantities: dict[str, int] = {}
        for line in self.placed.lines if self.placed is not None else ():
            quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
        return quantities

    def returnable(self, sku: str) -> int:
        """Units of `sku` a new return may still ask for: ordered, less those returned and
        those open returns ask for."""
        asked = sum(
            line.quantity for lines in self.returns_open.values() for line in lines if line.sku == sku
        )
        return self.ordered.get(sku, 0) - self.returned.get(sku, 0) - asked

    @property
    def exists(self) -> bool:
        return self.placed is not None

    @property
    def is_closed(self) -> bool:
        return self.status in TERMINAL

    @property
    def warehouses_to_ship_from(self) -> frozenset[str]:
        return frozenset(a.warehouse for a in self.allocations)

    @property
    def live_shipments(self) -> dict[str, ShipmentView]:
        return {i: s for i, s in self.shipments.items() if s.status != "cancelled"}

    @property
    def dispatched_any(self) -> bool:
        return any(s.status in LEFT_THE_WAREHOUSE for s in self.shipments.values())

    @property
    def all_shipments_created(self) -> bool:
        covered = {
            s.warehouse for i, s in self.live_shipments.items() if i not in self.left_before_revocation
        }
        return bool(covered) and covered >= self.warehouses_to_ship_from

    @property
    def paid_in_full(self) -> bool:
        return self.amount_paid >= self.amount_due

    @property
    def held_for_credit(self) -> bool:
        return self.status == "on_hold" and self.held_at == "invoice"

    @property
    def invoiced(self) -> bool:
        return self.invoice_id is not None


def evolve(state: Order, event: DomainEvent) -> Order:  # noqa: C901 - one branch per event
    match event:
        case OrderPlaced():
            return replace(state, order_id=event.order_id, status="placed", stage="review", placed=event)
        case OrderHeld():
            # Past review only billing's credit check holds an order (reserving: its stock
            # reservation runs beside the invoice, a parallel group).
            held_at = "review" if state.stage in ("none", "review") else "invoice"
            return replace(state, status="on_hold", hold_reasons=event.reasons, held_at=held_at)
        case OrderApproved():
            status: Status = "awaiting_stock" if event.waiting_for_stock else "approved"
            return replace(state, status=status, hold_reasons=(), held_at=None)
        case OrderCreditLimitOverridden():
            return replace(state, credit_override_by=event.approved_by)
        case StockReservationRequested():
            return replace(state, stage="reserving", stock_requested=True)
        case OrderStepResent():
            return replace(
                state,
                step_attempts={**state.step_attempts, event.step: event.attempt},
                parked_step=None if state.parked_step == event.step else state.parked_step,
            )
        case OrderAwaitingStock():
            waiting_since = state.status if state.stage != "reserving" else None
            return replace(
                state,
                # Held for finance (a parallel credit check): the decision awaited is shown.
                status="on_hold" if state.status == "on_hold" else "awaiting_stock",
                parked_step=_unparked(state, "reserve_stock"),
                status_before_stock_wait=waiting_since,
                waiting_for_stock=True,
                stock_missing=event.missing,
                stock_alert_at=event.alert_at,
                stock_wait_overdue=False,
                stock_cancel_at=None,
            )
        case OrderStockWaitOverdue():
            return replace(
                state,
                status="on_hold" if state.status == "on_hold" else "needs_attention",
                last_reason=event.reason,
                stock_wait_overdue=True,
                stock_cancel_at=event.cancel_at,
            )
        case OrderStockAllocated():
            # Also after a needs_attention park for a late answer: the saga goes on. Past the
            # reservation (its stock was revoked and is reserved again) the status it had.
            status = state.status_before_stock_wait or "approved"
            if state.status == "on_hold" or (
                state.stage != "reserving" and state.status not in ("awaiting_stock", "needs_attention")
            ):
                status = state.status
            return replace(
                state,
                status=status,
                # Reserved: the group's other step (the invoice) is what the saga waits for.
                stage="invoicing" if state.stage == "reserving" else state.stage,
                parked_step=_unparked(state, "reserve_stock"),
                stock_allocated=True,
                allocations=event.allocations,
                status_before_stock_wait=None,
                stock_revoked=False,
                waiting_for_stock=False,
                stock_missing=(),
                stock_alert_at=None,
                stock_wait_overdue=False,
                stock_cancel_at=None,
            )
        case ShipmentsRequested():
            return replace(state, stage="fulfilling", shipments_requested=True)
        case OrderShipmentUpdated():
            shipment = ShipmentView(
                event.warehouse,
                event.status,
                event.carrier or _known(state, event.shipment_id, "carrier"),
                event.tracking_number or _known(state, event.shipment_id, "tracking_number"),
            )
            return replace(state, shipments={**state.shipments, event.shipment_id: shipment})
        case OrderPartiallyShipped():
            return replace(state, status="partially_shipped")
        case OrderShipped():
            return replace(state, status="shipped")
        case OrderDelivered():
            return replace(state, status="delivered")
        case OrderCompleted():
            return replace(state, status="completed", stage="ended")
        case OrderReservationRevoked():
            left = frozenset(i for i, s in state.shipments.items() if s.status in LEFT_THE_WAREHOUSE)
            return replace(state, stock_revoked=True, left_before_revocation=left)
        case InvoiceRequested():
            # Beside a reservation still open (a parallel group) the stage stays reserving:
            # the stage names the first open step.
            stage: Stage = "reserving" if state.stage == "reserving" else "invoicing"
            return replace(state, stage=stage, invoice_requested=True)
        case OrderInvoiced():
            return replace(
                state,
                invoice_id=event.invoice_id,
                amount_due=event.amount_due,
                invoice_due_at=event.due_at,
                parked_step=_unparked(state, "invoice"),
            )
        case OrderAwaitingPayment():
            return replace(
                state,
                status="awaiting_payment",
                stage="awaiting_payment",
                parked_step=_unparked(state, "invoice"),
                invoice_id=event.invoice_id,
                amount_due=event.amount_due,
                payment_deadline=event.payment_deadline,
            )
        case OrderPaymentFailed():
            return replace(
                state,
                payment_failures=event.attempt,
                failed_payment_references=state.failed_payment_references | {event.reference},
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
            return replace(state, status="needs_attention", last_reason=event.reason, parked_step=event.step)
        case OrderReturnRequested():
            return replace(state, returns_open={**state.returns_open, event.return_id: event.lines})
        case OrderReturnRejected():
            return replace(state, returns_open=_without(state.returns_open, event.return_id))
        case OrderChangeRequested():
            change = PendingChange(
                change_id=event.change_id,
                kind=event.kind,
                lines=event.lines,
                shipping=event.shipping,
                subtotal=event.subtotal,
                weight_kg=event.weight_kg,
                reason=event.reason,
                actor=event.requested_by,
                status_before=state.status,
                awaiting="review" if event.hold_reasons else "steps",
                other_order_id=event.other_order_id,
                moved=event.moved,
            )
            ids = state.change_ids | {event.change_id}
            if event.hold_reasons:
                return replace(
                    state,
                    change=change,
                    change_ids=ids,
                    status="on_hold",
                    held_at="change",
                    hold_reasons=event.hold_reasons,
                )
            return replace(state, change=change, change_ids=ids)
        case OrderChangeApproved() if state.change is not None:
            change = state.change
            override = event.approved_by if event.credit_override else change.credit_override_by
            return replace(
                state,
                change=replace(change, awaiting="steps", attempts=1, credit_override_by=override),
                status=change.status_before,
                held_at=None,
                hold_reasons=(),
            )
        case OrderChangeStepAnswered() if state.change is not None:
            change = replace(state.change, answered=state.change.answered | {event.step}, attempts=1)
            if event.step == "invoice":
                change = replace(
                    change,
                    invoice_total=event.total,
                    invoice_paid=event.amount_paid,
                    transferred=event.transferred,
                    refunded=event.refunded,
                )
            return replace(state, change=change)
        case OrderChangeResent() if state.change is not None:
            return replace(state, change=replace(state.change, attempts=event.attempt))
        case OrderChangeHeld() if state.change is not None:
            return replace(
                state,
                change=replace(state.change, awaiting="credit"),
                status="on_hold",
                held_at="change",
                hold_reasons=event.reasons,
            )
        case OrderChangeUndoing() if state.change is not None:
            return replace(
                state,
                change=replace(state.change, awaiting="undo", attempts=1),
                status=state.change.status_before,
                held_at=None,
                hold_reasons=(),
                last_reason=event.reason,
            )
        case OrderChangeRefused() if state.change is not None:
            held = state.status == "on_hold" and state.held_at == "change"
            return replace(
                state,
                change=None,
                status=state.change.status_before if held else state.status,
                held_at=None if held else state.held_at,
                hold_reasons=() if held else state.hold_reasons,
                last_reason=event.reason,
            )
        case OrderAmended():
            placed = state.placed
            if placed is not None:
                placed = placed.model_copy(
                    update={
                        "lines": event.lines,
                        "shipping": event.shipping,
                        "subtotal": event.subtotal,
                        "weight_kg": event.weight_kg,
                    }
                )
            held = state.status == "on_hold" and state.held_at == "change"
            status = state.change.status_before if held and state.change is not None else state.status
            return replace(
                state,
                placed=placed,
                status=status,
                held_at=None if held else state.held_at,
                hold_reasons=() if held else state.hold_reasons,
                amount_due=event.total if event.total is not None else state.amount_due,
                amount_paid=event.amount_paid if event.amount_paid is not None else state.amount_paid,
                amount_transferred=state.amount_transferred + event.transferred,
                change=None,
                change_ids=state.change_ids | {event.change_id},
                changes_made=state.changes_made + 1,
                split_into=state.split_into + ((event.split_into,) if event.split_into else ()),
            )
        case OrderMerged():
            return replace(
                state,
                status="merged",
                stage="ended",
                change=None,
                changes_made=state.changes_made + 1,
                merged_into=event.into_order_id,
                amount_transferred=state.amount_transferred + event.transferred,
                last_reason=event.reason,
            )
        case OrderGoodsReturned() if event.replaced:
            return replace(state, returns_open=_without(state.returns_open, event.return_id))
        case OrderGoodsReturned():
            returned = dict(state.returned)
            for line in event.lines:
                returned[line.sku] = returned.get(line.sku, 0) + line.quantity
            return replace(
                state,
                status="returned" if event.fully_returned else "partially_returned",
                returned=returned,
                returns_open=_without(state.returns_open, event.return_id),
            )
    return state


def _without(
    open_returns: dict[str, tuple[SkuQuantity, ...]], return_id: str
) -> dict[str, tuple[SkuQuantity, ...]]:
    return {key: lines for key, lines in open_returns.items() if key != return_id}


def _unparked(state: Order, answered_step: str) -> str | None:
    return None if state.parked_step == answered_step else state.parked_step


def _known(state: Order, shipment_id: str, attribute: str) -> str | None:
    shipment = state.shipments.get(shipment_id)
    return getattr(shipment, attribute) if shipment is not None else None


ORDER = AggregateKind[Order]("order", Order, evolve)
