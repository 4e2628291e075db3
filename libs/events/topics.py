"""Topic names. One events topic per bounded context, one command topic per participant,
one intake topic for channels and its results topic, and a dead-letter topic per consumer group."""

from __future__ import annotations

ORDER_EVENTS = "oms.order.events.v1"
INVENTORY_EVENTS = "oms.inventory.events.v1"
PRODUCTION_EVENTS = "oms.production.events.v1"
BILLING_EVENTS = "oms.billing.events.v1"

INVENTORY_COMMANDS = "oms.inventory.commands.v1"
BILLING_COMMANDS = "oms.billing.commands.v1"
PRODUCTION_COMMANDS = "oms.production.commands.v1"

ORDER_INTAKE = "oms.order.intake.v1"
# The order service's answer to every intake message (libs/events/intake.py), keyed
# "<channel>:<external_id>" so a channel reads its answers in the order it sent them.
ORDER_INTAKE_RESULTS = "oms.order.intake-results.v1"

# API keys and custom roles, administered on the order service, consumed by every service.
ACCESS_EVENTS = "oms.access.events.v1"

ALL_TOPICS = (
    ORDER_EVENTS,
    INVENTORY_EVENTS,
    PRODUCTION_EVENTS,
    BILLING_EVENTS,
    INVENTORY_COMMANDS,
    BILLING_COMMANDS,
    PRODUCTION_COMMANDS,
    ORDER_INTAKE,
    ORDER_INTAKE_RESULTS,
    ACCESS_EVENTS,
)


def dead_letter_topic(consumer_group: str) -> str:
    return f"{consumer_group}.dlq"
