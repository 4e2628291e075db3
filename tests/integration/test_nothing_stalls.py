"""Nothing stalls a partition, the outbox or an order (issue 8): bytes that break a JSON
parser, values PostgreSQL refuses, rows and dead letters too large for the broker, and a
participant that never answers. Each of these used to stop all traffic behind it."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from libs.events import encode, make_envelope
from libs.events.order import SubmitOrder
from libs.events.topics import INVENTORY_COMMANDS, ORDER_EVENTS, ORDER_INTAKE, dead_letter_topic
from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tests.integration.accounts import INTAKE_ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tools.processes import Platform, eventually_value

pytestmark = pytest.mark.integration

RUN = f"{RUN_ID}s"
PREFIX = f"ome2e_{RUN}"
NAMESPACE = f"t{RUN}."
PARTITIONS = 4  # as platform_settings makes them
STEP_REPLY_SECONDS = 2


@pytest.fixture(scope="module")
def stall_settings() -> RuntimeSettings:
    return platform_settings(PREFIX, NAMESPACE)


@pytest.fixture(scope="module")
async def stall_platform(stall_settings: RuntimeSettings) -> AsyncIterator[Platform]:
    env = {
        "OM_ORDER_STEP_REPLY_SECONDS": str(STEP_REPLY_SECONDS),
        "OM_ORDER_STEP_MAX_ATTEMPTS": "2",
        "OM_CONSUMER_RETRY_BACKOFF_MS": "10",
    }
    async with running_platform("stalls", stall_settings, env) as platform:
        yield platform


@pytest.fixture
async def oms(stall_platform: Platform) -> AsyncIterator[Oms]:
    client = Oms(stall_platform)
    try:
        yield client
    finally:
        await client.close()


async def read_topic(settings: RuntimeSettings, topic: str) -> list[Any]:
    """Every record of a topic, up to its end offsets when called."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        await consumer.stop()


async def publish(settings: RuntimeSettings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """(key, value) pairs; keys spread them over the partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()


async def dead_letters_of(settings: RuntimeSettings, group: str, marker: bytes) -> list[Any]:
    records = await read_topic(settings, dead_letter_topic(settings.topic(group)))
    return [r for r in records if marker in (r.value or b"") or (r.key or b"").startswith(marker)]


async def test_bytes_that_break_a_json_parser_are_dead_lettered_and_reservations_go_on(
    oms: Oms, sku: str, stall_settings: RuntimeSettings
) -> None:
    marker = uuid4().hex.encode()
    deep = b"[" * 3000 + b"]" * 3000
    huge_integer = b'{"event_id": ' + b"7" * 5000 + b"}"
    # Two per partition: keys chosen so that every partition gets its share.
    poison = [(marker + b"-%d" % i, value) for i in range(4 * PARTITIONS) for value in (deep, huge_integer)]
    await publish(stall_settings, INVENTORY_COMMANDS, poison)
    await oms.receive(sku, 5)

    order_id = await oms.place(order_body(sku))
    order = await oms.wait_status(order_id, "awaiting_payment", timeout=60)

    assert order["status"] == "awaiting_payment"
    dead = await eventually_value(
        lambda: dead_letters_of(stall_settings, "inventory-commands", marker),
        lambda found: len(found) == len(poison),
        timeout=60,
    )
    reasons = {dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert reasons == {
        "undecodable: not JSON we accept: nested too deeply",
        "undecodable: not JSON we accept: Exceeds the limit (4300 digits) for integer string"
        " conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
    }
    ready = await oms.inventory.get("/ready")
    assert ready.status_code == 200, ready.text


async def test_a_dead_letter_too_large_for_the_broker_goes_through_truncated(
    oms: Oms, sku: str, stall_settings: RuntimeSettings
) -> None:
    marker = uuid4().hex.encode()
    # Just under what the broker takes; with the dead letter's headers added it no longer fits.
    oversized = marker + b"x" * (1024 * 1024 - 200)
    await publish(stall_settings, INVENTORY_COMMANDS, [(marker, oversized)])
    await oms.receive(sku, 5)

    order_id = await oms.place(order_body(sku))

    await oms.wait_status(order_id, "awaiting_payment", timeout=60)
    dead = await eventually_value(
        lambda: dead_letters_of(stall_settings, "inventory-commands", marker),
        lambda found: len(found) == 1,
        timeout=60,
    )
    headers = dict(dead[0].headers)
    assert headers["dlq.truncated"] == str(len(oversized)).encode()
    assert headers["dlq.reason"].startswith(b"undecodable: not JSON we accept")
    assert dead[0].value == oversized[: len(dead[0].value)]


async def test_an_outbox_row_the_broker_refuses_is_parked_and_the_rows_behind_it_flow(
    oms: Oms, sku: str, stall_settings: RuntimeSettings
) -> None:
    db = await asyncpg.connect(stall_settings.dsn("order"))
    try:
        refused_id = await db.fetchval(
            "INSERT INTO outbox (topic, key, value, headers) VALUES ($1, 'too-large', $2, '{}') RETURNING id",
            ORDER_EVENTS,
            b"x" * (2 * 1024 * 1024),
        )
        await db.execute("NOTIFY ordermesh_outbox")
        await oms.receive(sku, 5)

        order_id = await oms.place(order_body(sku))

        assert (await oms.wait_status(order_id, "awaiting_payment", timeout=60))[
            "status"
        ] == "awaiting_payment"
        parked = await db.fetchrow("SELECT key, reason FROM outbox_parked WHERE id = $1", refused_id)
        assert parked is not None and parked["key"] == "too-large"
        assert parked["reason"].startswith("MessageSizeTooLargeError")
        assert await db.fetchval("SELECT count(*) FROM outbox WHERE id = $1", refused_id) == 0
    finally:
        await db.close()
    metrics = (await oms.order.get("/metrics")).text
    assert 'ordermesh_outbox_parked{service="order"} 1.0' in metrics


# In the region: it is stored as given (contact fields are encrypted, so PostgreSQL never sees theirs).
@pytest.mark.parametrize("region", ["north\u0000", "north \ud800"], ids=["nul", "lone_surrogate"])
async def test_a_value_postgresql_refuses_is_a_422_not_a_500(oms: Oms, sku: str, region: str) -> None:
    customer = {"name": "Ada", "email": f"{uuid4().hex[:8]}@example.com", "region": region}
    body = order_body(sku, customer=customer)
    raw = json.dumps(body).encode()  # escapes both as \\u sequences, as a client would send them

    response = await oms.order.post(
        "/orders", content=raw, headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid4())}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_intake_message_postgresql_refuses_is_dead_lettered_and_the_next_one_is_placed(
    oms: Oms, sku: str, stall_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 5)

    async def submission(region: str, reference: str) -> bytes:
        # The region is stored as given (contact fields are encrypted: PostgreSQL never sees them).
        customer = {**await account_customer(oms), "region": region}
        body = order_body(
            sku, channel=INTAKE_ACCOUNT_CHANNEL, customer=customer, external_id=reference, terms="on_account"
        )
        return encode(
            make_envelope(
                SubmitOrder.model_validate(body),
                event_id=uuid4(),
                aggregate_id=reference,
                aggregate_version=0,
                occurred_at=datetime.now(UTC),
                correlation_id=reference,
                causation_id=None,
                actor=f"channel:{INTAKE_ACCOUNT_CHANNEL}",
            )
        )

    bad, good = f"bad-{uuid4().hex[:8]}", f"good-{uuid4().hex[:8]}"
    key = b"same-partition"  # the good one queues behind the bad one
    await publish(
        stall_settings,
        ORDER_INTAKE,
        [(key, await submission("north\u0000", bad)), (key, await submission("north", good))],
    )

    async def listed(reference: str) -> list[dict[str, Any]]:
        response = await oms.order.get("/orders", params={"channel": INTAKE_ACCOUNT_CHANNEL})
        return [o for o in response.json()["items"] if o["external_id"] == reference]

    placed = await eventually_value(lambda: listed(good), lambda found: len(found) == 1, timeout=60)
    await oms.wait_status(placed[0]["order_id"], "confirmed", timeout=60)
    dead = await eventually_value(
        lambda: dead_letters_of(stall_settings, "order-intake", b"same-partition"),
        lambda found: len(found) == 1,
        timeout=60,
    )
    assert bad.encode() in dead[0].value
    # PostgreSQL's own words: a value it refuses, dead-lettered after the bounded retries.
    assert dict(dead[0].headers)["dlq.reason"].startswith(b"UntranslatableCharacterError")
    assert await listed(bad) == []


async def test_a_participant_that_never_answers_is_asked_again_then_the_order_waits_for_a_person(
    oms: Oms, sku: str
) -> None:
    await oms.receive(sku, 5)
    inventory = oms.platform.processes.pop("inventory")
    inventory.send_signal(signal.SIGTERM)
    try:
        inventory.wait(30)
    except subprocess.TimeoutExpired:
        inventory.kill()
    try:
        order_id = await oms.place(order_body(sku))

        parked = await oms.wait_status(order_id, "needs_attention", timeout=60)

        assert "inventory did not answer ReserveStock after 2 attempts" in parked["reason"]
        kinds = [entry["type"] for entry in parked["timeline"]]
        assert kinds.count("OrderStepResent") == 1
    finally:
        oms.platform.start("inventory")
    # The late answer (to the same message id, sent twice) carries the saga on by itself.
    order = await oms.wait_status(order_id, "awaiting_payment", timeout=60)
    assert order["status"] == "awaiting_payment"
    reservation = (await oms.inventory.get(f"/reservations/{order_id}")).json()
    assert sum(line["quantity"] for line in reservation["allocations"]) == 1


async def test_consumers_that_make_progress_keep_the_service_ready(oms: Oms) -> None:
    for client in (oms.order, oms.inventory, oms.billing):
        response = await client.get("/ready")
        assert response.status_code == 200, response.text
        checks = response.json()["checks"]
        assert checks["relay"] is True
        assert all(value is True for name, value in checks.items() if name.startswith("consumer:"))
