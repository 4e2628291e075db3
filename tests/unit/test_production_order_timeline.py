"""Make-to-order on the sales order's side: its timeline names the production order made for
it, and nothing else in its saga changes (it keeps waiting for its stock)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from libs.events.order import OrderProductionPlanned
from libs.events.production import PlannedOperation, ProductionOrderCreated
from services.order.domain import saga
from services.order.domain.order import evolve
from services.order.tests.test_saga import awaiting_stock, given, placed

ORDER_ID = placed().order_id


def created(sales_order_id: str | None = ORDER_ID) -> ProductionOrderCreated:
    return ProductionOrderCreated(
        production_order_id="PO-1",
        sku="CHAIR",
        quantity=3,
        warehouse="NORTH",
        due=datetime(2026, 12, 1, tzinfo=UTC),
        origin="make_to_order",
        sales_order_id=sales_order_id,
        components=(),
        operations=(
            PlannedOperation(
                task_id="PO-1.1",
                operation="make",
                work_center="W",
                setup_minutes=Decimal(0),
                minutes_per_unit=Decimal(1),
                inspection=False,
            ),
        ),
    )


def test_a_production_order_made_for_a_waiting_order_is_named_on_its_timeline() -> None:
    order = given(*awaiting_stock())
    reaction = saga.production_planned(order, created())
    assert reaction.events == [
        OrderProductionPlanned(order_id=ORDER_ID, production_order_id="PO-1", sku="CHAIR", quantity=3)
    ]
    assert reaction.commands == []
    assert evolve(order, reaction.events[0]).status == "awaiting_stock"


def test_a_production_order_for_another_order_changes_nothing() -> None:
    assert saga.production_planned(given(*awaiting_stock()), created("someone-else")).events == []
