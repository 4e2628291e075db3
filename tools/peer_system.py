"""The peer: OrderMesh's order-to-confirmed flow written on the `eventsourcing` library, the
Python event-sourcing library a user would otherwise pick, the way its documentation teaches:
aggregates whose methods record events (`@event`), one `ProcessApplication` per context whose
`policy` reacts to the events of the applications it follows, a `System` of pipes wiring them,
and a runner, in one process, with no broker. `tools/peer_bench.py` drives it.

The flow and its rules, in the spirit of OrderMesh's (not its every rule):
  place (client)      Order placed and reviewed in one transaction: rejected when a line is
                      empty or on-account terms come from a channel that does not offer them,
                      held over an amount limit, else approved and stock requested
  Inventory           reserves every line, the customer's region's warehouse first, then the
                      others; all or nothing: a shortage refuses the reservation
  Orders              stock allocated, invoice requested (or cancelled on a shortage)
  Billing             invoice with 20 % tax and a shipping fee; on account: the customer's
                      credit limit is checked and charged, or the invoice is refused
  Orders              prepaid: awaiting payment; on account: confirmed (credit refused:
                      cancelled, and Inventory releases the stock)
  pay (client)        Billing records the payment on the invoice, once per reference
  Orders              payment recorded, confirmed

Durability is the library's: each command and each processed event is one PostgreSQL
transaction (with the follower's tracking row in it, so a redelivered event is not applied
twice), on whatever fsync and synchronous_commit the server has (tools/peer_bench.py reports
both). What it does not do that OrderMesh does: no HTTP, authentication, outbox, Kafka,
separate processes or databases per service, personal-data encryption, saga deadlines,
backorders, catalogue look-ups, shipments; so it is the cost of the flow itself on the same
database, a floor for what a single-process design on this library pays.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.persistence import Recording
from eventsourcing.system import ProcessApplication, System
from eventsourcing.utils import get_topic

TAX_RATE = Decimal("0.20")
SHIPPING_FEE = {"standard": Decimal("4.90"), "pickup": Decimal("0.00")}
REVIEW_AMOUNT_LIMIT = Decimal("5000.00")
ON_ACCOUNT_CHANNELS = frozenset({"b2b", "erp", "phone"})
WAREHOUSES = (("PEER-NORTH", "north"), ("PEER-SOUTH", "south"), ("PEER-WEST", "west"))

Line = dict[str, Any]  # {"sku": str, "quantity": int, "unit_price": Decimal}


def stock_item_id(sku: str, warehouse: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"peer:stock:{sku}:{warehouse}")


def reservation_id(order_id: UUID) -> UUID:
    return uuid5(NAMESPACE_URL, f"peer:reservation:{order_id}")


def invoice_id(order_id: UUID) -> UUID:
    return uuid5(NAMESPACE_URL, f"peer:invoice:{order_id}")


def account_id(customer_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"peer:account:{customer_id}")


# --- aggregates -------------------------------------------------------------------------


class Order(Aggregate):
    class Placed(Aggregate.Created):
        channel: str
        customer_id: str
        region: str
        lines: list[Line]
        payment_terms: str
        shipping_method: str
        subtotal: Decimal

    class Approved(Aggregate.Event):
        pass

    class Held(Aggregate.Event):
        reasons: list[str]

    class Rejected(Aggregate.Event):
        reason: str

    class StockRequested(Aggregate.Event):
        lines: list[Line]
        region: str

    class StockAllocated(Aggregate.Event):
        allocations: list[dict[str, Any]]

    class InvoiceRequested(Aggregate.Event):
        customer_id: str
        payment_terms: str
        shipping_method: str
        lines: list[Line]

    class AwaitingPayment(Aggregate.Event):
        invoice_id: UUID
        amount_due: Decimal

    class PaymentRecorded(Aggregate.Event):
        amount_paid: Decimal

    class Confirmed(Aggregate.Event):
        total: Decimal

    class Cancelled(Aggregate.Event):
        reason: str
        allocations: list[dict[str, Any]]

    @event(Placed)
    def __init__(
        self,
        channel: str,
        customer_id: str,
        region: str,
        lines: list[Line],
        payment_terms: str,
        shipping_method: str,
        subtotal: Decimal,
    ) -> None:
        self.channel = channel
        self.customer_id = customer_id
        self.region = region
        self.lines = lines
        self.payment_terms = payment_terms
        self.shipping_method = shipping_method
        self.subtotal = subtotal
        self.status = "placed"
        self.allocations: list[dict[str, Any]] = []
        self.total = Decimal(0)

    def review(self) -> None:
        """The automatic review: reject what cannot be fulfilled, hold what a person must see."""
        if any(int(line["quantity"]) < 1 for line in self.lines):
            self.reject("a line has no quantity")
        elif self.payment_terms == "on_account" and self.channel not in ON_ACCOUNT_CHANNELS:
            self.reject(f"payment terms on_account are not offered on channel {self.channel}")
        elif self.subtotal > REVIEW_AMOUNT_LIMIT:
            self.hold([f"order value {self.subtotal} is over the review limit of {REVIEW_AMOUNT_LIMIT}"])
        else:
            self.approve()
            self.request_stock(self.lines, self.region)

    @event(Approved)
    def approve(self) -> None:
        self.status = "approved"

    @event(Held)
    def hold(self, reasons: list[str]) -> None:
        self.status = "on_hold"

    @event(Rejected)
    def reject(self, reason: str) -> None:
        self.status = "rejected"

    @event(StockRequested)
    def request_stock(self, lines: list[Line], region: str) -> None:
        self.status = "reserving"

    @event(StockAllocated)
    def allocate(self, allocations: list[dict[str, Any]]) -> None:
        self.allocations = allocations
        self.status = "reserved"

    @event(InvoiceRequested)
    def request_invoice(
        self, customer_id: str, payment_terms: str, shipping_method: str, lines: list[Line]
    ) -> None:
        self.status = "invoicing"

    @event(AwaitingPayment)
    def await_payment(self, invoice_id: UUID, amount_due: Decimal) -> None:
        self.total = amount_due
        self.status = "awaiting_payment"

    @event(PaymentRecorded)
    def record_payment(self, amount_paid: Decimal) -> None:
        self.amount_paid = amount_paid

    @event(Confirmed)
    def confirm(self, total: Decimal) -> None:
        self.total = total
        self.status = "confirmed"

    @event(Cancelled)
    def cancel(self, reason: str, allocations: list[dict[str, Any]]) -> None:
        self.status = "cancelled"


class StockItem(Aggregate):
    """One SKU in one warehouse."""

    class Opened(Aggregate.Created):
        sku: str
        warehouse: str

    class Received(Aggregate.Event):
        quantity: int

    class Reserved(Aggregate.Event):
        order_id: UUID
        quantity: int

    class Released(Aggregate.Event):
        order_id: UUID
        quantity: int

    @classmethod
    def open(cls, sku: str, warehouse: str) -> StockItem:
        return cls._create(cls.Opened, id=stock_item_id(sku, warehouse), sku=sku, warehouse=warehouse)

    @event(Opened)
    def __init__(self, sku: str, warehouse: str) -> None:
        self.sku = sku
        self.warehouse = warehouse
        self.on_hand = 0
        self.reserved = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @event(Received)
    def receive(self, quantity: int) -> None:
        self.on_hand += quantity

    @event(Reserved)
    def reserve(self, order_id: UUID, quantity: int) -> None:
        self.reserved += quantity

    @event(Released)
    def release(self, order_id: UUID, quantity: int) -> None:
        self.reserved -= quantity


class Reservation(Aggregate):
    """The answer to one order's stock request."""

    class Made(Aggregate.Created):
        order_id: UUID
        allocations: list[dict[str, Any]]

    class Refused(Aggregate.Created):
        order_id: UUID
        missing: list[dict[str, Any]]

    @classmethod
    def made(cls, order_id: UUID, allocations: list[dict[str, Any]]) -> Reservation:
        return cls._create(cls.Made, id=reservation_id(order_id), order_id=order_id, allocations=allocations)

    @classmethod
    def refused(cls, order_id: UUID, missing: list[dict[str, Any]]) -> Reservation:
        return cls._create(cls.Refused, id=reservation_id(order_id), order_id=order_id, missing=missing)

    @event(Made)
    def __init__(self, order_id: UUID, allocations: list[dict[str, Any]] | None = None) -> None:
        self.order_id = order_id


class CustomerAccount(Aggregate):
    class Granted(Aggregate.Created):
        customer_id: str
        credit_limit: Decimal

    class Charged(Aggregate.Event):
        invoice_id: UUID
        amount: Decimal

    @classmethod
    def grant(cls, customer_id: str, credit_limit: Decimal) -> CustomerAccount:
        return cls._create(
            cls.Granted, id=account_id(customer_id), customer_id=customer_id, credit_limit=credit_limit
        )

    @event(Granted)
    def __init__(self, customer_id: str, credit_limit: Decimal) -> None:
        self.credit_limit = credit_limit
        self.balance = Decimal(0)

    @event(Charged)
    def charge(self, invoice_id: UUID, amount: Decimal) -> None:
        self.balance += amount


class Invoice(Aggregate):
    class Issued(Aggregate.Created):
        order_id: UUID
        payment_terms: str
        net: Decimal
        tax: Decimal
        shipping_fee: Decimal
        total: Decimal

    class CreditRefused(Aggregate.Created):
        order_id: UUID
        reason: str

    class PaymentReceived(Aggregate.Event):
        amount: Decimal
        reference: str

    class Paid(Aggregate.Event):
        order_id: UUID
        amount_paid: Decimal

    @classmethod
    def issue(cls, order_id: UUID, payment_terms: str, lines: list[Line], shipping_method: str) -> Invoice:
        net = sum((Decimal(line["unit_price"]) * int(line["quantity"]) for line in lines), Decimal(0))
        tax = (net * TAX_RATE).quantize(Decimal("0.01"))
        fee = SHIPPING_FEE[shipping_method]
        return cls._create(
            cls.Issued,
            id=invoice_id(order_id),
            order_id=order_id,
            payment_terms=payment_terms,
            net=net,
            tax=tax,
            shipping_fee=fee,
            total=net + tax + fee,
        )

    @classmethod
    def refuse_credit(cls, order_id: UUID, reason: str) -> Invoice:
        return cls._create(cls.CreditRefused, id=invoice_id(order_id), order_id=order_id, reason=reason)

    @event(Issued)
    def __init__(self, order_id: UUID, total: Decimal = Decimal(0), **_: Any) -> None:
        self.order_id = order_id
        self.total = total
        self.amount_paid = Decimal(0)
        self.references: list[str] = []
        self.status = "issued"

    def pay(self, amount: Decimal, reference: str) -> None:
        if reference in self.references:
            return  # the gateway called again with the same payment
        if self.status != "issued":
            raise ValueError(f"invoice {self.id} is {self.status}: it takes no payment")
        self.receive_payment(amount, reference)
        if self.amount_paid >= self.total:
            self.settle(self.order_id, self.amount_paid)

    @event(PaymentReceived)
    def receive_payment(self, amount: Decimal, reference: str) -> None:
        self.amount_paid += amount
        self.references.append(reference)

    @event(Paid)
    def settle(self, order_id: UUID, amount_paid: Decimal) -> None:
        self.status = "paid"


# --- applications -----------------------------------------------------------------------


class Orders(ProcessApplication[UUID]):
    topics = (
        get_topic(Reservation.Made),
        get_topic(Reservation.Refused),
        get_topic(Invoice.Issued),
        get_topic(Invoice.CreditRefused),
        get_topic(Invoice.Paid),
    )

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        # Who wants to hear of each order event once it is committed (the bench's channel).
        self.listeners: list[Callable[[DomainEventProtocol[UUID]], None]] = []

    def place_order(
        self,
        channel: str,
        customer_id: str,
        region: str,
        lines: list[Line],
        payment_terms: str,
        shipping_method: str,
    ) -> UUID:
        subtotal = sum((Decimal(line["unit_price"]) * int(line["quantity"]) for line in lines), Decimal(0))
        order = Order(channel, customer_id, region, lines, payment_terms, shipping_method, subtotal)
        order.review()
        self.save(order)
        return order.id

    def get_order(self, order_id: UUID) -> Order:
        order: Order = self.repository.get(order_id)
        return order

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        super()._notify(recordings)
        for recording in recordings:
            for listener in self.listeners:
                listener(recording.domain_event)

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        """Events of other kinds change nothing here."""

    @policy.register
    def _(self, made: Reservation.Made, processing_event: ProcessingEvent[UUID]) -> None:
        order = self.get_order(made.order_id)
        if order.status != "reserving":
            return
        order.allocate(made.allocations)
        order.request_invoice(order.customer_id, order.payment_terms, order.shipping_method, order.lines)
        processing_event.collect_events(order)

    @policy.register
    def _(self, refused: Reservation.Refused, processing_event: ProcessingEvent[UUID]) -> None:
        order = self.get_order(refused.order_id)
        if order.status == "reserving":
            order.cancel("not enough stock", [])
            processing_event.collect_events(order)

    @policy.register
    def _(self, issued: Invoice.Issued, processing_event: ProcessingEvent[UUID]) -> None:
        order = self.get_order(issued.order_id)
        if order.status != "invoicing":
            return
        if issued.payment_terms == "prepaid":
            order.await_payment(issued.originator_id, issued.total)
        else:
            order.confirm(issued.total)
        processing_event.collect_events(order)

    @policy.register
    def _(self, refused: Invoice.CreditRefused, processing_event: ProcessingEvent[UUID]) -> None:
        order = self.get_order(refused.order_id)
        if order.status == "invoicing":
            # Inventory releases what the order held when it sees the cancellation.
            order.cancel(refused.reason, order.allocations)
            processing_event.collect_events(order)

    @policy.register
    def _(self, paid: Invoice.Paid, processing_event: ProcessingEvent[UUID]) -> None:
        order = self.get_order(paid.order_id)
        if order.status != "awaiting_payment":
            return
        order.record_payment(paid.amount_paid)
        order.confirm(order.total)
        processing_event.collect_events(order)


class Inventory(ProcessApplication[UUID]):
    topics = (get_topic(Order.StockRequested), get_topic(Order.Cancelled))

    def receive_stock(self, sku: str, warehouse: str, quantity: int) -> None:
        try:
            item: StockItem = self.repository.get(stock_item_id(sku, warehouse))
        except AggregateNotFoundError:  # the first receipt opens the item
            item = StockItem.open(sku, warehouse)
        item.receive(quantity)
        self.save(item)

    def stock_item(self, sku: str, warehouse: str) -> StockItem:
        item: StockItem = self.repository.get(stock_item_id(sku, warehouse))
        return item

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        """Events of other kinds change nothing here."""

    @policy.register
    def _(self, requested: Order.StockRequested, processing_event: ProcessingEvent[UUID]) -> None:
        # The library's tracking row makes each event processed once: no "answered already?" query.
        order_id = requested.originator_id
        regional = [code for code, region in WAREHOUSES if region == requested.region]
        others = [code for code, region in WAREHOUSES if region != requested.region]
        items: dict[UUID, StockItem] = {}
        allocations: list[dict[str, Any]] = []
        missing: list[dict[str, Any]] = []
        for line in requested.lines:
            wanted = int(line["quantity"])
            for warehouse in (*regional, *others):
                key = stock_item_id(line["sku"], warehouse)
                if key not in items:
                    try:
                        items[key] = self.repository.get(key)
                    except AggregateNotFoundError:  # nothing was ever received there
                        continue
                item = items[key]
                take = min(item.available, wanted)
                if take > 0:
                    item.reserve(order_id, take)
                    allocations.append({"sku": line["sku"], "warehouse": warehouse, "quantity": take})
                    wanted -= take
                if wanted == 0:
                    break
            if wanted:
                missing.append({"sku": line["sku"], "quantity": wanted})
        if missing:  # all or nothing: the reservations above (on copies) are never saved
            processing_event.collect_events(Reservation.refused(order_id, missing))
            return
        processing_event.collect_events(*items.values(), Reservation.made(order_id, allocations))

    @policy.register
    def _(self, cancelled: Order.Cancelled, processing_event: ProcessingEvent[UUID]) -> None:
        for allocation in cancelled.allocations:
            item = self.stock_item(allocation["sku"], allocation["warehouse"])
            item.release(cancelled.originator_id, int(allocation["quantity"]))
            processing_event.collect_events(item)


class Billing(ProcessApplication[UUID]):
    topics = (get_topic(Order.InvoiceRequested),)

    def grant_credit(self, customer_id: str, credit_limit: Decimal) -> None:
        self.save(CustomerAccount.grant(customer_id, credit_limit))

    def record_payment(self, order_id: UUID, amount: Decimal, reference: str) -> None:
        invoice: Invoice = self.repository.get(invoice_id(order_id))
        invoice.pay(amount, reference)
        self.save(invoice)

    def get_invoice(self, order_id: UUID) -> Invoice:
        invoice: Invoice = self.repository.get(invoice_id(order_id))
        return invoice

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        """Events of other kinds change nothing here."""

    @policy.register
    def _(self, requested: Order.InvoiceRequested, processing_event: ProcessingEvent[UUID]) -> None:
        order_id = requested.originator_id
        invoice = Invoice.issue(order_id, requested.payment_terms, requested.lines, requested.shipping_method)
        if requested.payment_terms == "on_account":
            try:
                account: CustomerAccount | None = self.repository.get(account_id(requested.customer_id))
            except AggregateNotFoundError:  # no credit was ever granted
                account = None
            if account is None:
                refusal = Invoice.refuse_credit(order_id, "no credit granted to the customer")
                processing_event.collect_events(refusal)
                return
            if account.balance + invoice.total > account.credit_limit:
                reason = f"over the credit limit of {account.credit_limit}"
                processing_event.collect_events(Invoice.refuse_credit(order_id, reason))
                return
            account.charge(invoice.id, invoice.total)
            processing_event.collect_events(account)
        processing_event.collect_events(invoice)


SYSTEM = System(pipes=[[Orders, Inventory, Orders], [Orders, Billing, Orders]])
