"""Wires the billing service: its policy, runtime, consumer, projector and HTTP routes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from libs.events.billing import AdjustInvoice, IssueInvoice, IssueReturnCredit, MoveInvoiceLines, VoidInvoice
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


def build_runtime(
    settings: RuntimeSettings | None = None, policy: BillingPolicy | None = None
) -> ServiceRuntime:
    settings = settings or RuntimeSettings()
    policy = policy or BillingSettings().policy()
    runtime = ServiceRuntime(NAME, settings, MIGRATIONS, projector=project)
    runtime.add_consumer(
        EventConsumer(
            "billing-commands",
            [BILLING_COMMANDS],
            {
                IssueInvoice: partial(handlers.issue_invoice, policy=policy),
                VoidInvoice: handlers.void_invoice,
                IssueReturnCredit: handlers.issue_return_credit,
                AdjustInvoice: partial(handlers.adjust_invoice, policy=policy),
                MoveInvoiceLines: partial(handlers.move_invoice_lines, policy=policy),
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
    policy = (billing or BillingSettings()).policy()
    app = create_app(build_runtime(settings, policy), [api.router], "OrderMesh billing")
    app.state.billing_policy = policy
    return app
