"""The order desk's customer read model: changes and merges projected into the customers
table, name and contact search through blind indexes, the customer's order figures, and
duplicate suggestions (docs/customers.md)."""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any

import asyncpg

from libs.domain import InvalidRequest
from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.order import CustomerDetailsChanged, CustomerErased, CustomerMerged
from libs.events.values import minor_units
from libs.runtime.db import Sql
from libs.runtime.personal_data import ERASED, SubjectKey, blind_index, unseal
from libs.runtime.writes import WriteBatch
from services.order.adapters.personal_data import BLIND_INDEX, KEYS, contact_indexes
from services.order.domain.customer import normalise_email, normalise_phone

# -- projection ---------------------------------------------------------------------------

_CHANGE_DETAILS = Sql(
    "UPDATE customers SET"
    " name = CASE WHEN :set_name THEN :name ELSE name END,"
    " email = CASE WHEN :set_email THEN :email ELSE email END,"
    " phone = CASE WHEN :set_phone THEN :phone ELSE phone END,"
    " region = CASE WHEN :set_region THEN :region ELSE region END"
    " WHERE customer_id = :id"
)
# Customers merged into this one before follow it, so every duplicate points at the survivor.
_MERGE = Sql("UPDATE customers SET merged_into = :into WHERE customer_id = :id OR merged_into = :id")
_FORGET_NAME = Sql("UPDATE customers SET name_index = NULL WHERE customer_id = :id")
_FORGET_NAME_TOKENS = Sql("DELETE FROM customer_name_tokens WHERE customer_id = :id")


def project_customer_desk(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    """Runs beside the order service's own projector (bootstrap): only the desk's events, and
    an erasure's blind name indexes (an erased customer must not be found by name)."""
    if isinstance(event, CustomerDetailsChanged):
        params: dict[str, Any] = {"id": event.customer_id}
        for field in ("name", "email", "phone", "region"):
            params[f"set_{field}"] = field in event.changed
            params[field] = getattr(event, field)
        writes.add(_CHANGE_DETAILS, params, ("customer", event.customer_id))
    elif isinstance(event, CustomerMerged):
        writes.add(_MERGE, {"id": event.customer_id, "into": event.into}, ("customer", event.customer_id))
    elif isinstance(event, CustomerErased):
        writes.add(_FORGET_NAME, {"id": event.customer_id}, ("customer", event.customer_id))
        writes.add(_FORGET_NAME_TOKENS, {"id": event.customer_id}, ("customer_name", event.customer_id))


# -- blind indexes of names and contacts ------------------------------------------------------


def name_words(name: str) -> list[str]:
    """The words of a name as search compares them: case-folded, letters and digits only."""
    return sorted({word for word in re.split(r"[\W_]+", name.casefold()) if word})


async def _secret(db: asyncpg.Connection) -> bytes:
    return await KEYS.service_secret(db, BLIND_INDEX)


_SET_NAME_INDEX = Sql("UPDATE customers SET name_index = :name_index WHERE customer_id = :id")
_ADD_NAME_TOKENS = Sql(
    "INSERT INTO customer_name_tokens (customer_id, token)"
    " SELECT :id, unnest(CAST(:tokens AS text[])) ON CONFLICT DO NOTHING"
)
_SET_CONTACT_INDEXES = Sql(
    "UPDATE customers SET email_index = :email_index, phone_index = :phone_index WHERE customer_id = :id"
)


async def index_customer(
    db: asyncpg.Connection, customer_id: str, name: str, email: str | None, phone: str | None
) -> None:
    """Make a registered customer findable by each word of their name, their whole name
    (duplicates), their email and their phone (plaintext in, keyed hashes stored). Call after
    the customers row is written, in the same transaction."""
    secret = await _secret(db)
    words = name_words(name)
    await _FORGET_NAME_TOKENS.execute(db, {"id": customer_id})
    tokens = [blind_index(secret, "name-word", word) for word in words]
    await _ADD_NAME_TOKENS.execute(db, {"id": customer_id, "tokens": tokens})
    whole = blind_index(secret, "name", " ".join(words))
    await _SET_NAME_INDEX.execute(db, {"id": customer_id, "name_index": whole})
    email_index, phone_index = await contact_indexes(db, normalise_email(email), normalise_phone(phone))
    await _SET_CONTACT_INDEXES.execute(
        db, {"id": customer_id, "email_index": email_index, "phone_index": phone_index}
    )


# Customers registered before name search existed (no name index), locked so that a change
# of the same customer waits and then indexes its own values after these.
_UNINDEXED = Sql(
    "SELECT customer_id, name, email, phone FROM customers"
    " WHERE name_index IS NULL AND erased_at IS NULL ORDER BY customer_id LIMIT :limit"
    " FOR UPDATE SKIP LOCKED"
)
# Marks a row whose name cannot be opened (its key is gone): never a real index ("name:...").
UNREADABLE = "unreadable"


async def index_unindexed(db: asyncpg.Connection, limit: int) -> int:
    """Index up to `limit` customers registered before name search (their contact in the
    index's current form too: phones in E.164); how many were indexed. Repeatable."""
    rows = await _UNINDEXED.fetch(db, {"limit": limit})
    keys = await KEYS.for_reading(db, [r["customer_id"] for r in rows])
    for row in rows:
        key = keys[row["customer_id"]]
        name = unseal(key, row["name"])
        if not name or name == ERASED:
            await _SET_NAME_INDEX.execute(db, {"id": row["customer_id"], "name_index": UNREADABLE})
            continue
        email, phone = unseal(key, row["email"]), unseal(key, row["phone"])
        await index_customer(db, row["customer_id"], name, email, phone)
    return len(rows)


# -- queries ------------------------------------------------------------------------------

_ACTIVE = "merged_into IS NULL AND erased_at IS NULL"


def _encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest("invalid_cursor", "the cursor is not one this API returned") from error


async def _query_condition(db: asyncpg.Connection, query: str, params: dict[str, Any]) -> str:
    """What `query` matches: an email (has an @), a phone (digits and punctuation only), or
    else every word of it among the words of the name."""
    secret = await _secret(db)
    if "@" in query:
        params["email_index"] = blind_index(secret, "email", normalise_email(query))
        return "email_index = :email_index"
    if re.fullmatch(r"[\d\s()+./-]+", query) and sum(c.isdigit() for c in query) >= 5:
        params["phone_index"] = blind_index(secret, "phone", normalise_phone(query))
        return "phone_index = :phone_index"
    words = name_words(query)
    if not words:
        raise InvalidRequest("invalid_query", "query: give a name, an email or a phone number")
    params["tokens"] = [blind_index(secret, "name-word", word) for word in words]
    params["token_count"] = len(words)
    return (
        "customer_id IN (SELECT customer_id FROM customer_name_tokens"
        " WHERE token = ANY(CAST(:tokens AS text[])) GROUP BY customer_id"
        " HAVING count(*) = :token_count)"
    )


def _customer_item(row: asyncpg.Record, key: SubjectKey | None) -> dict[str, Any]:
    return {
        "customer_id": row["customer_id"],
        "name": unseal(key, row["name"]),
        "email": unseal(key, row["email"]),
        "phone": unseal(key, row["phone"]),
        "region": row["region"],
        "blocked": row["blocked"],
    }


async def list_customers(
    db: asyncpg.Connection, *, query: str | None, region: str | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    """Registered customers (not merged away, not erased) by id, a page at a time."""
    params: dict[str, Any] = {"limit": limit + 1}
    where = [_ACTIVE]
    if query and query.strip():
        where.append(await _query_condition(db, query.strip(), params))
    if region:
        where.append("region = :region")
        params["region"] = region
    if cursor:
        where.append("customer_id > :after")
        params["after"] = _decode_cursor(cursor)
    # The conditions are this module's own fixed strings; every value is a parameter.
    sql = "SELECT customer_id, name, email, phone, region, blocked FROM customers WHERE "
    rows = await Sql(sql + " AND ".join(where) + " ORDER BY customer_id LIMIT :limit").fetch(db, params)
    page = rows[:limit]
    keys = await KEYS.for_reading(db, [r["customer_id"] for r in page])
    return {
        "items": [_customer_item(r, keys[r["customer_id"]]) for r in page],
        "next_cursor": _encode_cursor(page[-1]["customer_id"]) if len(rows) > limit else None,
    }


def money(amount: Decimal, currency: str) -> str:
    """An amount as exact as its currency's smallest unit (JPY 0 places, KWD 3)."""
    places = minor_units(currency)
    return str(amount if places is None else amount.quantize(Decimal(1).scaleb(-places)))


_FIGURES = Sql(
    "SELECT currency, count(*) AS orders,"
    " sum(amount_paid - amount_refunded) AS spent,"
    " sum(CASE WHEN total IS NOT NULL AND status NOT IN ('cancelled', 'rejected')"
    "  AND total > amount_paid THEN total - amount_paid ELSE 0 END) AS open_balance"
    " FROM orders WHERE customer_id = ANY(CAST(:ids AS text[])) GROUP BY currency ORDER BY currency"
)
_MERGED_INTO = Sql("SELECT customer_id FROM customers WHERE merged_into = :id ORDER BY customer_id")


async def order_figures(db: asyncpg.Connection, customer_id: str) -> dict[str, Any]:
    """The customer's orders (theirs and those of customers merged into them): how many,
    what they spent (paid minus refunded) and what they still owe on invoiced orders not
    cancelled or rejected, per currency (never added across currencies)."""
    merged = [r["customer_id"] for r in await _MERGED_INTO.fetch(db, {"id": customer_id})]
    rows = await _FIGURES.fetch(db, {"ids": [customer_id, *merged]})
    return {
        "merged_from": merged,
        "order_count": sum(r["orders"] for r in rows),
        "total_spent": [
            {"currency": r["currency"], "amount": money(r["spent"], r["currency"])} for r in rows
        ],
        "open_balance": [
            {"currency": r["currency"], "amount": money(r["open_balance"], r["currency"])}
            for r in rows
            if r["open_balance"] > 0
        ],
    }


_MERGED_TARGET = Sql("SELECT merged_into FROM customers WHERE customer_id = :id")


async def merged_into(db: asyncpg.Connection, customer_id: str) -> str | None:
    rows = await _MERGED_TARGET.fetch(db, {"id": customer_id})
    return rows[0]["merged_into"] if rows else None


# Pairs of active customers sharing a normalised email, a phone, or their whole name in the
# same region; each pair once (the lower id first), each reason named.
_DUPLICATES = Sql(
    "SELECT a.customer_id AS first, b.customer_id AS second,"
    " array_agg(DISTINCT reason ORDER BY reason) AS reasons FROM ("
    "  SELECT a.customer_id AS a_id, b.customer_id AS b_id, 'same email' AS reason"
    "  FROM customers a JOIN customers b ON a.email_index = b.email_index"
    "  UNION ALL SELECT a.customer_id, b.customer_id, 'same phone'"
    "  FROM customers a JOIN customers b ON a.phone_index = b.phone_index"
    "  UNION ALL SELECT a.customer_id, b.customer_id, 'same name and region'"
    "  FROM customers a JOIN customers b ON a.name_index = b.name_index AND a.name_index <> 'unreadable'"
    "   AND a.region IS NOT DISTINCT FROM b.region"
    " ) AS p JOIN customers a ON a.customer_id = p.a_id JOIN customers b ON b.customer_id = p.b_id"
    " WHERE p.a_id < p.b_id AND a.merged_into IS NULL AND a.erased_at IS NULL"
    " AND b.merged_into IS NULL AND b.erased_at IS NULL"
    " GROUP BY a.customer_id, b.customer_id"
    " ORDER BY count(DISTINCT reason) DESC, a.customer_id, b.customer_id LIMIT :limit"
)
_BY_IDS = Sql(
    "SELECT customer_id, name, email, phone, region, blocked FROM customers"
    " WHERE customer_id = ANY(CAST(:ids AS text[]))"
)


async def duplicate_suggestions(db: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    """Likely duplicates, the strongest first (more reasons in common)."""
    pairs = await _DUPLICATES.fetch(db, {"limit": limit})
    ids = sorted({r["first"] for r in pairs} | {r["second"] for r in pairs})
    rows = {r["customer_id"]: r for r in await _BY_IDS.fetch(db, {"ids": ids})}
    keys = await KEYS.for_reading(db, ids)
    return [
        {
            "customers": [_customer_item(rows[i], keys[i]) for i in (pair["first"], pair["second"])],
            "reasons": list(pair["reasons"]),
        }
        for pair in pairs
    ]
