"""The product catalogue: one aggregate per SKU with its master data.

A PUT states the whole product. The first one registers it; a later one that differs updates
it and names what changed; one that says what the product already is changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal

from libs.domain import AggregateKind
from libs.events.base import DomainEvent
from libs.events.inventory import ProductEvent, ProductRegistered, ProductUpdated


@dataclass(frozen=True)
class ProductSpec:
    """What a product is, as a PUT states it."""

    name: str
    category: str
    unit: str
    weight_kg: Decimal
    manufactured: bool
    list_prices: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Product:
    sku: str = ""
    spec: ProductSpec | None = None

    @property
    def exists(self) -> bool:
        return self.spec is not None

    @property
    def weight_kg(self) -> Decimal | None:
        return self.spec.weight_kg if self.spec is not None else None


def _spec_of(event: ProductEvent) -> ProductSpec:
    return ProductSpec(
        name=event.name,
        category=event.category,
        unit=event.unit,
        weight_kg=event.weight_kg,
        manufactured=event.manufactured,
        list_prices=dict(event.list_prices),
    )


def evolve(state: Product, event: DomainEvent) -> Product:
    if isinstance(event, ProductRegistered | ProductUpdated):
        return Product(sku=event.sku, spec=_spec_of(event))
    return state


PRODUCT = AggregateKind[Product]("product", Product, evolve)


def changed_fields(before: ProductSpec, after: ProductSpec) -> tuple[str, ...]:
    """The fields that differ, in the order a product lists them. Amounts compare by value
    (1.5 and 1.50 are the same weight)."""
    return tuple(f.name for f in fields(ProductSpec) if getattr(before, f.name) != getattr(after, f.name))


def decide_put(state: Product, sku: str, spec: ProductSpec) -> list[DomainEvent]:
    values = {f.name: getattr(spec, f.name) for f in fields(ProductSpec)}
    if state.spec is None:
        return [ProductRegistered(sku=sku, **values)]
    changed = changed_fields(state.spec, spec)
    if not changed:
        return []  # the product as it already is: nothing to record
    return [ProductUpdated(sku=sku, changed=changed, **values)]
