"""Wires the inventory service: its runtime, consumers, projector and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.events.inventory import ReleaseStock, ReserveStock
from libs.events.topics import INVENTORY_COMMANDS
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from services.inventory.adapters.projections import project
from services.inventory.app import handlers
from services.inventory.entrypoints import api

NAME = "inventory"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def build_runtime(settings: RuntimeSettings | None = None) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=project)
    runtime.add_consumer(
        EventConsumer(
            "inventory-commands",
            [INVENTORY_COMMANDS],
            {ReserveStock: handlers.reserve_stock, ReleaseStock: handlers.release_stock},
            runtime.engine,
            settings,
            actor="service:inventory",
            projector=project,
            preload=handlers.preload,
        )
    )
    return runtime


def build_app(settings: RuntimeSettings | None = None) -> FastAPI:
    return create_app(build_runtime(settings), [api.router], "OrderMesh inventory")
