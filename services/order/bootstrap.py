"""Wires the order service: runtime, saga handlers, consumers, deadline loop, HTTP routes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from libs.events.billing import (
    CreditCheckFailed,
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
    ReservationRevoked,
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
from libs.events.topics import BILLING_EVENTS, INVENTORY_EVENTS, ORDER_INTAKE
from libs.runtime.access import project_access
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import both
from services.order.adapters.projections import project
from services.order.app.handlers import OrderHandlers, run_deadlines
from services.order.app.intake import OrderIntake
from services.order.entrypoints import access_api, api, customers_api
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
)
CATALOGUE_CHANGES = (ProductRegistered, ProductUpdated)


def build_runtime(
    settings: RuntimeSettings | None = None, order_settings: OrderSettings | None = None
) -> tuple[ServiceRuntime, OrderHandlers]:
    settings = settings or RuntimeSettings()
    order_settings = order_settings or OrderSettings()
    # The order service records the access context's events too (access_api).
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=both(project, project_access))
    handlers = OrderHandlers(
        order_settings.saga_policy(), timedelta(seconds=order_settings.duplicate_window_seconds)
    )
    intake = OrderIntake(handlers)
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
            [INVENTORY_EVENTS, BILLING_EVENTS],
            {
                **{reply: handlers.on_participant_event for reply in PARTICIPANT_REPLIES},
                **{change: handlers.on_product_changed for change in CATALOGUE_CHANGES},
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
    return runtime, handlers


def build_app(
    settings: RuntimeSettings | None = None, order_settings: OrderSettings | None = None
) -> FastAPI:
    runtime, handlers = build_runtime(settings, order_settings)
    app = create_app(runtime, [api.router, access_api.router, customers_api.router], "OrderMesh order")
    app.state.handlers = handlers
    return app
