"""The reporting projections and queries on a real database, fed public events directly: the
cases the platform test's order mix does not reach (production, a line split across
warehouses, backorders served, components consumed, events read out of order, a credit note
read before its invoice)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events import Message, make_envelope
from libs.events.billing import (
    CreditNoteIssued,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceLine,
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
    StockAllocated,
    StockConsumed,
    StockReceived,
)
from libs.events.order import (
    CustomerBlocked,
    CustomerErased,
    CustomerRegistered,
    CustomerUnblocked,
    MovedLines,
    OrderAmended,
    OrderMerged,
    OrderPlaced,
    OrderStatusChanged,
)
from libs.events.production import (
    ProductionCancelled,
    ProductionCompleted,
    ProductionOrderCreated,
    QualityCheckFailed,
    QualityCheckPassed,
)
from libs.events.values import Allocation, CustomerSnapshot, OrderLine, Shipping, SkuQuantity
from libs.runtime.db import admin_connection, create_engine, driver_connection, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import WriteBatch
from services.reporting.adapters import queries
from services.reporting.adapters.projections import project
from services.reporting.bootstrap import MIGRATIONS
from services.reporting.domain.reports import Period
from services.reporting.rebuild import READ_MODELS

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def reporting_db(settings: RuntimeSettings) -> AsyncIterator[AsyncEngine]:
    await ensure_database(settings, "reporting")
    engine = create_engine(settings, "reporting")
    await migrate(engine, MIGRATIONS)
    yield engine
    await engine.dispose()
    admin = await admin_connection(settings)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database_name("reporting")}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(reporting_db: AsyncEngine) -> AsyncEngine:
    async with reporting_db.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(READ_MODELS)}"))
    return reporting_db


async def apply(engine: AsyncEngine, *events: tuple[Message, datetime]) -> None:
    """Project the events (each at its time) in one flush, as a consumed batch is."""
    writes = WriteBatch()
    for message, at in events:
        envelope = make_envelope(
            message,
            event_id=uuid.uuid4(),
            aggregate_id="x",
            aggregate_version=1,
            occurred_at=at,
            correlation_id="c",
            causation_id=None,
            actor="test",
        )
        project(writes, envelope, message)
    async with engine.begin() as conn:
        await writes.flush(await driver_connection(conn))


async def rows(table: queries.Table) -> list[dict[str, Any]]:
    return [row async for row in table.rows]


def placed(order_id: str, lines: list[tuple[str, int, str]]) -> OrderPlaced:
    order_lines = tuple(OrderLine(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in lines)
    return OrderPlaced(
        order_id=order_id,
        channel="web",
        customer_id="c1",
        customer=CustomerSnapshot(name="C", region="north"),
        lines=order_lines,
        currency="EUR",
        payment_terms="prepaid",
        shipping=Shipping.model_validate({"method": "standard", "address": {"country": "DE"}}),
        subtotal=sum((line.quantity * line.unit_price for line in order_lines), Decimal("0")),
    )


def invoiced(order_id: str, sku: str, quantity: int, net: str, tax: str) -> InvoiceIssued:
    gross = Decimal(net) + Decimal(tax)
    return InvoiceIssued(
        order_id=order_id,
        invoice_id=f"inv-{order_id}",
        customer_id="c1",
        currency="EUR",
        lines=(
            InvoiceLine(
                sku=sku,
                quantity=quantity,
                unit_price=Decimal(net) / quantity,
                net=Decimal(net),
                tax=Decimal(tax),
                gross=gross,
            ),
        ),
        subtotal=Decimal(net),
        tax=Decimal(tax),
        shipping_fee=Decimal("0.00"),
        total=gross,
        payment_terms="prepaid",
        due_at=T0 + timedelta(hours=1),
    )


def status(
    order_id: str, now: str, before: str, allocations: tuple[Allocation, ...] = ()
) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=order_id,
        status=now,
        previous_status=before,
        channel="web",
        customer_id="c1",
        currency="EUR",
        payment_terms="prepaid",
        subtotal=Decimal("9.99"),
        amount_paid=Decimal("0"),
        amount_refunded=Decimal("0"),
        allocations=allocations,
    )


async def test_a_line_split_across_warehouses_adds_up_to_the_cent(db: AsyncEngine) -> None:
    split = (
        Allocation(sku="A", warehouse="NORTH", quantity=1),
        Allocation(sku="A", warehouse="SOUTH", quantity=2),
    )
    await apply(
        db,
        (placed("o1", [("A", 3, "3.33")]), T0),
        (invoiced("o1", "A", 3, "9.99", "2.00"), T0),
        (status("o1", "awaiting_payment", "placed", split), T0 + timedelta(seconds=1)),
    )

    report = await rows_of(db, ("warehouse",))

    assert [
        (r["warehouse"], r["units"], r["net_amount"], r["tax_amount"], r["gross_amount"]) for r in report
    ] == [
        ("NORTH", 1, Decimal("3.33"), Decimal("0.67"), Decimal("4.00")),
        ("SOUTH", 2, Decimal("6.66"), Decimal("1.33"), Decimal("7.99")),
    ]


async def rows_of(engine: AsyncEngine, group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return await rows(queries.orders(conn, group_by, Period(), None, None))


async def test_an_invoice_read_before_its_order_gives_the_same_report(db: AsyncEngine) -> None:
    await apply(db, (invoiced("o2", "B", 2, "20.00", "4.00"), T0))
    assert await rows_of(db, ("status",)) == []  # no order yet: nothing to report
    await apply(db, (placed("o2", [("B", 2, "10.00")]), T0))

    (row,) = await rows_of(db, ("status",))
    assert (row["status"], row["units"], row["net_amount"], row["tax_amount"]) == (
        "placed",
        2,
        Decimal("20.00"),
        Decimal("4.00"),
    )


async def test_a_served_backorder_and_consumed_components_leave_the_levels_right(db: AsyncEngine) -> None:
    await apply(
        db,
        (StockReceived(sku="C", warehouse="NORTH", quantity=10, receipt_id="r1"), T0),
        (BackorderQueued(sku="D", order_id="o3", quantity=5), T0),
        (StockAllocated(sku="C", order_id="p1", warehouses={"NORTH": 4}), T0 + timedelta(seconds=1)),
    )
    await apply(
        db,
        (BackorderDequeued(sku="D", order_id="o3"), T0 + timedelta(seconds=2)),
        (StockConsumed(sku="C", order_id="p1", warehouse="NORTH", quantity=4), T0 + timedelta(seconds=3)),
    )

    async with db.connect() as conn:
        levels = await rows(queries.inventory(conn, None, None, Period(), None))
        before = await rows(queries.inventory(conn, None, "D", Period(), T0 + timedelta(seconds=1)))
    assert [(r["sku"], r["warehouse"], r["on_hand"], r["reserved"], r["backordered"]) for r in levels] == [
        ("C", "NORTH", 6, 0, 0)
    ]  # D's backorder, served, leaves no row
    assert [(r["sku"], r["backordered"]) for r in before] == [("D", 5)]


async def test_backorders_moved_or_resized_by_the_order_desk_keep_the_backordered_units_right(
    db: AsyncEngine,
) -> None:
    await apply(
        db,
        (BackorderQueued(sku="D", order_id="o1", quantity=5), T0),
        (BackorderQueued(sku="D", order_id="o3", quantity=2), T0),
        (BackorderResized(sku="D", order_id="o3", quantity=4), T0 + timedelta(seconds=1)),
    )
    await apply(db, (BackorderMoved(sku="D", from_order_id="o1", to_order_id="o2", quantity=5), T0))

    async with db.connect() as conn:
        waiting = await rows(queries.inventory(conn, None, "D", Period(), None))
    await apply(db, (BackorderDequeued(sku="D", order_id="o2"), T0 + timedelta(seconds=2)))
    async with db.connect() as conn:
        served = await rows(queries.inventory(conn, None, "D", Period(), None))

    assert [(r["sku"], r["backordered"]) for r in waiting] == [("D", 9)]
    assert [(r["sku"], r["backordered"]) for r in served] == [("D", 4)]  # o1 moved all it waited for


async def test_production_planned_completed_lead_time_quality_and_lateness(db: AsyncEngine) -> None:
    def created(production_order_id: str, quantity: int, due: datetime) -> ProductionOrderCreated:
        return ProductionOrderCreated.model_validate(
            {
                "production_order_id": production_order_id,
                "sku": "M",
                "quantity": quantity,
                "warehouse": "NORTH",
                "due": due,
                "origin": "make_to_stock",
                "components": [],
                "operations": [
                    {
                        "task_id": "t1",
                        "operation": "assemble",
                        "work_center": "WC1",
                        "setup_minutes": "0",
                        "minutes_per_unit": "1",
                        "inspection": True,
                    }
                ],
            }
        )

    check = {"check_id": "q1", "task_id": "t1", "operation": "assemble"}
    await apply(
        db,
        (created("p1", 10, T0 + timedelta(hours=1)), T0),
        (created("p2", 5, T0 + timedelta(days=400)), T0),
        (QualityCheckPassed.model_validate({**check, "production_order_id": "p1", "passed": 6}), T0),
        (
            QualityCheckFailed.model_validate(
                {
                    **check,
                    "check_id": "q2",
                    "production_order_id": "p1",
                    "passed": 2,
                    "failed": 2,
                    "disposition": "scrap",
                    "reason": "cracked",
                }
            ),
            T0,
        ),
        (
            ProductionCompleted(
                production_order_id="p1",
                sku="M",
                warehouse="NORTH",
                quantity=10,
                passed=8,
                scrapped=2,
                receipt_id="r-p1",
            ),
            T0 + timedelta(hours=2),
        ),
        (ProductionCancelled(production_order_id="p2", reason="not needed", components_released=True), T0),
    )

    async with db.connect() as conn:
        (row,) = await rows(queries.production(conn, Period()))
        assert await rows(queries.production(conn, Period(start=T0 + timedelta(days=1)))) == []
    assert row == {
        "sku": "M",
        "production_orders": 2,
        "planned_quantity": 15,
        "completed_quantity": 8,
        "lead_time_p50_seconds": Decimal("7200"),
        "quality_pass_rate": Decimal("0.8000"),
        "late_orders": 1,  # p1 finished an hour after its due time; p2 is not due for a year
    }


async def test_customers_and_products_fill_their_dimensions(db: AsyncEngine) -> None:
    product = {"sku": "P1", "name": "Widget", "category": "tools", "unit": "pcs", "weight_kg": "1.250"}
    await apply(
        db,
        (placed("o4", [("P1", 1, "5.00")]), T0),
        (
            CustomerRegistered(customer_id="c1", name="pd:v1:k:sealed", region="south"),
            T0 + timedelta(seconds=1),
        ),
        (CustomerBlocked(customer_id="c1", reason="fraud"), T0 + timedelta(seconds=2)),
        (ProductRegistered.model_validate({**product, "manufactured": False}), T0),
    )
    await apply(
        db,
        (CustomerUnblocked(customer_id="c1"), T0 + timedelta(seconds=3)),
        (CustomerErased(customer_id="c1", reason="asked", erased_by="dpo"), T0 + timedelta(seconds=4)),
        (
            ProductUpdated.model_validate(
                {**product, "category": "hardware", "manufactured": True, "changed": ["category"]}
            ),
            T0,
        ),
    )

    async with db.connect() as conn:
        customer = (await conn.execute(text("SELECT * FROM customers"))).mappings().one()
        product_row = (await conn.execute(text("SELECT * FROM products"))).mappings().one()
        (line,) = (await conn.execute(text("SELECT category FROM report_order_lines"))).mappings().all()
    assert (customer["region"], customer["first_order_at"], customer["registered_at"]) == (
        "south",  # the order desk's registration is the master data; an order's snapshot only fills a gap
        T0,
        T0 + timedelta(seconds=1),
    )
    assert (customer["blocked"], customer["erased"]) == (False, True)
    assert (product_row["category"], product_row["manufactured"], product_row["weight_kg"]) == (
        "hardware",
        True,
        Decimal("1.250"),
    )
    assert line["category"] == "hardware"


# -- the order desk: amendments, splits and merges (docs/reporting.md) ---------------------------


def _line(sku: str, quantity: int, net: str, tax: str) -> InvoiceLine:
    return InvoiceLine(
        sku=sku,
        quantity=quantity,
        unit_price=Decimal(net) / quantity,
        net=Decimal(net),
        tax=Decimal(tax),
        gross=Decimal(net) + Decimal(tax),
    )


def _issued(order_id: str, *lines: InvoiceLine) -> InvoiceIssued:
    net = sum((line.net or Decimal(0) for line in lines), Decimal("0"))
    tax = sum((line.tax or Decimal(0) for line in lines), Decimal("0"))
    return InvoiceIssued(
        order_id=order_id,
        invoice_id=f"inv-{order_id}",
        customer_id="c1",
        currency="EUR",
        lines=lines,
        subtotal=net,
        tax=tax,
        shipping_fee=Decimal("0.00"),
        total=net + tax,
        payment_terms="prepaid",
        due_at=T0 + timedelta(days=30),
    )


def _adjusted(
    order_id: str, *lines: InvoiceLine, before: str, paid: str, owed: str, status: str, refund: str = "0.00"
) -> InvoiceAdjusted:
    net = sum((line.net or Decimal(0) for line in lines), Decimal("0"))
    tax = sum((line.tax or Decimal(0) for line in lines), Decimal("0"))
    return InvoiceAdjusted.model_validate(
        {
            "order_id": order_id,
            "invoice_id": f"inv-{order_id}",
            "amendment_id": f"ch-{order_id}",
            "lines": lines,
            "previous_total": before,
            "total": net + tax,
            "difference": net + tax - Decimal(before),
            "amount_paid": paid,
            "refund_amount": refund,
            "subtotal": net,
            "tax": tax,
            "shipping_fee": "0.00",
            "outstanding": owed,
            "status": status,
        }
    )


def _paid(order_id: str, amount: str, so_far: str, method: str = "card") -> PaymentReceived:
    return PaymentReceived(
        order_id=order_id,
        invoice_id=f"inv-{order_id}",
        reference=f"{method}-{order_id}-{so_far}",
        method=method,
        amount=Decimal(amount),
        amount_paid=Decimal(so_far),
    )


def _amended(order_id: str, lines: list[tuple[str, int, str]], kind: str = "amend") -> OrderAmended:
    before = placed(order_id, lines)
    return OrderAmended.model_validate(
        {
            "order_id": order_id,
            "change_id": f"ch-{order_id}",
            "kind": kind,
            "previous_lines": [],
            "lines": [line.model_dump() for line in before.lines],
            "shipping": before.shipping.model_dump(),
            "subtotal": before.subtotal,
            "reason": "customer called",
            "amended_by": "desk",
        }
    )


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["orders"], row["units"], row["net_amount"], row["tax_amount"], row["gross_amount"])


async def test_an_amended_order_reports_its_new_lines_and_invoice_and_owes_what_billing_says(
    db: AsyncEngine,
) -> None:
    # Placed, invoiced, paid, amended up and then down, all read in one batch: each change
    # replaces the lines written before it in the batch.
    await apply(
        db,
        (placed("o1", [("A", 2, "10.00"), ("B", 1, "5.00")]), T0),
        (_issued("o1", _line("A", 2, "20.00", "4.00"), _line("B", 1, "5.00", "1.00")), T0),
        (_paid("o1", "30.00", "30.00"), T0),
        (_amended("o1", [("A", 2, "10.00"), ("B", 3, "5.00")]), T0 + timedelta(seconds=1)),
        (
            _adjusted(
                "o1",
                _line("A", 2, "20.00", "4.00"),
                _line("B", 3, "15.00", "3.00"),
                before="30.00",
                paid="30.00",
                owed="12.00",
                status="open",
            ),
            T0 + timedelta(seconds=1),
        ),
        (_amended("o1", [("A", 1, "10.00")]), T0 + timedelta(seconds=2)),
        (
            # Down to 12.00 with 30.00 paid: 18.00 refunded on the amendment's credit note.
            _adjusted(
                "o1",
                _line("A", 1, "10.00", "2.00"),
                before="42.00",
                paid="30.00",
                owed="0.00",
                status="paid",
                refund="18.00",
            ),
            T0 + timedelta(seconds=2),
        ),
    )
    by_product = await rows_of(db, ("product",))
    assert [(r["product"], *_figures(r)) for r in by_product] == [
        ("A", 1, 1, Decimal("10.00"), Decimal("2.00"), Decimal("12.00"))
    ]
    # Up again by 6.00 in a later batch: 6.00 owed, although 30.00 was paid against 18.00.
    await apply(
        db,
        (_amended("o1", [("A", 1, "10.00"), ("C", 1, "5.00")]), T0 + timedelta(seconds=3)),
        (
            _adjusted(
                "o1",
                _line("A", 1, "10.00", "2.00"),
                _line("C", 1, "5.00", "1.00"),
                before="12.00",
                paid="30.00",
                owed="6.00",
                status="open",
            ),
            T0 + timedelta(seconds=3),
        ),
    )
    async with db.connect() as conn:
        (payments,) = await rows(await queries.payments(conn, Period(), T0))
        subtotal = (await conn.execute(text("SELECT subtotal FROM orders"))).scalar_one()
    assert [(r["product"], *_figures(r)) for r in await rows_of(db, ("product",))] == [
        ("A", 1, 1, Decimal("10.00"), Decimal("2.00"), Decimal("12.00")),
        ("C", 1, 1, Decimal("5.00"), Decimal("1.00"), Decimal("6.00")),
    ]
    assert subtotal == Decimal("15.00")
    assert (payments["invoiced"], payments["collected"], payments["outstanding"]) == (
        Decimal("18.00"),
        Decimal("30.00"),
        Decimal("6.00"),
    )


async def test_a_split_and_a_merge_count_every_unit_and_cent_once(db: AsyncEngine) -> None:
    # o1 (B, A, C) splits B 1 and A 1 off into o2: the order lists them as o1 had them (B, A),
    # the invoice by SKU (A, B). o3 and o4 merge into o5; transfers carry their money.
    await apply(
        db,
        (placed("o1", [("B", 1, "7.00"), ("A", 2, "10.00"), ("C", 1, "3.00")]), T0),
        (
            _issued(
                "o1",
                _line("B", 1, "7.00", "1.40"),
                _line("A", 2, "20.00", "4.00"),
                _line("C", 1, "3.00", "0.60"),
            ),
            T0,
        ),
        (_paid("o1", "36.00", "36.00"), T0),
        (placed("o3", [("A", 1, "10.00")]), T0),
        (_issued("o3", _line("A", 1, "10.00", "2.00")), T0),
        (_paid("o3", "12.00", "12.00"), T0),
        (placed("o4", [("C", 2, "3.00")]), T0),
        (_issued("o4", _line("C", 2, "6.00", "1.20")), T0),
    )
    split_off = placed("o2", [("B", 1, "7.00"), ("A", 1, "10.00")]).model_copy(
        update={"origin": "split", "origin_id": "ch-o1", "moved_from": (MovedLines(order_id="o1", lines=()),)}
    )
    merged = placed("o5", [("A", 1, "10.00"), ("C", 2, "3.00")]).model_copy(update={"origin": "merge"})
    later = T0 + timedelta(seconds=5)
    await apply(
        db,
        (_amended("o1", [("A", 1, "10.00"), ("C", 1, "3.00")], kind="split"), later),
        (
            _adjusted(
                "o1",
                _line("A", 1, "10.00", "2.00"),
                _line("C", 1, "3.00", "0.60"),
                before="36.00",
                paid="15.60",
                owed="0.00",
                status="paid",
            ),
            later,
        ),
        (split_off, later),
        (_issued("o2", _line("A", 1, "10.00", "2.00"), _line("B", 1, "7.00", "1.40")), later),
        (_paid("o2", "20.40", "20.40", method="transfer"), later),
        *(
            (message, later)
            for order_id in ("o3", "o4")
            for message in (
                status(order_id, "merged", "confirmed"),
                OrderMerged(
                    order_id=order_id,
                    change_id="m1",
                    into_order_id="o5",
                    reason="one parcel",
                    merged_by="desk",
                ),
                _adjusted(order_id, before="12.00", paid="0.00", owed="0.00", status="merged"),
            )
        ),
        (merged, later),
        (_issued("o5", _line("A", 1, "10.00", "2.00"), _line("C", 2, "6.00", "1.20")), later),
        (_paid("o5", "12.00", "12.00", method="transfer"), later),
    )

    by_status = {r["status"]: _figures(r) for r in await rows_of(db, ("status",))}
    by_product = {r["product"]: _figures(r) for r in await rows_of(db, ("product",))}
    (everything,) = await rows_of(db, ())
    async with db.connect() as conn:
        (payments,) = await rows(await queries.payments(conn, Period(), T0))
        ranking = await rows(queries.sales_ranking(conn, "customer", Period(), 10))
        origins = dict(
            (await conn.execute(text("SELECT order_id, COALESCE(split_from, merged_into) FROM orders"))).all()
        )

    zero = Decimal("0.00")
    assert by_status == {
        "placed": (3, 7, Decimal("46.00"), Decimal("9.20"), Decimal("55.20")),  # o1, o2, o5
        "merged": (2, 0, zero, zero, zero),  # o3 and o4: counted in o5
    }
    assert by_product == {
        "A": (3, 3, Decimal("30.00"), Decimal("6.00"), Decimal("36.00")),
        "B": (
            1,
            1,
            Decimal("7.00"),
            Decimal("1.40"),
            Decimal("8.40"),
        ),  # in o2, from the invoice's second line
        "C": (2, 3, Decimal("9.00"), Decimal("1.80"), Decimal("10.80")),
    }
    assert _figures(everything) == (3, 7, Decimal("46.00"), Decimal("9.20"), Decimal("55.20"))
    assert [(r["orders"], r["revenue"]) for r in ranking] == [(3, Decimal("46.00"))]
    assert (payments["invoiced"], payments["collected"], payments["outstanding"]) == (
        Decimal("55.20"),  # o1 15.60 + o2 20.40 + o5 19.20 (o3 and o4 closed at 0)
        Decimal("48.00"),  # o1 36.00 + o3 12.00: the transfers moved money already collected
        Decimal("7.20"),  # o5 19.20 - 12.00 carried over from o3 (o4 was not paid)
    )
    assert (origins["o2"], origins["o3"], origins["o4"], origins["o5"]) == ("o1", "o5", "o5", None)


async def test_an_allocation_inventory_told_before_a_newer_status_change_does_not_replace_it(
    db: AsyncEngine,
) -> None:
    north = (Allocation(sku="A", warehouse="NORTH", quantity=2),)
    south = (Allocation(sku="A", warehouse="SOUTH", quantity=2),)
    adjusted = ReservationAdjusted(order_id="o1", amendment_id="ch1", lines=(), allocations=north)
    await apply(
        db,
        (placed("o1", [("A", 2, "10.00")]), T0),
        (status("o1", "confirmed", "placed", south), T0 + timedelta(seconds=2)),
    )
    await apply(db, (adjusted, T0 + timedelta(seconds=1)))  # read late, from the other topic
    assert [r["warehouse"] for r in await rows_of(db, ("warehouse",))] == ["SOUTH"]

    await apply(db, (adjusted.model_copy(update={"amendment_id": "ch2"}), T0 + timedelta(seconds=3)))
    assert [r["warehouse"] for r in await rows_of(db, ("warehouse",))] == ["NORTH"]


# -- returns: credit notes (docs/reporting.md "Returns and credit notes") -------------------------


def _credited(order_id: str, sku: str, units: int, amount: str, refunded: str) -> CreditNoteIssued:
    return CreditNoteIssued(
        order_id=order_id,
        credit_note_id=f"cn-{order_id}",
        invoice_id=f"inv-{order_id}",
        return_id=f"ret-{order_id}",
        lines=(SkuQuantity(sku=sku, quantity=units),),
        amount=Decimal(amount),
        refund_amount=Decimal(refunded),
        refund_id=f"rfd-{order_id}" if Decimal(refunded) else None,
        reason="arrived scratched",
    )


def _refunded(order_id: str, amount: str) -> RefundIssued:
    return RefundIssued(
        order_id=order_id,
        refund_id=f"rfd-{order_id}",
        invoice_id=f"inv-{order_id}",
        amount=Decimal(amount),
        reason="arrived scratched",
        credit_note_id=f"cn-{order_id}",
    )


async def _payments_and_receivables(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with engine.connect() as conn:
        payments = await rows(await queries.payments(conn, Period(), T0))
        receivables = await rows(queries.receivables(conn, None, T0))
    return payments, receivables


async def test_a_credit_note_read_before_its_invoice_lowers_what_is_owed_once(db: AsyncEngine) -> None:
    # 36.00 invoiced, 20.00 paid; two of the three units come back: 24.00 credited, of which
    # the 20.00 paid is refunded. Still owed: 36.00 - 24.00 - (20.00 - 20.00) = 12.00.
    credit_note = (_credited("o1", "A", 2, "24.00", "20.00"), T0 + timedelta(days=2))
    await apply(db, credit_note, (_refunded("o1", "20.00"), T0 + timedelta(days=2)))
    payments, receivables = await _payments_and_receivables(db)
    assert (payments, receivables) == ([], [])  # no invoice yet: no currency to report it in

    await apply(
        db,
        (_issued("o1", _line("A", 3, "30.00", "6.00")), T0),
        (_paid("o1", "20.00", "20.00"), T0 + timedelta(days=1)),
        credit_note,  # delivered again: counted once
    )

    (totals,), (receivable,) = await _payments_and_receivables(db)
    assert {k: totals[k] for k in ("invoiced", "collected", "refunded", "credited", "outstanding")} == {
        "invoiced": Decimal("36.00"),
        "collected": Decimal("20.00"),
        "refunded": Decimal("20.00"),
        "credited": Decimal("24.00"),
        "outstanding": Decimal("12.00"),
    }
    assert totals["not_due"] == Decimal("12.00")
    assert (
        receivable["total"],
        receivable["amount_paid"],
        receivable["credited"],
        receivable["outstanding"],
    ) == (
        Decimal("36.00"),
        Decimal("20.00"),
        Decimal("24.00"),
        Decimal("12.00"),
    )
    async with db.connect() as conn:
        (note,) = (await conn.execute(text("SELECT * FROM report_credit_notes"))).mappings().all()
    assert (note["currency"], note["customer_id"], note["return_id"], note["owed_less"]) == (
        "EUR",
        "c1",
        "ret-o1",
        Decimal("4.00"),
    )


async def test_an_unpaid_invoice_whose_lines_all_came_back_owes_nothing(db: AsyncEngine) -> None:
    await apply(
        db,
        (_issued("o1", _line("A", 3, "30.00", "6.00")), T0),
        (_credited("o1", "A", 3, "36.00", "0.00"), T0 + timedelta(days=2)),
    )

    (payments,), receivables = await _payments_and_receivables(db)

    assert (payments["invoiced"], payments["credited"], payments["refunded"]) == (
        Decimal("36.00"),
        Decimal("36.00"),
        Decimal("0.00"),
    )
    assert payments["outstanding"] == payments["not_due"] == Decimal("0.00")
    assert receivables == []
