"""Bills of materials: what a product is made of and how, possibly over several levels.

Pure: no I/O, no clock. A BOM is one aggregate per SKU (BomDefined replaces it whole); the
checks that span BOMs (cycles, the exploded tree) take the other BOMs as a mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from libs.domain import AggregateKind, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.production import BomComponent, BomDefined, BomOperation
from libs.events.values import SkuQuantity

# Deeper than any real product; stops the explosion of a tree that is wide at every level.
MAX_DEPTH = 20


@dataclass(frozen=True)
class Bom:
    sku: str = ""
    components: tuple[BomComponent, ...] = ()
    output_quantity: int = 1
    scrap_rate: Decimal = Decimal(0)
    operations: tuple[BomOperation, ...] = ()

    @property
    def exists(self) -> bool:
        return bool(self.operations)


def evolve(state: Bom, event: DomainEvent) -> Bom:
    if isinstance(event, BomDefined):
        return Bom(event.sku, event.components, event.output_quantity, event.scrap_rate, event.operations)
    return state


BOM = AggregateKind[Bom]("bom", Bom, evolve)


def find_cycle(sku: str, components: Sequence[str], others: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The path by which `sku` would contain itself, given its new components and the other
    BOMs' components (sku -> component skus), e.g. [A, B, C, A]; None if it does not."""
    graph = {**others, sku: components}
    path: list[str] = [sku]
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        for child in graph.get(node, ()):
            if child == sku:
                return [*path, child]
            if child in done or child in path:
                continue
            path.append(child)
            found = visit(child)
            if found is not None:
                return found
            path.pop()
            done.add(child)
        return None

    return visit(sku)


def decide_define(
    state: Bom,
    sku: str,
    components: Sequence[BomComponent],
    output_quantity: int,
    scrap_rate: Decimal,
    operations: Sequence[BomOperation],
    others: Mapping[str, Sequence[str]],
    work_centers: set[str],
    catalogue_says_manufactured: bool | None = None,
) -> list[DomainEvent]:
    """Define (or replace) a product's BOM. Refused when it would contain itself, when a
    component is named twice, when an operation names an unknown work centre, or when the
    catalogue knows the product as one that is not manufactured."""
    if catalogue_says_manufactured is False:
        raise InvalidRequest(
            "not_manufactured",
            f"the product catalogue says {sku} is not manufactured: register it as manufactured first",
        )
    skus = [c.sku for c in components]
    if sku in skus:
        raise InvalidRequest("bom_cycle", f"the BOM of {sku} contains itself: {sku} -> {sku}")
    twice = sorted({s for s in skus if skus.count(s) > 1})
    if twice:
        raise InvalidRequest("duplicate_component", f"components name {', '.join(twice)} more than once")
    names = [o.name for o in operations]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidRequest("duplicate_operation", f"operations name {', '.join(repeated)} more than once")
    unknown = sorted({o.work_center for o in operations} - work_centers)
    if unknown:
        raise InvalidRequest(
            "unknown_work_center",
            f"operations name work centres that are not registered: {', '.join(unknown)}",
        )
    cycle = find_cycle(sku, skus, others)
    if cycle is not None:
        raise InvalidRequest(
            "bom_cycle", f"the BOM of {sku} would contain itself through its components: {' -> '.join(cycle)}"
        )
    defined = BomDefined(
        sku=sku,
        components=tuple(components),
        output_quantity=output_quantity,
        scrap_rate=scrap_rate,
        operations=tuple(operations),
    )
    if state.exists and evolve(state, defined) == state:
        return []  # the same BOM again
    return [defined]


def per_unit(bom: Bom, component: BomComponent) -> Decimal:
    """How much of a component one unit of the product takes, its scrap allowance included."""
    return component.quantity / bom.output_quantity * (1 + bom.scrap_rate)


def components_for(bom: Bom, quantity: int) -> tuple[SkuQuantity, ...]:
    """What making `quantity` units takes from stock (whole units, rounded up)."""
    return tuple(
        SkuQuantity(sku=c.sku, quantity=max(math.ceil(per_unit(bom, c) * quantity), 1))
        for c in bom.components
    )


def explode(sku: str, boms: Mapping[str, Bom]) -> dict[str, Any]:
    """The product's tree, each node with what one unit of the top product needs of it, and
    the totals of the leaves (what is bought or taken from stock) per unit of the top."""
    totals: dict[str, Decimal] = {}

    def node(current: str, need: Decimal, depth: int) -> dict[str, Any]:
        bom = boms.get(current)
        manufactured = bom is not None and bom.exists and depth < MAX_DEPTH
        if not manufactured or bom is None:
            totals[current] = totals.get(current, Decimal(0)) + need
            return {
                "sku": current,
                "quantity_per_unit": _plain(need),
                "manufactured": False,
                "components": [],
            }
        return {
            "sku": current,
            "quantity_per_unit": _plain(need),
            "manufactured": True,
            "components": [node(c.sku, need * per_unit(bom, c), depth + 1) for c in bom.components],
        }

    tree = node(sku, Decimal(1), 0)
    tree["total_needs_per_unit"] = [
        {"sku": s, "quantity": _plain(q)} for s, q in sorted(totals.items()) if s != sku
    ]
    return tree


def _plain(value: Decimal) -> str:
    """A quantity as a decimal string without trailing zeros (1/3 to 6 places)."""
    rounded = value.quantize(Decimal("0.000001"))
    text = format(rounded.normalize(), "f")
    return text
