"""Wires the billing service: its policy, runtime, consumer, projector and HTTP routes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from libs.events.billing import IssueInvoice, VoidInvoice
from libs.events.topics import BILLING_COMMANDS
from libs.runtime.consumer import EventConsumer
from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from services.billing.adapters.projections import project
from services.billing.app import handlers
from services.billing.domain.policy import BillingPolicy
from services.billing.entrypoints import api
from services.billing.settings import BillingSettings

NAME = "billing"
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def billing_policy(billing: BillingSettings) -> BillingPolicy:
    return BillingPolicy(
        tax_rate=billing.tax_rate,
        shipping_fees={
            "standard": billing.shipping_fee_standard,
            "express": billing.shipping_fee_express,
            "pickup": billing.shipping_fee_pickup,
        },
        default_credit_limit=billing.default_credit_limit,
    )


def build_runtime(
    settings: RuntimeSettings | None = None, billing: BillingSettings | None = None
) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    policy = billing_policy(billing or BillingSettings())
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=project)
    runtime.add_consumer(
        EventConsumer(
            "billing-commands",
            [BILLING_COMMANDS],
            {
                IssueInvoice: partial(handlers.issue_invoice, policy=policy),
                VoidInvoice: handlers.void_invoice,
            },
            runtime.engine,
            settings,
            actor="service:billing",
            projector=project,
            preload=handlers.preload,
        )
    )
    return runtime


def build_app(settings: RuntimeSettings | None = None, billing: BillingSettings | None = None) -> FastAPI:
    billing = billing or BillingSettings()
    app = create_app(build_runtime(settings, billing), [api.router], "OrderMesh billing")
    app.state.billing_policy = billing_policy(billing)
    return app
