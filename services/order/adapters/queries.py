"""Read-side queries of the order service."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import takewhile
from types import SimpleNamespace
from typing import Any, Literal

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.domain import InvalidRequest
from libs.events import DomainEvent, Envelope, registry
from libs.events.order import OrderShipmentUpdated
from libs.runtime import eventstore
from libs.runtime.db import ConcurrencyConflict, Sql, driver_connection
from libs.runtime.personal_data import ERASED, SubjectKey, unseal
from services.order.adapters.personal_data import KEYS, opened_payload
from services.order.domain.order import ORDER

# The placement path runs these on the driver connection of its unit of work (see
# libs.runtime.db.Sql): they are on every order's way in, so what placement needs to know
# before deciding comes back in one round trip.
_PLACEMENT_LOOKUP = Sql(
    "SELECT s.order_id AS earlier_order_id, s.body_hash AS earlier_body_hash,"
    " c.customer_id, c.blocked, g.subject_id AS guest_id, p.products FROM (SELECT 1) AS one"
    " LEFT JOIN LATERAL (SELECT order_id, body_hash FROM order_submissions"
    "  WHERE submission_key = ANY(CAST(:keys AS text[])) ORDER BY created_at LIMIT 1) AS s ON true"
    " LEFT JOIN LATERAL (SELECT customer_id, blocked FROM customers"
    "  WHERE customer_id = :id OR email_index = :email_index OR phone_index = :phone_index"
    # Rows registered before contacts were sealed have plaintext and no index (a sealed
    # value never equals a plaintext one, an erased row has neither).
    "  OR (email_index IS NULL AND email = :email) OR (phone_index IS NULL AND phone = :phone)"
    # A match by id beats one by email, which beats one by phone.
    "  ORDER BY CASE WHEN customer_id = :id THEN 0"
    "  WHEN email_index = :email_index OR email = :email THEN 1 ELSE 2 END"
    "  LIMIT 1) AS c ON true"
    # A guest (not registered) seen before with the same email or phone.
    " LEFT JOIN LATERAL (SELECT subject_id FROM subject_indexes"
    "  WHERE blind_index IN (:email_index, :phone_index)"
    "  ORDER BY blind_index = :email_index DESC LIMIT 1) AS g ON true"
    " LEFT JOIN LATERAL (SELECT jsonb_object_agg(sku, jsonb_build_object("
    "  'weight_kg', weight_kg, 'list_prices', list_prices)) AS products FROM catalogue"
    "  WHERE sku = ANY(CAST(:skus AS text[]))) AS p ON true"
)
_RECENT_DUPLICATE = Sql(
    "SELECT order_id FROM orders WHERE fingerprint = :f AND order_id <> :o"
    " AND placed_at >= :since AND status NOT IN ('cancelled', 'rejected')"
    " ORDER BY placed_at DESC LIMIT 1"
)
_CLAIM_KEYS = Sql(
    "INSERT INTO order_submissions (submission_key, order_id, body_hash)"
    " SELECT unnest(CAST(:keys AS text[])), :o, :h ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class PlacementLookup:
    # (order id, body hash) of the order one of the submission's keys created before
    earlier: tuple[str, str] | None
    # a registered customer matching the submitted id, email or phone: id and blocked flag
    known_customer: tuple[str, bool] | None
    # the id of a guest who ordered before with the same email or phone
    guest_id: str | None
    # what the catalogue knows of the order's SKUs
    products: dict[str, CatalogueEntry]


@dataclass(frozen=True)
class Contact:
    """A submitted email and phone, normalised, and their blind indexes."""

    email: str | None = None
    phone: str | None = None
    email_index: str | None = None
    phone_index: str | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    weight_kg: Decimal
    list_prices: dict[str, Decimal]


async def placement_lookup(
    db: asyncpg.Connection,
    keys: list[str],
    customer_id: str | None,
    contact: Contact,
    skus: list[str],
) -> PlacementLookup:
    params = {
        "keys": keys,
        "id": customer_id,
        "email": contact.email,
        "phone": contact.phone,
        "email_index": contact.email_index,
        "phone_index": contact.phone_index,
        "skus": skus,
    }
    rows = await _PLACEMENT_LOOKUP.fetch(db, params)
    row = rows[0]
    products = row["products"] or {}
    if isinstance(products, str):  # jsonb arrives decoded or as text, by connection codec
        products = json.loads(products)
    return PlacementLookup(
        (row["earlier_order_id"], row["earlier_body_hash"]) if row["earlier_order_id"] else None,
        (row["customer_id"], row["blocked"]) if row["customer_id"] else None,
        row["guest_id"],
        {
            sku: CatalogueEntry(
                Decimal(str(entry["weight_kg"])),
                {currency: Decimal(str(amount)) for currency, amount in entry["list_prices"].items()},
            )
            for sku, entry in products.items()
        },
    )


_UPSERT_PRODUCT = Sql(
    "INSERT INTO catalogue (sku, name, weight_kg, list_prices, manufactured, version)"
    " VALUES (:sku, :name, :weight, CAST(:prices AS jsonb), :manufactured, :version)"
    " ON CONFLICT (sku) DO UPDATE SET name = excluded.name, weight_kg = excluded.weight_kg,"
    " list_prices = excluded.list_prices, manufactured = excluded.manufactured,"
    " version = excluded.version WHERE catalogue.version < excluded.version"
)


async def remember_product(db: asyncpg.Connection, product: dict[str, Any], version: int) -> None:
    """Keep the order service's copy of a product current (a late, older event is ignored)."""
    await _UPSERT_PRODUCT.execute(
        db,
        {
            "sku": product["sku"],
            "name": product["name"],
            "weight": product["weight_kg"],
            "prices": json.dumps({k: str(v) for k, v in product["list_prices"].items()}),
            "manufactured": product["manufactured"],
            "version": version,
        },
    )


async def recent_duplicate(
    db: asyncpg.Connection, fingerprint: str, order_id: str, since: datetime
) -> str | None:
    rows = await _RECENT_DUPLICATE.fetch(db, {"f": fingerprint, "o": order_id, "since": since})
    return str(rows[0]["order_id"]) if rows else None


async def claim_submission_keys(
    db: asyncpg.Connection, keys: list[str], order_id: str, body_hash: str
) -> None:
    """Record the keys of a new submission. A concurrent submission with one of the same keys
    makes ON CONFLICT wait for it; if it committed first we raise ConcurrencyConflict, and the
    retried unit of work then finds its order through earlier_submission()."""
    status = await _CLAIM_KEYS.execute(db, {"keys": keys, "o": order_id, "h": body_hash})
    if int(status.split()[-1]) != len(keys):  # "INSERT 0 <rows>"
        raise ConcurrencyConflict("the same submission is being placed concurrently")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


PaymentStatus = Literal["unpaid", "partially_paid", "paid", "on_account", "partially_refunded", "refunded"]
# What OrderHeld's reasons are joined with in the orders table's reason column.
HOLD_REASONS_SEPARATOR = "; "


def payment_status(row: Any) -> PaymentStatus:
    if row.amount_refunded and row.amount_refunded > 0:
        return "refunded" if row.amount_refunded >= row.amount_paid else "partially_refunded"
    if row.payment_terms == "on_account" and row.status == "confirmed" and not row.amount_paid:
        return "on_account"
    if row.total is not None and row.amount_paid >= row.total and row.amount_paid > 0:
        return "paid"
    return "partially_paid" if row.amount_paid > 0 else "unpaid"


def hold_reasons(row: Any) -> list[str]:
    """Why the order waits for a person, while it does; a decided hold is only in the timeline."""
    return row.reason.split(HOLD_REASONS_SEPARATOR) if row.status == "on_hold" and row.reason else []


def order_summary(row: Any, key: SubjectKey | None) -> dict[str, Any]:
    """An orders row as the API shows it; `key`: its customer's, to open the name."""
    return {
        "order_id": row.order_id,
        "status": row.status,
        "channel": row.channel,
        "external_id": row.external_id,
        "customer_id": row.customer_id,
        "customer_name": unseal(key, row.customer_name),
        "currency": row.currency,
        "payment_terms": row.payment_terms,
        "shipping_method": row.shipping_method,
        "subtotal": _money(row.subtotal),
        "total": _money(row.total),
        "amount_paid": _money(row.amount_paid),
        "amount_refunded": _money(row.amount_refunded),
        "payment_status": payment_status(row),
        "invoice_id": row.invoice_id,
        "reason": row.reason,
        "hold_reasons": hold_reasons(row),
        "placed_at": row.placed_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


async def order_detail(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM orders WHERE order_id = :o"), {"o": order_id})).first()
    if row is None:
        return None
    db = await driver_connection(conn)
    key = (await KEYS.for_reading(db, [row.customer_id]))[row.customer_id]
    history = await eventstore.read_stream(db, f"order-{order_id}")
    timeline = _timeline(key, history)
    shipments = [
        {
            "shipment_id": s.shipment_id,
            "warehouse": s.warehouse,
            "status": s.status,
            "carrier": s.carrier,
            "tracking_number": s.tracking_number,
            "updated_at": s.updated_at.isoformat(),
        }
        for s in await conn.execute(
            text("SELECT * FROM order_shipments WHERE order_id = :o ORDER BY warehouse, shipment_id"),
            {"o": order_id},
        )
    ]
    return {
        **order_summary(row, key),
        "lines": row.lines,
        "stage": row.stage,
        "shipments": shipments,
        "timeline": timeline,
        **_desk_view(history),
    }


def _desk_view(history: list[Envelope]) -> dict[str, Any]:
    """Where the order desk's changes left the order: folded from its stream like the
    aggregate (few events, and read for the timeline anyway)."""
    order = ORDER.initial()
    for e in history:
        event = registry.load(e.event_type, e.event_version, e.payload)
        if isinstance(event, DomainEvent):
            order = ORDER.evolve(order, event)
    placed = order.placed
    change = order.change
    origin = placed.origin if placed is not None else None
    moved_from = [m.order_id for m in placed.moved_from] if placed is not None else []
    return {
        "split_from": moved_from[0] if origin == "split" and moved_from else None,
        "split_into": list(order.split_into),
        "merged_from": moved_from if origin == "merge" else [],
        "merged_into": order.merged_into,
        "change": None
        if change is None
        else {
            "change_id": change.change_id,
            "kind": change.kind,
            "awaiting": change.awaiting,
            "lines": [line.model_dump(mode="json") for line in change.lines],
            "other_order_id": change.other_order_id,
            "reason": change.reason,
            "requested_by": change.actor,
        },
    }


def _timeline(key: SubjectKey | None, history: list[Envelope]) -> list[dict[str, Any]]:
    timeline = []
    undecided_hold: list[str] | None = None
    for e in history:
        details = {k: v for k, v in opened_payload(key, e.event_type, e.payload).items() if k != "order_id"}
        if e.event_type == "OrderHeld":
            undecided_hold = list(details.get("reasons") or ())
        elif e.event_type in ("OrderApproved", "OrderRejected") and undecided_hold is not None:
            # The hold a person decided stays in the order's story, no longer as its reason.
            details["decided_hold"], undecided_hold = undecided_hold, None
        timeline.append(
            {
                "at": e.occurred_at.isoformat(),
                "type": e.event_type,
                "actor": e.actor,
                "version": e.aggregate_version,
                "details": details,
            }
        )
    return timeline


async def order_as_of(conn: AsyncConnection, order_id: str, as_of: datetime) -> dict[str, Any] | None:
    """The order as it was at `as_of`, in the shape of order_detail: its stream folded by the
    aggregate's own evolve up to the last event recorded by then. None if it was not placed yet.

    The cut is the longest prefix of the stream (by version) recorded at or before `as_of`, so
    every answer is a state the order really passed through, even if two processes' clocks
    disagree a little about events close together."""
    db = await driver_connection(conn)
    stream = await eventstore.read_stream(db, ORDER.stream_id(order_id))
    history = list(takewhile(lambda e: e.occurred_at <= as_of, stream))
    order = ORDER.initial()
    shipment_updated_at: dict[str, datetime] = {}
    for e in history:
        event = registry.load(e.event_type, e.event_version, e.payload)
        if isinstance(event, DomainEvent):  # an order's stream holds nothing else
            order = ORDER.evolve(order, event)
        if isinstance(event, OrderShipmentUpdated):
            shipment_updated_at[event.shipment_id] = e.occurred_at
    placed = order.placed
    if placed is None:
        return None
    key = (await KEYS.for_reading(db, [placed.customer_id]))[placed.customer_id]
    invoiced = order.invoice_id is not None
    hold_reasons = list(order.hold_reasons) if order.status == "on_hold" else []
    totals = SimpleNamespace(
        status=order.status,
        payment_terms=placed.payment_terms,
        total=order.amount_due if invoiced else None,
        amount_paid=order.amount_paid,
        amount_refunded=order.amount_refunded,
    )
    return {
        "order_id": order.order_id,
        "status": order.status,
        "channel": placed.channel,
        "external_id": placed.external_id,
        "customer_id": placed.customer_id,
        "customer_name": unseal(key, placed.customer.name),
        "currency": placed.currency,
        "payment_terms": placed.payment_terms,
        "shipping_method": placed.shipping.method,
        "subtotal": _money(placed.subtotal),
        "total": _money(totals.total),
        "amount_paid": _money(order.amount_paid),
        "amount_refunded": _money(order.amount_refunded),
        "payment_status": payment_status(totals),
        "invoice_id": order.invoice_id,
        "reason": HOLD_REASONS_SEPARATOR.join(hold_reasons) if hold_reasons else order.last_reason,
        "hold_reasons": hold_reasons,
        "placed_at": history[0].occurred_at.isoformat(),
        "updated_at": history[-1].occurred_at.isoformat(),
        "lines": [line.model_dump(mode="json") for line in placed.lines],
        "stage": order.stage,
        "shipments": [
            {
                "shipment_id": shipment_id,
                "warehouse": shipment.warehouse,
                "status": shipment.status,
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "updated_at": shipment_updated_at[shipment_id].isoformat(),
            }
            for shipment_id, shipment in sorted(
                order.shipments.items(), key=lambda item: (item[1].warehouse, item[0])
            )
        ],
        "timeline": _timeline(key, history),
    }


def encode_cursor(placed_at: datetime, order_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([placed_at.isoformat(), order_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        placed_at, order_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(placed_at), str(order_id)
    except (ValueError, TypeError) as error:
        raise InvalidRequest("invalid_cursor", "the cursor is not one this API returned") from error


async def list_orders(
    conn: AsyncConnection,
    *,
    status: str | None,
    customer_id: str | None,
    channel: str | None,
    placed_after: datetime | None,
    placed_before: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    for column, value in (("status", status), ("customer_id", customer_id), ("channel", channel)):
        if value:
            where.append(f"{column} = :{column}")
            params[column] = value
    if placed_after:
        where.append("placed_at >= :after")
        params["after"] = placed_after
    if placed_before:
        where.append("placed_at < :before")
        params["before"] = placed_before
    if cursor:
        at, last_id = decode_cursor(cursor)
        where.append("(placed_at, order_id) < (:cursor_at, :cursor_id)")
        params |= {"cursor_at": at, "cursor_id": last_id}
    sql = "SELECT * FROM orders"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY placed_at DESC, order_id DESC LIMIT :limit"
    rows = (await conn.execute(text(sql), params)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].placed_at, page[-1].order_id) if len(rows) > limit else None
    keys = await KEYS.for_reading(await driver_connection(conn), [r.customer_id for r in page])
    return {"items": [order_summary(r, keys[r.customer_id]) for r in page], "next_cursor": next_cursor}


# -- customers -------------------------------------------------------------------------------

_CUSTOMER = Sql(
    "SELECT customer_id, name, email, phone, region, blocked, erased_at FROM customers"
    " WHERE customer_id = :id"
)
_CUSTOMER_ORDERS = Sql(
    "SELECT count(*) AS orders, max(placed_at) AS last_order_at FROM orders WHERE customer_id = :id"
)
_FIND_BY_CONTACT = Sql(
    "SELECT customer_id FROM customers WHERE email_index = :email_index OR phone_index = :phone_index"
    " OR (email_index IS NULL AND email = :email) OR (phone_index IS NULL AND phone = :phone)"
    " UNION SELECT subject_id FROM subject_indexes WHERE blind_index IN (:email_index, :phone_index)"
    " ORDER BY 1 LIMIT 20"
)


async def customer_known(db: asyncpg.Connection, customer_id: str) -> bool:
    """Whether the customer placed orders here (a guest has no registration to find)."""
    rows = await _CUSTOMER_ORDERS.fetch(db, {"id": customer_id})
    return bool(rows[0]["orders"])


async def customer_detail(db: asyncpg.Connection, customer_id: str) -> dict[str, Any] | None:
    """A registered customer or a guest who ordered, contact fields opened (or erased)."""
    found = await _CUSTOMER.fetch(db, {"id": customer_id})
    orders = (await _CUSTOMER_ORDERS.fetch(db, {"id": customer_id}))[0]
    if not found and not orders["orders"]:
        return None
    key = (await KEYS.for_reading(db, [customer_id]))[customer_id]
    detail: dict[str, Any] = {
        "customer_id": customer_id,
        "registered": bool(found),
        "orders": orders["orders"],
        "last_order_at": orders["last_order_at"].isoformat() if orders["last_order_at"] else None,
    }
    if found:
        row = found[0]
        erased = row["erased_at"] is not None
        detail |= {
            "name": ERASED if erased else unseal(key, row["name"]),
            "email": None if erased else unseal(key, row["email"]),
            "phone": None if erased else unseal(key, row["phone"]),
            "region": row["region"],
            "blocked": row["blocked"],
            "erased": erased,
        }
    else:
        # A guest has no customers row: the erasure is in their customer stream.
        history = await eventstore.read_stream(db, f"customer-{customer_id}")
        detail["erased"] = any(e.event_type == "CustomerErased" for e in history)
    return detail


async def find_customers(db: asyncpg.Connection, contact: Contact) -> list[str]:
    """Ids of the customers (registered or guests) known by this email or phone."""
    rows = await _FIND_BY_CONTACT.fetch(
        db,
        {
            "email": contact.email,
            "phone": contact.phone,
            "email_index": contact.email_index,
            "phone_index": contact.phone_index,
        },
    )
    return [r["customer_id"] for r in rows]


_SET_INDEXES = Sql(
    "UPDATE customers SET email_index = :email_index, phone_index = :phone_index WHERE customer_id = :id"
)


async def index_customer(db: asyncpg.Connection, customer_id: str, contact: Contact) -> None:
    """Make a registered customer findable by the blind index of their email and phone (the
    projection cannot: it sees the event, whose fields are sealed)."""
    await _SET_INDEXES.execute(
        db, {"id": customer_id, "email_index": contact.email_index, "phone_index": contact.phone_index}
    )
