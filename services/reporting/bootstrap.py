"""Wires the reporting service: its runtime, the consumer of every public topic, the freshness
monitor and the HTTP routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.events.topics import BILLING_EVENTS, INVENTORY_EVENTS, ORDER_EVENTS, PRODUCTION_EVENTS
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from services.reporting.adapters.freshness import FreshnessMonitor
from services.reporting.adapters.projections import PROJECTIONS
from services.reporting.app import handlers
from services.reporting.entrypoints import api
from services.reporting.entrypoints.dashboard import serve_dashboard
from services.reporting.settings import ReportingSettings

NAME = "reporting"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"
CONSUMER = "reporting-events"
# Every public events topic; the command, intake and access topics are not facts to report.
SOURCE_TOPICS = [ORDER_EVENTS, INVENTORY_EVENTS, BILLING_EVENTS, PRODUCTION_EVENTS]


def build_runtime(settings: RuntimeSettings | None = None) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    reporting = ReportingSettings()
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS)
    runtime.add_consumer(
        EventConsumer(
            CONSUMER,
            SOURCE_TOPICS,
            dict.fromkeys(PROJECTIONS, handlers.apply_event),
            runtime.engine,
            settings,
            actor="service:reporting",
            # Reports may be a second behind: a poll as long as the linger costs less CPU idle.
            poll_ms=max(reporting.linger_ms, 200),
            batch_size=reporting.batch_size,
            linger_ms=reporting.linger_ms,
        )
    )
    return runtime


def build_app(settings: RuntimeSettings | None = None) -> FastAPI:
    settings = settings or RuntimeSettings()
    runtime = build_runtime(settings)
    monitor = FreshnessMonitor(settings, runtime.engine, settings.topic(CONSUMER), SOURCE_TOPICS)
    if runtime.run_consumers:
        runtime.background.append(monitor.publish_metrics)
    app = create_app(runtime, [api.router], "OrderMesh reporting")
    serve_dashboard(app)
    app.state.reporting_freshness = monitor
    return app
