"""Wires the production service: its policy, runtime, consumer, scheduler loop and HTTP routes."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from libs.events.topics import INVENTORY_EVENTS, ORDER_EVENTS
from libs.runtime.consumer import EventConsumer
from libs.runtime.db import is_transient
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, retry_on_conflict
from services.production.adapters.projections import project
from services.production.app import handlers
from services.production.app.handlers import ProductionPolicy
from services.production.entrypoints import api
from services.production.settings import ProductionSettings

NAME = "production"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"
log = logging.getLogger(__name__)


def policy_of(settings: ProductionSettings) -> ProductionPolicy:
    return ProductionPolicy(
        lead_time=timedelta(days=settings.lead_time_days),
        cancel_in_progress=settings.cancel_in_progress,
        default_warehouse=settings.default_warehouse,
    )


def build_runtime(
    settings: RuntimeSettings | None = None, production: ProductionSettings | None = None
) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    production = production or ProductionSettings()
    policy = policy_of(production)
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=project)
    runtime.add_consumer(
        EventConsumer(
            "production-demand",
            [INVENTORY_EVENTS, ORDER_EVENTS],
            handlers.event_handlers(policy),  # type: ignore[arg-type]
            runtime.engine,
            settings,
            actor="service:production",
            projector=project,
        )
    )

    async def keep_schedule() -> None:
        await _reschedule_when_behind(runtime, production.reschedule_seconds)

    runtime.background.append(keep_schedule)
    return runtime


async def _reschedule_when_behind(runtime: ServiceRuntime, every_seconds: float) -> None:
    """Orders fall behind as time passes without progress: plan again when one has."""
    context = MessageContext(correlation_id="production-schedule", actor="service:production-scheduler")

    async def once() -> int:
        async with runtime.unit_of_work(context) as uow:
            return await handlers.reschedule(uow, only_if_behind=True)

    while True:
        await asyncio.sleep(every_seconds)
        try:
            await retry_on_conflict(once)
        except Exception as error:
            log.warning("rescheduling failed: %s", error, exc_info=not is_transient(error))


def build_app(
    settings: RuntimeSettings | None = None, production: ProductionSettings | None = None
) -> FastAPI:
    production = production or ProductionSettings()
    app = create_app(build_runtime(settings, production), [api.router], "OrderMesh production")
    app.state.production_policy = policy_of(production)
    return app
