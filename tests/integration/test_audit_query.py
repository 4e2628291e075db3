"""The audit trail on the real PostgreSQL: what a command's caller leaves in its events' rows,
and GET /audit reading it back by actor, aggregate and time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import AggregateKind
from libs.events import decode, registry
from libs.events.base import DomainEvent
from libs.runtime.audit import audit_router
from libs.runtime.group_commit import GroupCommitter
from libs.runtime.uow import AuditMetadata, MessageContext, UnitOfWork, unit_of_work
from tests.conftest import RUN_ID

pytestmark = pytest.mark.integration


@registry.register
class EntryMade(DomainEvent):
    message_type: ClassVar[str] = f"TestEntryMade{RUN_ID}"
    aggregate_type: ClassVar[str] = "ledger"
    topic: ClassVar[str] = f"test.{RUN_ID}.ledger.events"
    ledger_id: str
    amount: int


LEDGER = AggregateKind[int]("ledger", int, lambda total, e: total + e.amount)  # type: ignore[attr-defined]

ALICE = AuditMetadata(
    subject="alice",
    role="order_desk",
    api_key_id=None,
    request_id="req-alice-1",
    source_address="10.0.0.7",
)
AS_ALICE = MessageContext(correlation_id="order-1", actor="user:alice", audit=ALICE)
AS_CHANNEL = MessageContext(
    correlation_id="order-2",
    actor="key:k-web",
    audit=AuditMetadata(
        subject="channel-web",
        role="integration",
        api_key_id="k-web",
        request_id="req-web-9",
        source_address="192.0.2.1",
    ),
)


async def make_entries(
    engine: AsyncEngine, context: MessageContext, ledger_id: str, *amounts: int, now: datetime | None = None
) -> None:
    async with unit_of_work(engine, context, now=now) as uow:
        await append_entries(uow, ledger_id, amounts)


async def append_entries(uow: UnitOfWork, ledger_id: str, amounts: tuple[int, ...]) -> None:
    _, version = await uow.load(LEDGER, ledger_id)
    await uow.record(LEDGER, ledger_id, version, [EntryMade(ledger_id=ledger_id, amount=a) for a in amounts])


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """GET /audit in an app of its own: the service apps add authentication in front of it."""
    app = FastAPI()
    app.include_router(audit_router())
    app.state.runtime = SimpleNamespace(engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        yield http


async def trail(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/audit", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_trail_names_the_caller_of_every_event_its_command_recorded(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await make_entries(engine, AS_ALICE, "L1", 5, 7)
    await make_entries(engine, AS_CHANNEL, "L2", 1)

    page = await trail(client, actor="user:alice")

    assert [(i["aggregate_id"], i["version"]) for i in page["items"]] == [("L1", 2), ("L1", 1)]
    assert page["items"][0] == {
        "event_id": page["items"][0]["event_id"],
        "event_type": EntryMade.message_type,
        "aggregate_type": "ledger",
        "aggregate_id": "L1",
        "version": 2,
        "occurred_at": page["items"][0]["occurred_at"],
        "actor": "user:alice",
        "subject": "alice",
        "role": "order_desk",
        "api_key_id": None,
        "request_id": "req-alice-1",
        "source_address": "10.0.0.7",
        "correlation_id": "order-1",
        "causation_id": None,
    }
    assert page["next_cursor"] is None
    by_key = (await trail(client, actor="key:k-web"))["items"]
    assert [(i["subject"], i["api_key_id"], i["request_id"]) for i in by_key] == [
        ("channel-web", "k-web", "req-web-9")
    ]


async def test_work_a_service_does_by_itself_has_no_caller_and_keeps_the_causing_correlation(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    async with unit_of_work(engine, AS_ALICE) as uow:
        await append_entries(uow, "L1", (5,))
    cause = uow.appended[0]

    await make_entries(engine, MessageContext.caused_by(cause, "service:ledger"), "L1", -5)

    (reaction,) = (await trail(client, actor="service:ledger"))["items"]
    assert (reaction["correlation_id"], reaction["causation_id"]) == ("order-1", str(cause.event_id))
    assert [reaction[f] for f in ("subject", "role", "api_key_id", "request_id", "source_address")] == [
        None
    ] * 5


async def test_the_trail_of_one_aggregate_shows_every_actor_newest_first(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await make_entries(engine, AS_ALICE, "shared", 1)
    await make_entries(engine, AS_CHANNEL, "shared", 2)
    await make_entries(engine, AS_ALICE, "other", 3)
    await make_entries(engine, AS_ALICE, "shared", 4)

    items = (await trail(client, aggregate_id="shared"))["items"]

    assert [(i["version"], i["actor"]) for i in items] == [
        (3, "user:alice"),
        (2, "key:k-web"),
        (1, "user:alice"),
    ]


async def test_from_and_to_bound_the_trail_by_when_the_events_happened(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ten = datetime(2031, 3, 1, 10, tzinfo=UTC)
    for hours in (0, 1, 2):
        await make_entries(engine, AS_ALICE, f"at-{hours}", hours, now=ten + timedelta(hours=hours))

    window = await trail(client, **{"from": "2031-03-01T10:30:00Z", "to": "2031-03-01T12:00:00+00:00"})
    since_eleven = await trail(client, actor="user:alice", **{"from": "2031-03-01T11:00:00"})  # UTC
    until_eleven = await trail(client, **{"to": "2031-03-01T12:00:00+01:00"})  # 11:00 UTC

    assert [i["aggregate_id"] for i in window["items"]] == ["at-1"]  # 12:00 is not before `to`
    assert [i["aggregate_id"] for i in since_eleven["items"]] == ["at-2", "at-1"]
    assert [i["aggregate_id"] for i in until_eleven["items"]] == ["at-0"]


async def test_pages_of_the_trail_follow_on_without_gaps_or_repeats(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    # Events recorded together share their time: the cursor must still tell them apart.
    await make_entries(engine, AS_ALICE, "L1", 1, 2, 3)
    await make_entries(engine, AS_ALICE, "L2", 4, 5)
    everything = (await trail(client, actor="user:alice"))["items"]

    pages, cursor = [], None
    while True:
        page = await trail(client, actor="user:alice", limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([i["event_id"] for i in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p] == [i["event_id"] for i in everything]
    assert [(i["aggregate_id"], i["version"]) for i in everything] == [
        ("L2", 2),
        ("L2", 1),
        ("L1", 3),
        ("L1", 2),
        ("L1", 1),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2031-13-01T00:00:00Z"}, "to"),
        ({"from": "2031-03-01T10:00:00Z", "to": "2031-03-01T09:00:00Z"}, "to"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "from"),  # before year 1 in UTC
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"actor": "user:a\x00"}, "actor"),
        ({"limit": "501"}, "limit"),
    ],
)
async def test_a_malformed_query_is_refused_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/audit", params=params)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


async def test_commands_sharing_one_transaction_each_keep_their_own_caller(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    committer = GroupCommitter(lambda context: unit_of_work(engine, context))

    await asyncio.gather(
        committer.execute(AS_ALICE, lambda uow: append_entries(uow, "G1", (1,))),
        committer.execute(AS_CHANNEL, lambda uow: append_entries(uow, "G2", (2,))),
    )

    async with engine.connect() as conn:
        transactions = (
            await conn.execute(text("SELECT count(DISTINCT transaction_id) FROM events"))
        ).scalar()
    assert transactions == 1  # the two commands were grouped
    items = (await trail(client))["items"]
    assert {(i["aggregate_id"], i["actor"], i["subject"]) for i in items} == {
        ("G1", "user:alice", "alice"),
        ("G2", "key:k-web", "channel-web"),
    }


async def test_the_request_id_travels_in_kafka_headers_and_the_rest_stays_in_the_database(
    engine: AsyncEngine,
) -> None:
    ledger_id = f"L-{uuid4().hex[:6]}"
    await make_entries(engine, AS_ALICE, ledger_id, 1)

    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT value, headers FROM outbox"))).one()
    headers = row.headers if isinstance(row.headers, dict) else json.loads(row.headers)
    assert headers["request_id"] == "req-alice-1"
    assert decode(bytes(row.value)).envelope.actor == "user:alice"
    assert b"10.0.0.7" not in bytes(row.value) and b"order_desk" not in bytes(row.value)
