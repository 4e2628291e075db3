"""What each public event changes in the reporting tables (migrations/0001_*.sql).

Every event is applied with statements whose effect does not depend on the order of events
from different topics (an invoice may be read before its order): rows are inserted with
ON CONFLICT DO NOTHING or upserted, and the reports join the tables when they are read. Events
of one aggregate arrive in order (one Kafka key), so updates of a row keyed by it are safe.
A message applied twice changes nothing the second time either: the inbox drops it, and the
inserts are keyed by the event or the thing it created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from libs.events import Envelope, Message
from libs.events.billing import (
    CreditNoteIssued,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceLine,
    InvoicePaid,
    InvoiceVoided,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
)
from libs.events.inventory import (
    BackorderDequeued,
    BackorderMoved,
    BackorderQueued,
    BackorderResized,
    ProductRegistered,
    ProductUpdated,
    ReservationAdjusted,
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    StockAdjusted,
    StockAllocated,
    StockConsumed,
    StockDeallocated,
    StockDispatched,
    StockReceived,
    StockShortage,
    StockTransferredIn,
    StockTransferredOut,
    StockTransitWrittenOff,
    WarehouseRegistered,
)
from libs.events.order import (
    CustomerBlocked,
    CustomerErased,
    CustomerRegistered,
    CustomerUnblocked,
    OrderAmended,
    OrderMerged,
    OrderPlaced,
    OrderStatusChanged,
)
from libs.events.production import (
    ProductionCancelled,
    ProductionCompleted,
    ProductionOrderCreated,
    ProductionProgressed,
    ProductionReleased,
    ProductionScheduled,
    QualityCheckFailed,
    QualityCheckPassed,
)
from libs.events.values import Allocation, OrderLine
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch
from services.reporting.adapters.fact_rows import FactRows
from services.reporting.domain.regions import order_region

# -- dimensions -------------------------------------------------------------------------------

_CUSTOMER_ORDERED = Sql(
    "INSERT INTO customers (customer_id, region, first_order_at) VALUES (:c, :region, :at)"
    " ON CONFLICT (customer_id) DO UPDATE SET region = COALESCE(customers.region, EXCLUDED.region),"
    " first_order_at = LEAST(customers.first_order_at, EXCLUDED.first_order_at)"
)
_CUSTOMER_REGISTERED = Sql(
    "INSERT INTO customers (customer_id, region, registered_at) VALUES (:c, :region, :at)"
    " ON CONFLICT (customer_id) DO UPDATE SET region = COALESCE(EXCLUDED.region, customers.region),"
    " registered_at = COALESCE(customers.registered_at, EXCLUDED.registered_at)"
)
_CUSTOMER_FLAGS = Sql(
    "INSERT INTO customers (customer_id, blocked, erased)"
    " VALUES (:c, COALESCE(:blocked, false), COALESCE(:erased, false))"
    " ON CONFLICT (customer_id) DO UPDATE SET blocked = COALESCE(:blocked, customers.blocked),"
    " erased = customers.erased OR COALESCE(:erased, false)"
)
_PRODUCT = Sql(
    "INSERT INTO products (sku, name, category, unit, weight_kg, manufactured, updated_at)"
    " VALUES (:sku, :name, :category, :unit, :weight_kg, :manufactured, :at)"
    " ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,"
    " unit = EXCLUDED.unit, weight_kg = EXCLUDED.weight_kg, manufactured = EXCLUDED.manufactured,"
    " updated_at = EXCLUDED.updated_at"
)
_WAREHOUSE = Sql(
    "INSERT INTO warehouses (code, name, region) VALUES (:code, :name, :region)"
    " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region"
)

# -- orders -----------------------------------------------------------------------------------

_ORDER = FactRows(
    "INSERT INTO orders (order_id, channel, customer_id, region, country, currency, payment_terms,"
    " shipping_method, subtotal, placed_at, status, status_at, origin, split_from)"
    " VALUES (:order_id, :channel, :customer_id, :region, :country, :currency, :payment_terms,"
    " :shipping_method, :subtotal, :at, 'placed', :at, :origin, :split_from) ON CONFLICT DO NOTHING",
    order_id="text",
    channel="text",
    customer_id="text",
    region="text",
    country="text",
    currency="text",
    payment_terms="text",
    shipping_method="text",
    subtotal="numeric",
    at="timestamptz",
    origin="text",
    split_from="text",
)
_ORDER_LINE = FactRows(
    "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, tax_category)"
    " VALUES (:order_id, :line_no, :sku, :quantity, :unit_price, :tax_category) ON CONFLICT DO NOTHING",
    order_id="text",
    line_no="integer",
    sku="text",
    quantity="bigint",
    unit_price="numeric",
    tax_category="text",
)
# The order desk changed the order's lines or delivery (OrderAmended): its lines are replaced
# (_CLEAR_ORDER_LINES, then _ORDER_LINE for each new one); a new address moves it to the
# new country's region.
_ORDER_AMENDED = Sql(
    "UPDATE orders SET subtotal = :subtotal, shipping_method = :shipping_method,"
    " country = COALESCE(CAST(:country AS text), country), region = COALESCE(CAST(:region AS text), region)"
    " WHERE order_id = :order_id"
)
_CLEAR_ORDER_LINES = Sql("DELETE FROM order_lines WHERE order_id = :order_id")
_ORDER_MERGED = Sql("UPDATE orders SET merged_into = :into_order_id WHERE order_id = :order_id")
_ORDER_STATUS = Sql(
    "UPDATE orders SET status = :status, status_at = :at, status_reason = :reason"
    " WHERE order_id = :order_id AND status_at <= :at"
)
_STATUS_CHANGE = FactRows(
    "INSERT INTO order_status_changes (event_id, order_id, status, previous_status, reason, changed_at)"
    " VALUES (:event_id, :order_id, :status, :previous_status, :reason, :at) ON CONFLICT DO NOTHING",
    event_id="uuid",
    order_id="text",
    status="text",
    previous_status="text",
    reason="text",
    at="timestamptz",
)
# The key, beside an allocation row's columns, of the whole allocation that row belongs to.
_WHOLE_ALLOCATION = "whole_allocation"
# An allocation told at `at` replaces the order's allocation told before it, never one told
# after it: the order's status changes and inventory's answers to the order desk
# (ReservationAdjusted) come on two topics, read in no particular order between them.
_CLEAR_ALLOCATIONS = Sql(
    "DELETE FROM order_allocations WHERE order_id = :order_id"
    " AND COALESCE(noted_at, '-infinity') <= CAST(:at AS timestamptz)"
)
_ALLOCATION = Sql(
    "INSERT INTO order_allocations (order_id, sku, warehouse, quantity, noted_at)"
    " SELECT CAST(:order_id AS text), CAST(:sku AS text), CAST(:warehouse AS text),"
    " CAST(:quantity AS bigint), CAST(:at AS timestamptz) WHERE NOT EXISTS (SELECT 1 FROM"
    " order_allocations WHERE order_id = CAST(:order_id AS text) AND noted_at > CAST(:at AS timestamptz))"
    " ON CONFLICT (order_id, sku, warehouse) DO UPDATE SET quantity = EXCLUDED.quantity,"
    " noted_at = EXCLUDED.noted_at"
)
_SHORTAGE = FactRows(
    "INSERT INTO order_shortages (event_id, part, order_id, sku, quantity, backordered, noted_at)"
    " VALUES (:event_id, :part, :order_id, :sku, :quantity, :backordered, :at) ON CONFLICT DO NOTHING",
    event_id="uuid",
    part="integer",
    order_id="text",
    sku="text",
    quantity="bigint",
    backordered="boolean",
    at="timestamptz",
)

# -- billing ----------------------------------------------------------------------------------

_INVOICE = FactRows(
    "INSERT INTO invoices (invoice_id, order_id, customer_id, currency, subtotal, tax, shipping_fee,"
    " total, status, payment_terms, issued_at, due_at)"
    " VALUES (:invoice_id, :order_id, :customer_id, :currency, :subtotal, :tax, :shipping_fee,"
    " :total, 'open', :payment_terms, :at, :due_at) ON CONFLICT DO NOTHING",
    invoice_id="text",
    order_id="text",
    customer_id="text",
    currency="text",
    subtotal="numeric",
    tax="numeric",
    shipping_fee="numeric",
    total="numeric",
    payment_terms="text",
    at="timestamptz",
    due_at="timestamptz",
)
_INVOICE_LINE = FactRows(
    "INSERT INTO invoice_lines (invoice_id, order_id, line_no, sku, quantity, net, tax, gross)"
    " VALUES (:invoice_id, :order_id, :line_no, :sku, :quantity, :net, :tax, :gross)"
    " ON CONFLICT DO NOTHING",
    invoice_id="text",
    order_id="text",
    line_no="integer",
    sku="text",
    quantity="bigint",
    net="numeric",
    tax="numeric",
    gross="numeric",
)
# The order desk changed the invoice (InvoiceAdjusted): its amounts and lines are the ones it
# has now (lines: _CLEAR_INVOICE_LINES, then _INVOICE_LINE each). `amount_paid` is what it
# keeps after a transfer to another order's invoice; `paid_back` what a change's credit note
# refunded of it, which pays for nothing any more (billing's `outstanding` says how much:
# total - (amount_paid - paid_back); without it, the refunds of its changes add up).
_INVOICE_ADJUSTED = Sql(
    "UPDATE invoices SET subtotal = COALESCE(:subtotal, subtotal), tax = COALESCE(:tax, tax),"
    " shipping_fee = COALESCE(:shipping_fee, shipping_fee), total = :total, amount_paid = :amount_paid,"
    " paid_back = COALESCE(CAST(:amount_paid AS numeric) - CAST(:total AS numeric)"
    " + CAST(:outstanding AS numeric), paid_back + CAST(:refund_amount AS numeric)),"
    " status = COALESCE(CAST(:status AS text), status),"
    " paid_at = CASE WHEN COALESCE(CAST(:status AS text), status) = 'paid'"
    " THEN COALESCE(paid_at, CAST(:at AS timestamptz)) END"
    " WHERE invoice_id = :invoice_id"
)
_CLEAR_INVOICE_LINES = Sql("DELETE FROM invoice_lines WHERE invoice_id = :invoice_id")
_PAYMENT = FactRows(
    "INSERT INTO payments (event_id, reference, order_id, invoice_id, method, amount, outcome, recorded_at)"
    " VALUES (:event_id, :reference, :order_id, :invoice_id, :method, :amount, :outcome, :at)"
    " ON CONFLICT DO NOTHING",
    event_id="uuid",
    reference="text",
    order_id="text",
    invoice_id="text",
    method="text",
    amount="numeric",
    outcome="text",
    at="timestamptz",
)
_INVOICE_PAID_SO_FAR = Sql(
    "UPDATE invoices SET amount_paid = GREATEST(amount_paid, :amount_paid) WHERE invoice_id = :invoice_id"
)
_INVOICE_PAID = Sql(
    "UPDATE invoices SET status = 'paid', paid_at = :at, amount_paid = :amount_paid"
    " WHERE invoice_id = :invoice_id AND status = 'open'"
)
_INVOICE_VOID = Sql(
    "UPDATE invoices SET status = 'void', voided_at = :at, void_reason = :reason WHERE order_id = :order_id"
)
_REFUND = FactRows(
    "INSERT INTO refunds (refund_id, order_id, invoice_id, amount, reason, issued_at)"
    " VALUES (:refund_id, :order_id, :invoice_id, :amount, :reason, :at) ON CONFLICT DO NOTHING",
    refund_id="text",
    order_id="text",
    invoice_id="text",
    amount="numeric",
    reason="text",
    at="timestamptz",
)
# A return's credit note (CreditNoteIssued). Its own row, not a change to its invoice's: what
# it takes off what the invoice owes is summed when read (report_invoices), which gives the
# same figure whether the invoice was read before it or after.
_CREDIT_NOTE = FactRows(
    "INSERT INTO credit_notes (credit_note_id, invoice_id, order_id, return_id, amount, refund_amount,"
    " refund_id, reason, issued_at)"
    " VALUES (:credit_note_id, :invoice_id, :order_id, :return_id, :amount, :refund_amount, :refund_id,"
    " :reason, :at) ON CONFLICT DO NOTHING",
    credit_note_id="text",
    invoice_id="text",
    order_id="text",
    return_id="text",
    amount="numeric",
    refund_amount="numeric",
    refund_id="text",
    reason="text",
    at="timestamptz",
)

# -- stock and shipments ------------------------------------------------------------------------

_MOVEMENT = FactRows(
    "INSERT INTO stock_movements (event_id, part, sku, warehouse, kind, moved_at, on_hand, reserved,"
    " in_transit, backordered, order_id)"
    " VALUES (:event_id, :part, :sku, :warehouse, :kind, :at, :on_hand, :reserved, :in_transit,"
    " :backordered, :order_id) ON CONFLICT DO NOTHING",
    event_id="uuid",
    part="integer",
    sku="text",
    warehouse="text",
    kind="text",
    at="timestamptz",
    on_hand="bigint",
    reserved="bigint",
    in_transit="bigint",
    backordered="bigint",
    order_id="text",
)
# BackorderDequeued does not say how much: what the order still had queued for the SKU.
_BACKORDER_DEQUEUED = Sql(
    "INSERT INTO stock_movements (event_id, part, sku, warehouse, kind, moved_at, backordered, order_id)"
    " SELECT :event_id, 0, :sku, '', 'backorder_dequeued', :at, -COALESCE(sum(backordered), 0), :order_id"
    " FROM stock_movements WHERE sku = :sku AND warehouse = '' AND order_id = :order_id"
    " ON CONFLICT DO NOTHING"
)
# BackorderResized says the new quantity: the movement is the difference to what was queued.
_BACKORDER_RESIZED = Sql(
    "INSERT INTO stock_movements (event_id, part, sku, warehouse, kind, moved_at, backordered, order_id)"
    " SELECT :event_id, 0, :sku, '', 'backorder_resized', :at, :quantity - COALESCE(sum(backordered), 0),"
    " :order_id FROM stock_movements WHERE sku = :sku AND warehouse = '' AND order_id = :order_id"
    " ON CONFLICT DO NOTHING"
)
_SHIPMENT = FactRows(
    "INSERT INTO shipments (shipment_id, order_id, warehouse, method, units, status, created_at)"
    " VALUES (:shipment_id, :order_id, :warehouse, :method, :units, 'created', :at) ON CONFLICT DO NOTHING",
    shipment_id="text",
    order_id="text",
    warehouse="text",
    method="text",
    units="bigint",
    at="timestamptz",
)
_SHIPMENT_DISPATCHED = Sql(
    "UPDATE shipments SET status = :status, dispatched_at = COALESCE(dispatched_at, :at),"
    " carrier = COALESCE(:carrier, carrier), tracking_number = COALESCE(:tracking_number, tracking_number)"
    " WHERE shipment_id = :shipment_id"
)
_SHIPMENT_DELIVERED = Sql(
    "UPDATE shipments SET status = 'delivered', delivered_at = COALESCE(delivered_at, :at)"
    " WHERE shipment_id = :shipment_id"
)
_SHIPMENT_CANCELLED = Sql(
    "UPDATE shipments SET status = 'cancelled', cancelled_at = COALESCE(cancelled_at, :at)"
    " WHERE shipment_id = :shipment_id"
)

# -- production -----------------------------------------------------------------------------------

_PRODUCTION_ORDER = FactRows(
    "INSERT INTO production_orders (production_order_id, sku, planned_quantity, status, created_at, due_at)"
    " VALUES (:production_order_id, :sku, :quantity, 'created', :at, :due) ON CONFLICT DO NOTHING",
    production_order_id="text",
    sku="text",
    quantity="bigint",
    at="timestamptz",
    due="timestamptz",
)
# A later status never goes back to an earlier one (a progress report after completion).
_PRODUCTION_STATUS = Sql(
    "UPDATE production_orders SET status = :status WHERE production_order_id = :production_order_id"
    " AND status NOT IN ('completed', 'cancelled')"
)
_QUALITY = Sql(
    "UPDATE production_orders SET quality_passed = quality_passed + :passed,"
    " quality_failed = quality_failed + :failed WHERE production_order_id = :production_order_id"
)
_PRODUCTION_COMPLETED = Sql(
    "UPDATE production_orders SET status = 'completed', completed_quantity = :passed, completed_at = :at"
    " WHERE production_order_id = :production_order_id"
)

# -- freshness ----------------------------------------------------------------------------------

_POSITION = Sql(
    "INSERT INTO source_positions (topic, events, last_occurred_at, last_applied_at)"
    " VALUES (:topic, :events, :occurred_at, now())"
    " ON CONFLICT (topic) DO UPDATE SET events = source_positions.events + EXCLUDED.events,"
    " last_occurred_at = GREATEST(source_positions.last_occurred_at, EXCLUDED.last_occurred_at),"
    " last_applied_at = now()"
)

Projection = Callable[[WriteBatch, Envelope, Any], None]


def _at(envelope: Envelope) -> datetime:
    return envelope.occurred_at


# -- order topic ----------------------------------------------------------------------------------


def _order_placed(writes: WriteBatch, envelope: Envelope, event: OrderPlaced) -> None:
    row = ("order", event.order_id)
    address = event.shipping.address
    country = address.country if address is not None else None
    split = event.origin == "split"
    writes.add(
        _ORDER,
        {
            "order_id": event.order_id,
            "channel": event.channel,
            "customer_id": event.customer_id,
            "region": order_region(country, event.customer.region),
            "country": country,
            "currency": event.currency,
            "payment_terms": event.payment_terms,
            "shipping_method": event.shipping.method,
            "subtotal": event.subtotal,
            "at": _at(envelope),
            "origin": event.origin,
            "split_from": event.moved_from[0].order_id if split and event.moved_from else None,
        },
        row,
    )
    _order_lines(writes, event.order_id, event.lines)
    writes.add(
        _CUSTOMER_ORDERED,
        {"c": event.customer_id, "region": event.customer.region, "at": _at(envelope)},
        ("customer", event.customer_id),
    )


def _order_lines(writes: WriteBatch, order_id: str, lines: Iterable[OrderLine]) -> None:
    # One row key for all the order's lines: an amendment's delete of them all comes after
    # every line written before it in the batch, and before the new ones.
    for line_no, line in enumerate(lines):
        writes.add(
            _ORDER_LINE,
            {
                "order_id": order_id,
                "line_no": line_no,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "tax_category": line.tax_category,
            },
            ("order_lines", order_id),
        )


def _order_amended(writes: WriteBatch, envelope: Envelope, event: OrderAmended) -> None:
    """The order's lines are the new ones (an amendment, or what a split left it); its
    delivery may have changed (a new address: the new country's region)."""
    address = event.shipping.address
    country = address.country if address is not None else None
    writes.add(
        _ORDER_AMENDED,
        {
            "order_id": event.order_id,
            "subtotal": event.subtotal,
            "shipping_method": event.shipping.method,
            "country": country,
            "region": order_region(country, None) if country else None,
        },
        ("order", event.order_id),
    )
    writes.add(_CLEAR_ORDER_LINES, {"order_id": event.order_id}, ("order_lines", event.order_id))
    _order_lines(writes, event.order_id, event.lines)


def _order_merged(writes: WriteBatch, envelope: Envelope, event: OrderMerged) -> None:
    writes.add(
        _ORDER_MERGED,
        {"order_id": event.order_id, "into_order_id": event.into_order_id},
        ("order", event.order_id),
    )


def _order_status_changed(writes: WriteBatch, envelope: Envelope, event: OrderStatusChanged) -> None:
    row = ("order", event.order_id)
    at = _at(envelope)
    writes.add(
        _ORDER_STATUS,
        {"order_id": event.order_id, "status": event.status, "reason": event.reason, "at": at},
        row,
    )
    writes.add(
        _STATUS_CHANGE,
        {
            "event_id": envelope.event_id,
            "order_id": event.order_id,
            "status": event.status,
            "previous_status": event.previous_status,
            "reason": event.reason,
            "at": at,
        },
        ("status_change", envelope.event_id),
    )
    _allocation(writes, event.order_id, event.allocations, at)


def _allocation(writes: WriteBatch, order_id: str, whole: tuple[Allocation, ...], at: datetime) -> None:
    """The order's whole allocation as it stands at `at`: it replaces the one before. Released
    stock (a cancellation, a merge, a wait) sends none, and the order keeps where it was
    reserved."""
    if not whole:
        return
    allocations = ("allocations", order_id)
    last = writes.queued(_ALLOCATION, allocations)
    if last is not None and last[_WHOLE_ALLOCATION] == whole:
        # Each status change repeats the allocation: the same one queued again in this
        # batch would delete and insert the same rows (and add three layers to the flush).
        return
    writes.add(_CLEAR_ALLOCATIONS, {"order_id": order_id, "at": at}, allocations)
    for allocation in whole:
        writes.add(
            _ALLOCATION,
            {
                "order_id": order_id,
                **allocation.model_dump(),
                "at": at,
                # Not a column: what the last row queued for the order was part of.
                _WHOLE_ALLOCATION: whole,
            },
            allocations,
        )


def _reservation_adjusted(writes: WriteBatch, envelope: Envelope, event: ReservationAdjusted) -> None:
    """Inventory's answer to the order desk: the order's allocation now (its stock levels
    follow from the StockAllocated / StockDeallocated / Backorder* events beside it)."""
    _allocation(writes, event.order_id, event.allocations, _at(envelope))


def _customer_registered(writes: WriteBatch, envelope: Envelope, event: CustomerRegistered) -> None:
    writes.add(
        _CUSTOMER_REGISTERED,
        {"c": event.customer_id, "region": event.region, "at": _at(envelope)},
        ("customer", event.customer_id),
    )


def _customer_flags(blocked: bool | None, erased: bool | None) -> Projection:
    def project(writes: WriteBatch, envelope: Envelope, event: Any) -> None:
        writes.add(
            _CUSTOMER_FLAGS,
            {"c": event.customer_id, "blocked": blocked, "erased": erased},
            ("customer", event.customer_id),
        )

    return project


# -- billing topic --------------------------------------------------------------------------------


def _invoice_issued(writes: WriteBatch, envelope: Envelope, event: InvoiceIssued) -> None:
    writes.add(
        _INVOICE,
        {
            **event.model_dump(
                include={
                    "invoice_id",
                    "order_id",
                    "customer_id",
                    "currency",
                    "subtotal",
                    "tax",
                    "shipping_fee",
                    "total",
                    "payment_terms",
                    "due_at",
                }
            ),
            "at": _at(envelope),
        },
        ("invoice", event.order_id),
    )
    _invoice_lines(writes, event.invoice_id, event.order_id, event.lines)


def _invoice_lines(writes: WriteBatch, invoice_id: str, order_id: str, lines: Iterable[InvoiceLine]) -> None:
    # One row key for all the invoice's lines, as for an order's (_order_lines).
    for line_no, line in enumerate(lines):
        value = line.quantity * line.unit_price
        # Invoices issued before tax was worked out per line carry no net/tax/gross: their
        # lines count as net, untaxed.
        net = line.net if line.net is not None else value
        tax = line.tax if line.tax is not None else 0
        writes.add(
            _INVOICE_LINE,
            {
                "invoice_id": invoice_id,
                "order_id": order_id,
                "line_no": line_no,
                "sku": line.sku,
                "quantity": line.quantity,
                "net": net,
                "tax": tax,
                "gross": line.gross if line.gross is not None else net + tax,
            },
            ("invoice_lines", invoice_id),
        )


def _invoice_adjusted(writes: WriteBatch, envelope: Envelope, event: InvoiceAdjusted) -> None:
    """An amendment's new invoice (a supplementary invoice or a credit note, and the refund
    of an overpayment), or a source of a split or merge after its lines left: its amounts,
    what it keeps of the money paid, its status (a merged one: closed, total 0) and lines."""
    writes.add(
        _INVOICE_ADJUSTED,
        {
            **event.model_dump(
                include={
                    "invoice_id",
                    "subtotal",
                    "tax",
                    "shipping_fee",
                    "total",
                    "amount_paid",
                    "outstanding",
                    "refund_amount",
                    "status",
                }
            ),
            "at": _at(envelope),
        },
        ("invoice", event.order_id),
    )
    writes.add(_CLEAR_INVOICE_LINES, {"invoice_id": event.invoice_id}, ("invoice_lines", event.invoice_id))
    _invoice_lines(writes, event.invoice_id, event.order_id, event.lines)


def _payment(writes: WriteBatch, envelope: Envelope, event: PaymentReceived | PaymentFailed) -> None:
    writes.add(
        _PAYMENT,
        {
            "event_id": envelope.event_id,
            "reference": event.reference,
            "order_id": event.order_id,
            "invoice_id": event.invoice_id,
            "method": event.method,
            "amount": event.amount,
            "outcome": "succeeded" if isinstance(event, PaymentReceived) else "failed",
            "at": _at(envelope),
        },
        ("payment", envelope.event_id),
    )
    if isinstance(event, PaymentReceived):
        writes.add(
            _INVOICE_PAID_SO_FAR,
            {"invoice_id": event.invoice_id, "amount_paid": event.amount_paid},
            ("invoice", event.order_id),
        )


def _invoice_paid(writes: WriteBatch, envelope: Envelope, event: InvoicePaid) -> None:
    writes.add(
        _INVOICE_PAID,
        {"invoice_id": event.invoice_id, "amount_paid": event.amount_paid, "at": _at(envelope)},
        ("invoice", event.order_id),
    )


def _invoice_voided(writes: WriteBatch, envelope: Envelope, event: InvoiceVoided) -> None:
    writes.add(
        _INVOICE_VOID,
        {"order_id": event.order_id, "reason": event.reason, "at": _at(envelope)},
        ("invoice", event.order_id),
    )


def _refund(writes: WriteBatch, envelope: Envelope, event: RefundIssued) -> None:
    writes.add(
        _REFUND,
        {
            **event.model_dump(include={"refund_id", "order_id", "invoice_id", "amount", "reason"}),
            "at": _at(envelope),
        },
        ("refund", event.refund_id),
    )


def _credit_note(writes: WriteBatch, envelope: Envelope, event: CreditNoteIssued) -> None:
    """Returned lines credited against the order's invoice; the refund of the part paid back
    comes as a RefundIssued of its own."""
    writes.add(
        _CREDIT_NOTE,
        {
            **event.model_dump(
                include={
                    "credit_note_id",
                    "invoice_id",
                    "order_id",
                    "return_id",
                    "amount",
                    "refund_amount",
                    "refund_id",
                    "reason",
                }
            ),
            "at": _at(envelope),
        },
        ("credit_note", event.credit_note_id),
    )


# -- inventory topic ------------------------------------------------------------------------------


def _product(writes: WriteBatch, envelope: Envelope, event: ProductRegistered | ProductUpdated) -> None:
    writes.add(
        _PRODUCT,
        {
            **event.model_dump(include={"sku", "name", "category", "unit", "weight_kg", "manufactured"}),
            "at": _at(envelope),
        },
        ("product", event.sku),
    )


def _warehouse(writes: WriteBatch, envelope: Envelope, event: WarehouseRegistered) -> None:
    writes.add(_WAREHOUSE, event.model_dump(include={"code", "name", "region"}), ("warehouse", event.code))


def _movements(
    writes: WriteBatch,
    envelope: Envelope,
    sku: str,
    kind: str,
    changes: Iterable[tuple[str, dict[str, int]]],
    order_id: str | None = None,
) -> None:
    """One stock_movements row per warehouse the event changed: (warehouse, deltas)."""
    for part, (warehouse, deltas) in enumerate(changes):
        writes.add(
            _MOVEMENT,
            {
                "event_id": envelope.event_id,
                "part": part,
                "sku": sku,
                "warehouse": warehouse,
                "kind": kind,
                "at": _at(envelope),
                "on_hand": deltas.get("on_hand", 0),
                "reserved": deltas.get("reserved", 0),
                "in_transit": deltas.get("in_transit", 0),
                "backordered": deltas.get("backordered", 0),
                "order_id": order_id,
            },
            ("movement", envelope.event_id, part),
        )


def _stock(writes: WriteBatch, envelope: Envelope, event: Any) -> None:  # noqa: C901 - one arm per event
    match event:
        case StockReceived():
            _movements(
                writes, envelope, event.sku, "received", [(event.warehouse, {"on_hand": event.quantity})]
            )
        case StockAllocated():
            changes = [(w, {"reserved": q}) for w, q in sorted(event.warehouses.items())]
            _movements(writes, envelope, event.sku, "allocated", changes, event.order_id)
        case StockDeallocated():
            changes = [(w, {"reserved": -q}) for w, q in sorted(event.warehouses.items())]
            _movements(writes, envelope, event.sku, "deallocated", changes, event.order_id)
        case StockDispatched():
            deltas = {"on_hand": -event.quantity, "reserved": -event.quantity}
            _movements(writes, envelope, event.sku, "dispatched", [(event.warehouse, deltas)], event.order_id)
        case StockConsumed():  # components that went into production
            deltas = {"on_hand": -event.quantity, "reserved": -event.quantity}
            _movements(writes, envelope, event.sku, "consumed", [(event.warehouse, deltas)], event.order_id)
        case StockAdjusted():
            _movements(writes, envelope, event.sku, "adjusted", [(event.warehouse, {"on_hand": event.delta})])
        case StockTransferredOut():
            # In transit counts at the warehouse it is on its way to.
            changes = [
                (event.from_warehouse, {"on_hand": -event.quantity}),
                (event.to_warehouse, {"in_transit": event.quantity}),
            ]
            _movements(writes, envelope, event.sku, "transferred_out", changes)
        case StockTransferredIn():
            deltas = {"in_transit": -event.quantity, "on_hand": event.quantity}
            _movements(writes, envelope, event.sku, "transferred_in", [(event.to_warehouse, deltas)])
        case StockTransitWrittenOff():
            deltas = {"in_transit": -event.quantity}
            _movements(writes, envelope, event.sku, "transit_written_off", [(event.to_warehouse, deltas)])
        case BackorderQueued():
            writes.add(
                _MOVEMENT,
                {
                    "event_id": envelope.event_id,
                    "part": 0,
                    "sku": event.sku,
                    "warehouse": "",
                    "kind": "backorder_queued",
                    "at": _at(envelope),
                    "on_hand": 0,
                    "reserved": 0,
                    "in_transit": 0,
                    "backordered": event.quantity,
                    "order_id": event.order_id,
                },
                ("backorder", event.sku, event.order_id),
            )
        case BackorderDequeued():
            writes.add(
                _BACKORDER_DEQUEUED,
                {
                    "event_id": envelope.event_id,
                    "sku": event.sku,
                    "order_id": event.order_id,
                    "at": _at(envelope),
                },
                ("backorder", event.sku, event.order_id),
            )


def _backorder_changed(writes: WriteBatch, envelope: Envelope, event: Any) -> None:
    """An amended order waits for another quantity; a split or merge moved queued units from
    one order to another (the order desk)."""
    if isinstance(event, BackorderResized):
        params = {"event_id": envelope.event_id, "sku": event.sku, "quantity": event.quantity}
        params |= {"order_id": event.order_id, "at": _at(envelope)}
        writes.add(_BACKORDER_RESIZED, params, ("backorder", event.sku, event.order_id))
        return
    moves = ((event.to_order_id, event.quantity), (event.from_order_id, -event.quantity))
    for part, (order_id, units) in enumerate(moves):
        writes.add(
            _MOVEMENT,
            {
                "event_id": envelope.event_id,
                "part": part,
                "sku": event.sku,
                "warehouse": "",
                "kind": "backorder_moved",
                "at": _at(envelope),
                "on_hand": 0,
                "reserved": 0,
                "in_transit": 0,
                "backordered": units,
                "order_id": order_id,
            },
            ("backorder", event.sku, order_id),
        )


def _shortage(writes: WriteBatch, envelope: Envelope, event: StockShortage) -> None:
    for part, line in enumerate(event.missing):
        writes.add(
            _SHORTAGE,
            {
                "event_id": envelope.event_id,
                "part": part,
                "order_id": event.order_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "backordered": event.backordered,
                "at": _at(envelope),
            },
            ("shortage", envelope.event_id, part),
        )


def _shipment(writes: WriteBatch, envelope: Envelope, event: Any) -> None:
    row = ("shipment", event.shipment_id)
    at = _at(envelope)
    match event:
        case ShipmentCreated():
            writes.add(
                _SHIPMENT,
                {
                    "shipment_id": event.shipment_id,
                    "order_id": event.order_id,
                    "warehouse": event.warehouse,
                    "method": event.method,
                    "units": sum(line.quantity for line in event.lines),
                    "at": at,
                },
                row,
            )
        case ShipmentDispatched():
            writes.add(
                _SHIPMENT_DISPATCHED,
                {
                    "shipment_id": event.shipment_id,
                    "status": "dispatched",
                    "carrier": event.carrier,
                    "tracking_number": event.tracking_number,
                    "at": at,
                },
                row,
            )
        case ShipmentCollected():
            left = {"shipment_id": event.shipment_id, "carrier": None, "tracking_number": None, "at": at}
            writes.add(_SHIPMENT_DISPATCHED, {**left, "status": "collected"}, row)
            # Handed over at the counter: delivered at the same moment.
            writes.add(_SHIPMENT_DELIVERED, {"shipment_id": event.shipment_id, "at": at}, row)
        case ShipmentDelivered():
            writes.add(_SHIPMENT_DELIVERED, {"shipment_id": event.shipment_id, "at": at}, row)
        case ShipmentCancelled():
            writes.add(_SHIPMENT_CANCELLED, {"shipment_id": event.shipment_id, "at": at}, row)


# -- production topic -------------------------------------------------------------------------------

PRODUCTION_STATUSES: dict[type[Message], str] = {
    ProductionReleased: "released",
    ProductionScheduled: "scheduled",
    ProductionProgressed: "in_progress",
    ProductionCancelled: "cancelled",
}


def _production(writes: WriteBatch, envelope: Envelope, event: Any) -> None:
    row = ("production_order", event.production_order_id)
    at = _at(envelope)
    match event:
        case ProductionOrderCreated():
            writes.add(
                _PRODUCTION_ORDER,
                {
                    "production_order_id": event.production_order_id,
                    "sku": event.sku,
                    "quantity": event.quantity,
                    "due": event.due,
                    "at": at,
                },
                row,
            )
        case QualityCheckPassed() | QualityCheckFailed():
            failed = event.failed if isinstance(event, QualityCheckFailed) else 0
            writes.add(
                _QUALITY,
                {"production_order_id": event.production_order_id, "passed": event.passed, "failed": failed},
                row,
            )
        case ProductionCompleted():
            writes.add(
                _PRODUCTION_COMPLETED,
                {"production_order_id": event.production_order_id, "passed": event.passed, "at": at},
                row,
            )
        case _:
            writes.add(
                _PRODUCTION_STATUS,
                {
                    "production_order_id": event.production_order_id,
                    "status": PRODUCTION_STATUSES[type(event)],
                },
                row,
            )


PROJECTIONS: dict[type[Message], Projection] = {
    # order
    OrderPlaced: _order_placed,
    OrderStatusChanged: _order_status_changed,
    OrderAmended: _order_amended,
    OrderMerged: _order_merged,
    CustomerRegistered: _customer_registered,
    CustomerBlocked: _customer_flags(True, None),
    CustomerUnblocked: _customer_flags(False, None),
    CustomerErased: _customer_flags(None, True),
    # billing
    InvoiceIssued: _invoice_issued,
    InvoiceAdjusted: _invoice_adjusted,
    PaymentReceived: _payment,
    PaymentFailed: _payment,
    InvoicePaid: _invoice_paid,
    InvoiceVoided: _invoice_voided,
    RefundIssued: _refund,
    CreditNoteIssued: _credit_note,
    # inventory
    ProductRegistered: _product,
    ProductUpdated: _product,
    WarehouseRegistered: _warehouse,
    StockReceived: _stock,
    StockAllocated: _stock,
    StockDeallocated: _stock,
    StockDispatched: _stock,
    StockConsumed: _stock,
    StockAdjusted: _stock,
    StockTransferredOut: _stock,
    StockTransferredIn: _stock,
    StockTransitWrittenOff: _stock,
    BackorderQueued: _stock,
    BackorderDequeued: _stock,
    BackorderResized: _backorder_changed,
    BackorderMoved: _backorder_changed,
    StockShortage: _shortage,
    ReservationAdjusted: _reservation_adjusted,
    ShipmentCreated: _shipment,
    ShipmentDispatched: _shipment,
    ShipmentCollected: _shipment,
    ShipmentDelivered: _shipment,
    ShipmentCancelled: _shipment,
    # production
    ProductionOrderCreated: _production,
    ProductionReleased: _production,
    ProductionScheduled: _production,
    ProductionProgressed: _production,
    QualityCheckPassed: _production,
    QualityCheckFailed: _production,
    ProductionCompleted: _production,
    ProductionCancelled: _production,
}


def project(writes: WriteBatch, envelope: Envelope, message: Message) -> None:
    """Queue what `message` changes in the reporting tables, and the freshness of its topic."""
    PROJECTIONS[type(message)](writes, envelope, message)
    note_position(writes, message.topic, envelope.occurred_at)


def note_position(writes: WriteBatch, topic: str, occurred_at: datetime) -> None:
    """One upsert per topic per flush, however many of its events the flush applies."""
    row = ("position", topic)
    queued = writes.queued(_POSITION, row)
    if queued is not None:
        queued["events"] += 1
        queued["occurred_at"] = max(queued["occurred_at"], occurred_at)
        return
    writes.add(_POSITION, {"topic": topic, "events": 1, "occurred_at": occurred_at}, row)
