"""The permission catalogue and the built-in roles.

A permission names one kind of command or query ("orders:decide"); every HTTP endpoint
declares exactly one (libs/runtime/auth.py refuses to start an app with an endpoint that does
not), and docs/permissions.md is generated from those declarations. Roles are sets of
permissions: the built-in ones below, and custom ones an admin defines from the same
catalogue (stored as events by the order service, known to every service).
"""

from __future__ import annotations

from collections.abc import Iterable

PERMISSIONS: dict[str, str] = {
    # orders (order service)
    "orders:submit": "submit orders (a channel key only for its own channel)",
    "orders:read": "read orders and the saga definition",
    "orders:decide": "approve or reject held orders (one held over its credit limit: with credit:grant)",
    "orders:cancel": "cancel orders",
    "orders:amend": "amend orders (lines, delivery), split them and merge them (the order desk)",
    "orders:import": "import orders from CSV or XLSX files and read the imports' reports",
    # customers (order service; contact data is encrypted and shown only with read_contact)
    "customers:read": "read customers",
    "customers:read_contact": "see customers' names, emails, phones and addresses",
    "customers:write": "register, change, block, unblock and merge customers",
    "customers:erase": "erase a customer's personal data (crypto-shredding)",
    # billing
    "billing:read": "read invoices, payments, refunds and customer accounts",
    "payments:record": "record payments (the payment gateway's callback)",
    "credit:grant": "set customers' credit limits, and let an order exceed one (approving its credit hold)",
    "refunds:issue": "issue goodwill refunds (never more than paid minus refunded)",
    # returns after delivery (order service)
    "returns:read": "read returns",
    "returns:request": "request returns of delivered goods",
    "returns:decide": "approve or reject returns",
    "returns:receive": "receive returned goods (resellable or damaged)",
    # catalogue and stock (inventory service)
    "products:read": "read the product catalogue",
    "products:write": "register and change products",
    "stock:read": "read stock levels, reservations, alerts and warehouses",
    "stock:receive": "receive stock into a warehouse",
    "stock:adjust": "adjust stock and set reorder points",
    "stock:count": "run stock counts",
    "warehouses:manage": "register warehouses",
    "transfers:read": "read transfers between warehouses",
    "transfers:manage": "create, dispatch, receive, write off and cancel transfers",
    "shipments:read": "read shipments and pick lists",
    "shipments:handle": "pick, pack, dispatch, hand over and deliver shipments",
    "carrier:report": "report carrier tracking events",
    # production and reporting
    "production:read": "read production orders",
    "production:manage": "plan and record production",
    "reports:read": "read reports and exports",
    # administration
    "audit:read": "read the audit trail",
    "access:admin": "manage API keys and custom roles",
}

_READ_ALL = {
    "orders:read",
    "customers:read",
    "billing:read",
    "products:read",
    "stock:read",
    "transfers:read",
    "shipments:read",
    "production:read",
    "reports:read",
    "returns:read",
}

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "sales": frozenset(
        {
            "orders:submit",
            "orders:read",
            "orders:cancel",
            "orders:import",
            "customers:read",
            "customers:read_contact",
            "customers:write",
            "products:read",
            "stock:read",
            "returns:read",
            "returns:request",
        }
    ),
    "order_desk": frozenset(
        {
            "orders:read",
            "orders:decide",
            "orders:cancel",
            "orders:amend",
            "orders:import",
            "returns:read",
            "returns:request",
            "returns:decide",
            "customers:read",
            "customers:read_contact",
            "customers:write",
            "billing:read",
            "products:read",
            "stock:read",
            "shipments:read",
        }
    ),
    # Warehouse staff: usually scoped to their warehouses by the token's `warehouses` claim.
    "warehouse": frozenset(
        {
            "products:read",
            "stock:read",
            "stock:receive",
            "stock:adjust",
            "stock:count",
            "transfers:read",
            "transfers:manage",
            "shipments:read",
            "shipments:handle",
            "returns:read",
            "returns:receive",
        }
    ),
    "production": frozenset(
        {"products:read", "stock:read", "stock:receive", "production:read", "production:manage"}
    ),
    # Decides on orders held over a customer's credit limit (orders:decide with credit:grant).
    "finance": frozenset(
        {
            "orders:read",
            "orders:decide",
            "orders:cancel",
            "customers:read",
            "customers:read_contact",
            "billing:read",
            "payments:record",
            "credit:grant",
            "refunds:issue",
            "returns:read",
            "reports:read",
        }
    ),
    # Reads everything a report needs, never customers' contact data.
    "analyst": frozenset(_READ_ALL),
    "manager": frozenset(set(PERMISSIONS) - {"access:admin"}),
    "admin": frozenset(PERMISSIONS),
    # Machine adapters (ERP, WMS, CRM, carriers, the payment gateway): the default scopes of an
    # API key; a key may be issued with fewer.
    "integration": frozenset(
        {
            "orders:submit",
            "orders:read",
            "products:read",
            "products:write",
            "stock:read",
            "stock:receive",
            "shipments:read",
            "carrier:report",
            "payments:record",
            "billing:read",
        }
    ),
}


def unknown_permissions(permissions: Iterable[str]) -> list[str]:
    return sorted(set(permissions) - set(PERMISSIONS))
