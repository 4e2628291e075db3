"""Wires the inventory service: its runtime, consumers, projector and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import (
    AdjustReservation,
    ConsumeStock,
    CreateShipments,
    MoveReservations,
    ReceiveReturnedGoods,
    ReceiveStock,
    ReleaseStock,
    ReserveStock,
)
from libs.events.topics import INVENTORY_COMMANDS
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import WriteBatch
from services.inventory.adapters import (
    catalog_projections,
    projections,
    shipment_projections,
    warehouse_ops_projections,
)
from services.inventory.app import handlers, returns, shipments
from services.inventory.entrypoints import (
    api,
    catalog_api,
    shipments_api,
    stock_control_api,
    stock_counts_api,
    transfers_api,
)

NAME = "inventory"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    """Every inventory read model: stock and reservations, the catalogue, shipments,
    transfers, counts and low-stock alerts."""
    projections.project(writes, envelope, event)
    catalog_projections.project(writes, envelope, event)
    shipment_projections.project(writes, envelope, event)
    warehouse_ops_projections.project(writes, envelope, event)


def build_runtime(settings: RuntimeSettings | None = None) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=project)
    runtime.add_consumer(
        EventConsumer(
            "inventory-commands",
            [INVENTORY_COMMANDS],
            {
                ReserveStock: handlers.reserve_stock,
                ReleaseStock: handlers.release_stock,
                CreateShipments: shipments.create_shipments,
                ConsumeStock: handlers.consume_stock,
                ReceiveStock: handlers.receive_produced_stock,
                ReceiveReturnedGoods: returns.receive_returned_goods,
                AdjustReservation: handlers.adjust_reservation,
                MoveReservations: handlers.move_reservations,
            },
            runtime.engine,
            settings,
            actor="service:inventory",
            projector=project,
            preload=handlers.preload,
        )
    )
    return runtime


def build_app(settings: RuntimeSettings | None = None) -> FastAPI:
    # stock_control_api first: its /stock/alerts must not be taken for GET /stock/{sku}
    routers = [stock_control_api.router, api.router, catalog_api.router, shipments_api.router]
    routers += [transfers_api.router, stock_counts_api.router]
    return create_app(build_runtime(settings), routers, "OrderMesh inventory")
