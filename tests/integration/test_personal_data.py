"""Personal data on the real platform: contact fields are stored sealed, and erasing a customer
(crypto-shredding) leaves their orders, amounts and events intact but their contact unreadable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from libs.events import registry
from libs.runtime.personal_data import ERASED
from libs.runtime.settings import RuntimeSettings
from services.order.domain.order import ORDER
from tests.integration.conftest import Oms, money, order_body

pytestmark = pytest.mark.integration

ADDRESS = {"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4LE", "country": "GB"}


@pytest.fixture
async def order_db(e2e_settings: RuntimeSettings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(e2e_settings.dsn("order"))
    try:
        yield connection
    finally:
        await connection.close()


async def stored_payloads(db: asyncpg.Connection, stream_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT event_type, actor, payload::text AS payload FROM events"
        " WHERE stream_id = $1 ORDER BY version",
        stream_id,
    )
    return [(r["event_type"], r["actor"], json.loads(r["payload"])) for r in rows]


def placed_details(order: dict[str, Any]) -> dict[str, Any]:
    return dict(next(e["details"] for e in order["timeline"] if e["type"] == "OrderPlaced"))


async def erase(oms: Oms, customer_id: str) -> None:
    response = await oms.order.post(f"/customers/{customer_id}/erase", json={"reason": "the customer asked"})
    assert response.status_code == 200, response.text


async def test_erased_customer_orders_keep_their_amounts_and_events_but_not_their_contact(
    oms: Oms, sku: str, order_db: asyncpg.Connection
) -> None:
    tag = uuid4().hex[:8]
    email, name = f"grace-{tag}@example.com", f"Grace Hopper {tag}"
    customer_id = f"cust-{tag}"
    registered = await oms.order.post(
        "/customers",
        json={
            "customer_id": customer_id,
            "name": name,
            "email": email,
            "phone": "+1 555 0100",
            "region": "north",
        },
    )
    assert registered.status_code == 201, registered.text
    await oms.receive(sku, 10)
    # Matched by email (in any case), as the review always did, though the email is sealed now.
    contact = {"name": name, "email": email.upper(), "region": "north"}
    shipping = {"method": "standard", "address": ADDRESS}
    first = await oms.place(order_body(sku, quantity=2, customer=contact, shipping=shipping))
    second = await oms.place(order_body(sku, quantity=1, customer=contact, shipping=shipping))
    before = await oms.wait_status(first, "awaiting_payment")
    await oms.wait_status(second, "awaiting_payment")
    assert before["customer_id"] == customer_id
    assert before["customer_name"] == name
    assert placed_details(before)["shipping"]["address"]["line1"] == ADDRESS["line1"]

    rows = [
        *await stored_payloads(order_db, f"order-{first}"),
        *await stored_payloads(order_db, f"customer-{customer_id}"),
    ]
    raw = json.dumps([payload for _, _, payload in rows])
    assert email not in raw and email.upper() not in raw and name not in raw and "St James" not in raw
    assert "north" in raw and "GB" in raw  # region and country stay in clear, for reports and tax

    await erase(oms, customer_id)

    after = await oms.get_order(first)
    assert after["customer_name"] == ERASED
    details = placed_details(after)
    assert details["customer"]["name"] == details["customer"]["email"] == ERASED
    assert details["customer"]["region"] == "north"
    assert details["shipping"]["address"]["line1"] == ERASED
    assert details["shipping"]["address"]["country"] == "GB"
    for field in ("subtotal", "total", "amount_paid", "status"):
        assert after[field] == before[field]
    assert money(after["subtotal"]) == Decimal("50.00")
    customer = (await oms.order.get(f"/customers/{customer_id}")).json()
    assert (customer["name"], customer["email"], customer["erased"], customer["orders"]) == (
        ERASED,
        None,
        True,
        2,
    )
    found = await oms.order.post("/customers/search", json={"email": email})
    assert found.json()["customer_ids"] == []
    erasure = (await stored_payloads(order_db, f"customer-{customer_id}"))[-1]
    assert erasure[0] == "CustomerErased" and erasure[1] == erasure[2]["erased_by"] == "user:test-admin"

    # The stream still replays into the same order, from the events as stored...
    stored = await order_db.fetch(
        "SELECT event_type, event_version, payload::text AS payload FROM events"
        " WHERE stream_id = $1 ORDER BY version",
        f"order-{first}",
    )
    replayed = ORDER.replay(
        [registry.load(r["event_type"], r["event_version"], json.loads(r["payload"])) for r in stored]  # type: ignore[misc]
    )
    assert (replayed.status, replayed.amount_due) == ("awaiting_payment", money(before["total"]))
    # ...and the saga goes on with it: a cancellation compensates as for anyone else.
    cancelled = await oms.order.post(f"/orders/{second}/cancel", json={"reason": "erased customer"})
    assert cancelled.status_code in (200, 202), cancelled.text
    await oms.wait_status(second, "cancelled")


async def test_a_guest_is_recognised_by_email_and_erased_by_the_id_of_their_orders(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    email = f"guest-{uuid4().hex[:8]}@example.com"
    # A phone of its own: customers are recognised by phone too, and other tests register some.
    phone = f"+44 161 496 {int(uuid4().hex[:4], 16) % 10000:04d}"
    guest = {"name": "Alan Turing", "email": email, "phone": phone, "region": "south"}
    first = await oms.place(order_body(sku, customer=guest))
    again = await oms.place(order_body(sku, quantity=2, customer={**guest, "phone": None}))
    orders = [await oms.wait_status(o, "awaiting_payment") for o in (first, again)]
    customer_id = orders[0]["customer_id"]
    assert customer_id == orders[1]["customer_id"] == f"guest:{first}"  # no email in the id
    found = await oms.order.post("/customers/search", json={"email": email})
    assert found.json()["customer_ids"] == [customer_id]

    await erase(oms, customer_id)

    for order_id, before in zip((first, again), orders, strict=True):
        after = await oms.get_order(order_id)
        assert after["customer_name"] == placed_details(after)["customer"]["name"] == ERASED
        assert after["total"] == before["total"]
    assert (await oms.order.post("/customers/search", json={"email": email})).json()["customer_ids"] == []
    customer = (await oms.order.get(f"/customers/{customer_id}")).json()
    assert (customer["registered"], customer["erased"]) == (False, True)
    # A new order from the same email is a new guest, with a key of its own.
    later = await oms.place(order_body(sku, customer=guest))
    assert (await oms.get_order(later))["customer_name"] == "Alan Turing"


async def test_erasing_an_unknown_customer_is_404(oms: Oms) -> None:
    response = await oms.order.post("/customers/nobody-here/erase", json={"reason": "why"})

    assert response.status_code == 404, response.text
