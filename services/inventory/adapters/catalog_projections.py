"""Projector for the product catalogue: the `products` table, one row per SKU as it now is."""

from __future__ import annotations

import json

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import ProductEvent
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

_PUT_PRODUCT = Sql(
    "INSERT INTO products (sku, name, category, unit, weight_kg, manufactured, list_prices, updated_at)"
    " VALUES (:sku, :name, :category, :unit, :weight, :manufactured, CAST(:prices AS jsonb), :at)"
    " ON CONFLICT (sku) DO UPDATE SET name = :name, category = :category, unit = :unit,"
    " weight_kg = :weight, manufactured = :manufactured, list_prices = CAST(:prices AS jsonb),"
    " updated_at = :at"
)


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, ProductEvent):
        writes.add(
            _PUT_PRODUCT,
            {
                "sku": event.sku,
                "name": event.name,
                "category": event.category,
                "unit": event.unit,
                "weight": event.weight_kg,
                "manufactured": event.manufactured,
                "prices": json.dumps(event.model_dump(mode="json")["list_prices"]),
                "at": envelope.occurred_at,
            },
            ("product", event.sku),
        )
