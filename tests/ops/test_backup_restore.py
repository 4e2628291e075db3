"""make backup / make restore (tools/backup.py) on a platform under load: the backup restores
into a fresh PostgreSQL server that adds up (tools/invariants.py), and the services started on
it resume the work in flight without doing anything twice.

One platform of its own (it is stopped and its databases dropped, as in a disaster), one
throwaway server (initdb on a free port, stopped and removed at the end)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.runtime.kafka import admin_client
from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID, eventually
from tests.integration.conftest import (
    HARNESS_ENV,
    PAYMENT_DEADLINE_SECONDS,
    Oms,
    order_body,
    platform_settings,
    running_platform,
)
from tools import backup, invariants
from tools.infra import PG_BIN
from tools.processes import CORE_SERVICES, Platform, consumer_groups

pytestmark = pytest.mark.integration

ORDERS = 24
SETTLED = "awaiting_payment"  # a prepaid order with its stock reserved and its invoice issued


def as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def fresh_server() -> Iterator[int]:
    """A PostgreSQL server of its own (data directory, port), with the ordermesh role the
    services and tools log in as; its port."""
    root = Path(tempfile.mkdtemp(prefix="om-pg-restore-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            shutil.chown(path, "postgres", "postgres")
    port = free_port()
    initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust"]
    initdb += ["--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"]
    subprocess.run(as_postgres(initdb), check=True, capture_output=True)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
    start = [
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-t",
        "60",
        "-l",
        str(root / "log"),
        "-o",
        options,
    ]
    subprocess.run(as_postgres([*start, "start"]), check=True, capture_output=True)
    try:
        role = "CREATE ROLE ordermesh LOGIN CREATEDB PASSWORD 'ordermesh'"
        psql = [str(PG_BIN / "psql"), "-h", str(sockets), "-p", str(port), "-U", "postgres", "-c", role]
        subprocess.run(as_postgres(psql), check=True, capture_output=True)
        yield port
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def services_on(settings: RuntimeSettings) -> AsyncIterator[Platform]:
    """order, inventory and billing started on `settings`' server, topics and databases,
    as running_platform starts them (without registering warehouses again)."""
    env = {
        "OM_PG_PORT": str(settings.pg_port),
        "OM_DB_PREFIX": settings.db_prefix,
        "OM_TOPIC_NAMESPACE": settings.topic_namespace,
        "OM_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "OM_LOG_JSON": "false",
        "OM_ORDER_PAYMENT_DEADLINE_SECONDS": str(PAYMENT_DEADLINE_SECONDS),
        **HARNESS_ENV,
    }
    platform = Platform(f"{RUN_ID}-restored", env)
    try:
        await asyncio.to_thread(platform.start)
        yield platform
    finally:
        platform.stop()


async def effects(settings: RuntimeSettings, service: str) -> Counter[tuple[str, str]]:
    """(order id, event type) -> how many events of the service's store name that order."""
    db = await asyncpg.connect(settings.dsn(service))
    try:
        rows = await db.fetch(
            "SELECT payload->>'order_id' AS order_id, event_type FROM events WHERE payload ? 'order_id'"
        )
    finally:
        await db.close()
    return Counter((row["order_id"], row["event_type"]) for row in rows)


async def orders_in(settings: RuntimeSettings) -> dict[str, str]:
    db = await asyncpg.connect(settings.dsn("order"))
    try:
        return {
            row["order_id"]: row["status"] for row in await db.fetch("SELECT order_id, status FROM orders")
        }
    finally:
        await db.close()


async def caught_up(settings: RuntimeSettings) -> bool:
    """Every consumer group of order, inventory and billing has read to the end of its topics,
    and nothing waits in their outboxes: whatever the restore left to do is done."""
    for service in CORE_SERVICES:
        db = await asyncpg.connect(settings.dsn(service))
        try:
            if await db.fetchval("SELECT count(*) FROM outbox"):
                return False
        finally:
            await db.close()
    groups = [group for group in consumer_groups(settings) if group.service in CORE_SERVICES]
    admin = admin_client(settings)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await reader.start()
    try:
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group.group)
            partitions = [
                TopicPartition(described["topic"], partition["partition"])
                for described in await admin.describe_topics(list(group.topics))
                for partition in described["partitions"]
            ]
            assert partitions, f"{group.topics}: no partitions"
            ends = await reader.end_offsets(partitions)
            for partition, end in ends.items():
                mark = committed.get(partition)
                if end and (mark is None or mark.offset < end):
                    return False
        return True
    finally:
        await reader.stop()
        await admin.close()


async def duplicates_dropped(platform: Platform) -> float:
    """Messages the services' inboxes recognised as already handled, from their /metrics."""
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as client:
        for service in ("order", "inventory", "billing"):
            text = (await client.get(f"{platform.url(service)}/metrics")).text
            pattern = r'^ordermesh_messages_handled_total\{[^}]*outcome="duplicate"[^}]*\} (\S+)$'
            total += sum(float(value) for value in re.findall(pattern, text, re.M))
    return total


async def test_a_backup_taken_under_load_restores_into_a_fresh_server_and_resumes_without_duplicates(
    tmp_path: Path,
) -> None:
    settings = platform_settings(f"ombk_{RUN_ID}", f"bk{RUN_ID}.")
    sku = f"BACKUP-{RUN_ID}"
    placed: list[str] = []
    backup_dir = tmp_path / "backup"

    # Arrange: orders flowing through the saga while the backup is taken.
    async with running_platform("backup", settings, {}) as platform:
        oms = Oms(platform)
        try:
            await oms.receive(sku, ORDERS * 2)

            async def place_orders() -> None:
                for _ in range(ORDERS):
                    placed.append(await oms.place(order_body(sku)))

            async def a_third_placed() -> bool:
                return len(placed) >= ORDERS // 3

            load = asyncio.create_task(place_orders())
            await eventually(a_third_placed, timeout=60)
            manifest = await backup.dump(settings, backup_dir)
            await load
            for order_id in placed:
                await oms.wait_status(order_id, SETTLED, timeout=60)
        finally:
            await oms.close()
    # The platform is gone and so are its databases: only the backup is left.
    assert [entry["service"] for entry in manifest["databases"]][:3] == ["order", "inventory", "billing"]
    assert json.loads((backup_dir / backup.OFFSETS).read_text()), "no consumer group offsets recorded"

    with fresh_server() as port:
        restored = settings.model_copy(update={"pg_port": port})
        # Act 1: restore into the fresh server.
        await backup.restore(restored, backup_dir)

        report = await invariants.check(restored, stuck_after=3600)
        assert not report.violations, report.violations
        in_backup = await orders_in(restored)
        assert in_backup, "the backup holds no order"
        assert set(in_backup) <= set(placed)
        before = {service: await effects(restored, service) for service in ("inventory", "billing")}

        # Act 2: the services start on the restored databases, their consumers rewound.
        async with services_on(restored) as resumed:
            oms = Oms(resumed)
            try:
                for order_id in in_backup:
                    await oms.wait_status(order_id, SETTLED, timeout=60)
            finally:
                await oms.close()

            async def after() -> dict[str, Counter[tuple[str, str]]] | None:
                if not await caught_up(restored):
                    return None
                return {service: await effects(restored, service) for service in ("inventory", "billing")}

            settled = await eventually(after, timeout=60)
            # The rewind re-delivered what the databases had already handled...
            assert await duplicates_dropped(resumed) > 0

        # Assert: ...and nothing was done twice.
        for service, counts in settled.items():
            twice = {key: n for key, n in counts.items() if key[0] in in_backup and n > 1}
            assert not twice, f"{service} did something twice for an order: {twice}"
            settled_then = {oid for oid, status in in_backup.items() if status == SETTLED}
            changed = {
                key: (before[service][key], n)
                for key, n in counts.items()
                if key[0] in settled_then and before[service][key] != n
            }
            assert not changed, f"{service} changed orders the backup held as settled: {changed}"
        report = await invariants.check(restored, accepted_orders=in_backup, stuck_after=3600)
        assert not report.violations, report.violations
        assert report.counts["stuck"] == 0
