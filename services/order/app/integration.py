"""The order service's public messages on oms.order.events.v1, derived from what each unit of
work recorded (the runtime's IntegrationTranslator; docs/events.md).

The saga's bookkeeping events stay in the store. A reader gets OrderPlaced and OrderRefunded
as recorded, the customer events, and one OrderStatusChanged per order per transaction in
which its status changed: from the status before the transaction (or `placed`, when the
transaction placed it: OrderPlaced says that one) to the status after, however many steps it
took in between.
"""

from __future__ import annotations

from typing import Any

from libs.events import Message
from libs.events.order import OrderStatusChanged, ShipmentSummary
from libs.events.values import SkuQuantity
from libs.runtime.uow import AggregateChange, published_events
from services.order.domain.order import ORDER, Order

# The status an order has once OrderPlaced is recorded: where a reader's chain starts.
PLACED = "placed"
# Statuses whose reason is the order's last one (the hold reasons are the on_hold ones').
_REASONED = frozenset({"cancelled", "rejected", "needs_attention"})


def public_messages(change: AggregateChange[Any]) -> list[Message]:
    messages = published_events(change)
    if change.kind is not ORDER:
        return messages
    before: Order = change.before
    after: Order = change.after
    previous = before.status if before.exists else PLACED
    if after.exists and after.status != previous:
        messages.append(status_changed(after, previous))
    return messages


def status_changed(order: Order, previous_status: str) -> OrderStatusChanged:
    placed = order.placed
    if placed is None:
        raise ValueError(f"order {order.order_id!r} has no OrderPlaced: no status to tell")
    return OrderStatusChanged(
        order_id=order.order_id,
        status=order.status,
        previous_status=previous_status,
        channel=placed.channel,
        customer_id=placed.customer_id,
        currency=placed.currency,
        payment_terms=placed.payment_terms,
        reason=_reason(order),
        hold_reasons=order.hold_reasons if order.status == "on_hold" else (),
        subtotal=placed.subtotal,
        total=order.amount_due if order.invoiced else None,
        invoice_id=order.invoice_id,
        amount_paid=order.amount_paid,
        amount_refunded=order.amount_refunded,
        payment_deadline=order.payment_deadline if order.status == "awaiting_payment" else None,
        missing=order.stock_missing if order.waiting_for_stock else (),
        allocations=order.allocations,
        shipments=tuple(
            ShipmentSummary(
                shipment_id=shipment_id,
                warehouse=shipment.warehouse,
                status=shipment.status,
                carrier=shipment.carrier,
                tracking_number=shipment.tracking_number,
            )
            for shipment_id, shipment in sorted(order.shipments.items())
        ),
        returned=tuple(
            SkuQuantity(sku=sku, quantity=quantity)
            for sku, quantity in sorted(order.returned.items())
            if quantity
        ),
    )


def _reason(order: Order) -> str | None:
    if order.status == "on_hold":
        return "; ".join(order.hold_reasons) or order.last_reason
    if order.status in _REASONED:
        return order.last_reason
    return None
