"""Warehouses: a code, a name and the region used to prefer nearby stock."""

from __future__ import annotations

from dataclasses import dataclass

from libs.domain import AggregateKind, DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import WarehouseRegistered


@dataclass(frozen=True)
class Warehouse:
    code: str = ""
    name: str = ""
    region: str = ""

    @property
    def exists(self) -> bool:
        return bool(self.code)


def evolve(state: Warehouse, event: DomainEvent) -> Warehouse:
    if isinstance(event, WarehouseRegistered):
        return Warehouse(event.code, event.name, event.region)
    return state


WAREHOUSE = AggregateKind[Warehouse]("warehouse", Warehouse, evolve)


def decide_register(state: Warehouse, code: str, name: str, region: str) -> list[DomainEvent]:
    if state.exists:
        if (state.name, state.region) == (name, region):
            return []  # the same registration again: nothing to do
        raise DomainError(
            "warehouse_exists",
            f"warehouse {code} is already registered as {state.name!r} in {state.region!r}",
        )
    return [WarehouseRegistered(code=code, name=name, region=region)]
