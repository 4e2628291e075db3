"""Wires the order service: runtime, saga handlers, consumers, deadline loop, HTTP routes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from libs.events.billing import (
    CreditCheckFailed,
    CreditNoteIssued,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
    InvoiceIssued,
    InvoicePaid,
    InvoiceVoided,
    PaymentFailed,
    PaymentReceived,
    RefundIssued,
)
from libs.events.inventory import (
    ProductRegistered,
    ProductUpdated,
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    ReservationRevoked,
    ReturnedGoodsReceived,
    ShipmentCancelled,
    ShipmentCollected,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    StockReleased,
    StockReserved,
    StockShortage,
)
from libs.events.order import SubmitOrder
from libs.events.production import ProductionOrderCreated
from libs.events.topics import BILLING_EVENTS, INVENTORY_EVENTS, ORDER_INTAKE, PRODUCTION_EVENTS
from libs.runtime.access import project_access
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import both
from services.order.adapters import returns_projections
from services.order.adapters.address_rules import CountryAddressRules
from services.order.adapters.customer_desk import project_customer_desk
from services.order.adapters.projections import project as project_orders
from services.order.adapters.returns_projections import RETURN_DEADLINE
from services.order.app.customer_desk import index_customers_registered_before
from services.order.app.desk import DeskHandlers
from services.order.app.handlers import OrderHandlers, run_deadlines
from services.order.app.imports import install as install_imports
from services.order.app.intake import OrderIntake
from services.order.app.integration import public_messages
from services.order.app.returns import ReturnHandlers, ReturnSettings
from services.order.app.saga_metrics import SagaMetrics
from services.order.entrypoints import access_api, api, customers_api, desk_api, imports_api, returns_api
from services.order.entrypoints.decisions_api import router as decisions_router
from services.order.settings import OrderSettings

NAME = "order"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"
PARTICIPANT_REPLIES = (
    StockReserved,
    StockShortage,
    StockReleased,
    InvoiceIssued,
    CreditCheckFailed,
    PaymentReceived,
    PaymentFailed,
    InvoicePaid,
    InvoiceVoided,
    RefundIssued,
    ReservationRevoked,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentCollected,
    ShipmentDelivered,
    ShipmentCancelled,
    # The order desk's changes (amend, split, merge: services/order/domain/desk.py).
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
)
CATALOGUE_CHANGES = (ProductRegistered, ProductUpdated)
# Participants' answers about returns (docs/returns.md).
RETURN_REPLIES = (ReturnedGoodsReceived, CreditNoteIssued)
# The orders and the returns read models.
project = both(project_orders, returns_projections.project)


def build_runtime(
    settings: RuntimeSettings | None = None, order_settings: OrderSettings | None = None
) -> tuple[ServiceRuntime, OrderHandlers]:
    runtime, handlers, _ = _build(settings, order_settings)
    return runtime, handlers


def _build(
    settings: RuntimeSettings | None, order_settings: OrderSettings | None
) -> tuple[ServiceRuntime, OrderHandlers, ReturnHandlers]:
    settings = settings or RuntimeSettings()
    order_settings = order_settings or OrderSettings()
    # The order service records the access context's events too (access_api).
    runtime = ServiceRuntime(
        NAME,
        settings,
        MIGRATIONS,
        projector=both(both(project, project_access), project_customer_desk),
        integration=public_messages,
    )
    policy = order_settings.saga_policy()
    # The review holds a delivery only for what its country's address rules require.
    policy = replace(policy, review=replace(policy.review, address_rules=CountryAddressRules()))
    handlers = OrderHandlers(policy, timedelta(seconds=order_settings.duplicate_window_seconds))
    intake = OrderIntake(handlers)
    returns = ReturnHandlers(handlers, ReturnSettings().policy())
    handlers.other_deadlines[RETURN_DEADLINE] = returns.on_deadline
    # A replacement's reservation and shipment name the return where an order goes.
    replies = returns.routing_replies(handlers.on_participant_event)
    runtime.add_consumer(
        EventConsumer(
            "order-intake",
            [ORDER_INTAKE],
            {SubmitOrder: intake.on_submission},
            runtime.engine,
            settings,
            actor="service:order",
            projector=project,
            on_refusal=intake.on_refusal,
            refuse_unhandled=True,
        )
    )
    runtime.add_consumer(
        EventConsumer(
            "order-saga",
            [INVENTORY_EVENTS, BILLING_EVENTS, PRODUCTION_EVENTS],
            {
                **{reply: replies for reply in PARTICIPANT_REPLIES},
                **{reply: returns.on_reply for reply in RETURN_REPLIES},
                **{change: handlers.on_product_changed for change in CATALOGUE_CHANGES},
                ProductionOrderCreated: handlers.on_production_planned,
            },
            runtime.engine,
            settings,
            actor="service:order-saga",
            projector=project,
        )
    )

    async def deadlines() -> None:
        await run_deadlines(runtime, handlers, order_settings.deadline_poll_seconds)

    runtime.background.append(deadlines)

    async def index_customers() -> None:
        await index_customers_registered_before(runtime)

    runtime.background.append(index_customers)
    runtime.samplers.append(SagaMetrics(settings.dsn(NAME)))
    return runtime, handlers, returns


def build_app(
    settings: RuntimeSettings | None = None, order_settings: OrderSettings | None = None
) -> FastAPI:
    runtime, handlers, returns = _build(settings, order_settings)
    routers = [api.router, access_api.router, customers_api.router, returns_api.router, imports_api.router]
    routers.append(desk_api.router)  # amend, split, merge
    routers.append(decisions_router)  # POST /orders/decisions
    app_imports = install_imports(runtime, handlers)
    app = create_app(runtime, routers, "OrderMesh order")
    app.state.handlers = handlers
    app.state.return_handlers = returns
    app.state.desk_handlers = DeskHandlers(handlers)
    app.state.imports = app_imports
    return app
