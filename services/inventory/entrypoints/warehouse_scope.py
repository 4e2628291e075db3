"""Warehouse scoping of inventory requests: staff scoped to some warehouses see and act on
those only.

Commands that touch a warehouse outside the caller's scope are refused with 403 naming the
warehouse, so the caller knows which warehouse they lack. Reads leave out what lies in other
warehouses, and a single thing held by another warehouse answers 404 as if unknown.

An entrypoint concern: the domain decides what may happen to stock; who may ask is the
caller's token. Callers with no warehouse scope (`Principal.warehouses` None) skip every check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from libs.runtime.auth import Forbidden
from libs.security.principal import Principal


def require_warehouse(principal: Principal, warehouse: str, action: str) -> None:
    """Refuses `action` ("receive stock into", say) at a warehouse outside the caller's scope."""
    if not principal.sees_warehouse(warehouse):
        yours = ", ".join(sorted(principal.warehouses or ())) or "none"
        raise Forbidden(
            f"you may not {action} warehouse {warehouse}: it is outside your warehouses ({yours})",
            warehouse=warehouse,
        )


def in_scope(
    principal: Principal, rows: Iterable[dict[str, Any]], key: str = "warehouse"
) -> list[dict[str, Any]]:
    """The rows whose `key` names a warehouse the caller sees."""
    return [row for row in rows if principal.sees_warehouse(row[key])]
