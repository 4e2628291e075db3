"""`make chaos`: each fault under steady load, then the invariant checker.

Runs two replicas of every service that consumes (found from each service's own wiring), in
a topic namespace and databases of their own, on the local Kafka and PostgreSQL (started if
needed). Load runs before, during and after each fault, and ships every order it confirms
(picked, packed, dispatched and delivered, or collected), authenticated as real callers are
(tools/loadgen.py: API keys for the channels, gateway and carrier; tokens for people). A share
of the orders asks for a manufactured SKU with little stock: production makes it to order, and
the load's production workers drive each production order's tasks and quality checks (some
units reworked, some scrapped) until it is completed and its goods received. While each
fault runs, the order desk (loadgen.OrderDesk) amends, splits and merges some orders and takes
back a unit of some delivered ones (--desk-*: how many per fault). Every
wait is on a condition (the consumer groups rebalanced, a replica ready, the lag moving, the
broker answering), bounded by a timeout, so a slow machine changes how long a run takes, not
its result. Prints its progress, then one table, and writes bench/results/chaos-latest.json
with a top-level `violations` count.

    python -m tools.chaos                    every fault
    python -m tools.chaos --faults rebalance-ping-pong,scarce-stock --rate 10 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import TopicPartition

from libs.events import make_envelope
from libs.events.inventory import ReserveStock
from libs.events.topics import dead_letter_topic
from libs.runtime import faults
from libs.runtime.db import drop_databases
from libs.runtime.settings import RuntimeSettings
from libs.security import dev_issuer
from tools import infra, invariants, loadgen
from tools import progress as bars  # the bar over the faults (the Progress below prints the lines)
from tools.processes import ConsumerGroup, Platform, consumer_groups, replica_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REPLICAS = 2
PARTITIONS = 4
REJECT_CHANNELS = frozenset({"marketplace"})  # shortage policy of the run: the others backorder
POISON_PER_TOPIC = 4
ONE_SIDE_FAILURES = 6  # orders whose parallel saga step fails on one side (parallel-step-fails)
MANUFACTURED_SKUS = 3  # made to order under every fault (loadgen.Mix.manufactured_skus)
OPEN_PRODUCTION = ("planned", "awaiting_components", "released", "in_progress")
WAIT_SECONDS = 180.0  # the most any one condition may take before the fault counts as failed


class Progress:
    """One line per step, stamped with the time since the run began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)


# --- what the broker says about the consumer groups ---------------------------------------


@dataclass(frozen=True)
class GroupView:
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: tuple[frozenset[TopicPartition], ...]  # each member's assignment

    def balanced(self, members: int, partitions: set[TopicPartition]) -> bool:
        """Stable with exactly `members` members, every partition assigned, none idle."""
        assigned = set().union(*self.members) if self.members else set()
        return (
            self.state == "Stable"
            and len(self.members) == members
            and assigned == partitions
            and all(self.members)
        )


async def describe(settings: RuntimeSettings, groups: Iterable[str]) -> dict[str, GroupView]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        views = {}
        # One group per request: aiokafka reads a v3 answer with the v2 layout, which holds
        # for the first group only (the rest of the buffer is misread).
        responses = [r for g in groups for r in await admin.describe_consumer_groups([g])]
        for response in responses:
            for group in response.groups:
                _error, name, state, _type, _protocol, members = group[:6]
                views[name] = GroupView(
                    state,
                    tuple(
                        frozenset(ConsumerProtocolMemberAssignment.decode(m[4]).partitions())
                        if m[4]
                        else frozenset()
                        for m in members
                    ),
                )
        return views
    finally:
        await admin.close()


async def committed(settings: RuntimeSettings, groups: Iterable[ConsumerGroup]) -> dict[str, dict[Any, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return {
            g.group: {
                tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(g.group)).items()
            }
            for g in groups
        }
    finally:
        await admin.close()


async def lag(settings: RuntimeSettings, groups: Iterable[ConsumerGroup]) -> dict[str, int]:
    """Records not yet committed per group, over every partition of the topics it reads."""
    groups = list(groups)
    offsets = await committed(settings, groups)
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await probe.start()
    try:
        result = {}
        for group in groups:
            partitions = [TopicPartition(t, p) for t in group.topics for p in range(PARTITIONS)]
            ends = await probe.end_offsets(partitions)
            done = offsets[group.group]
            result[group.group] = sum(max(ends[tp] - done.get(tp, 0), 0) for tp in partitions)
        return result
    finally:
        await probe.stop()


# --- the faults ---------------------------------------------------------------------------


@dataclass
class Chaos:
    platform: Platform
    settings: RuntimeSettings
    groups: list[ConsumerGroup]
    progress: Progress
    generator: loadgen.LoadGenerator | None = None
    scarce_sku: str | None = None
    scarce_units: int = 0
    pingpong_cycles: int = 2
    paused: set[str] = field(default_factory=set)
    poison_sent: int = 0
    one_side_failed: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        return sorted({g.service for g in self.groups})

    def live(self, service: str) -> list[str]:
        return [
            name
            for name in self.platform.replicas(service)
            if self.platform.running(name) and name not in self.paused
        ]

    async def until(
        self,
        what: str,
        condition: Callable[[], Awaitable[bool]],
        timeout: float = WAIT_SECONDS,
        status: Callable[[], str] = lambda: "not yet",
    ) -> float:
        """Poll `condition` until it holds; seconds it took. A broker or database that is
        away while polled counts as "not yet"; `status` says what is missing."""
        started = time.monotonic()
        last_note = started
        while True:
            try:
                if await condition():
                    return time.monotonic() - started
                reason = status()
            except Exception as error:  # a broker or database away: polled again
                reason = f"{type(error).__name__}: {error}"[:200]
            now = time.monotonic()
            if now - started > timeout:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s ({reason})")
            if now - last_note >= 15:
                self.progress.say(f"  still waiting: {what} ({now - started:.0f}s, {reason})")
                last_note = now
            await asyncio.sleep(0.5)

    async def balanced(self, services: Iterable[str]) -> float:
        """Until every group of `services` is stable, with one member per live replica and
        every partition assigned to one of them."""
        wanted = [g for g in self.groups if g.service in set(services)]

        async def check() -> bool:
            views = await describe(self.settings, [g.group for g in wanted])
            return all(
                g.group in views
                and views[g.group].balanced(
                    len(self.live(g.service)),
                    {TopicPartition(t, p) for t in g.topics for p in range(PARTITIONS)},
                )
                for g in wanted
            )

        names = ", ".join(sorted({g.service for g in wanted}))
        return await self.until(f"consumer groups of {names} rebalanced", check)

    async def lag_moves(self, services: Iterable[str]) -> float:
        """Until each group of `services` has committed more, has nothing left to do, or its
        service waits for a transaction whose client does not answer: a paused replica's, which
        was mid-batch when it stopped (the batch is the one redelivered to the other replica,
        whose inbox rows then wait for the paused transaction's)."""
        wanted = [g for g in self.groups if g.service in set(services)]
        before = await committed(self.settings, wanted)
        stalled: dict[str, str] = {}
        held_up: set[str] = set()

        async def check() -> bool:
            now, behind = await committed(self.settings, wanted), await lag(self.settings, wanted)
            stalled.clear()
            for g in wanted:
                if sum(now[g.group].values()) > sum(before[g.group].values()) or behind[g.group] == 0:
                    continue
                if await self.waits_for_silent_client(g.service):
                    if g.group not in held_up:
                        held_up.add(g.group)
                        self.progress.say(f"  {g.group} waits for a transaction its paused replica left open")
                    continue
                stalled[g.group] = f"lag {behind[g.group]}, {await self.waits(g.service)}"
            return not stalled

        def status() -> str:
            return "; ".join(f"{group}: {why}" for group, why in sorted(stalled.items())) or "not yet"

        return await self.until("the lag moves", check, status=status)

    async def waits_for_silent_client(self, service: str) -> bool:
        """Some backend of the service's database waits for a lock held by a transaction
        whose client has not answered for seconds (idle in it, or not reading what it asked
        for): a live client takes milliseconds between statements, a paused one forever."""
        conn = await asyncpg.connect(self.settings.dsn(service))
        try:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity waiting"
                    " JOIN pg_stat_activity holder ON holder.pid = ANY(pg_blocking_pids(waiting.pid))"
                    " WHERE waiting.datname = current_database()"
                    " AND (holder.state LIKE 'idle in transaction%' OR holder.wait_event_type = 'Client')"
                    " AND holder.state_change < now() - interval '3 seconds'"
                )
            )
        finally:
            await conn.close()

    async def waits(self, service: str) -> str:
        """What the service's database sessions in a transaction wait for, for a progress note."""
        conn = await asyncpg.connect(self.settings.dsn(service))
        try:
            rows = await conn.fetch(
                "SELECT state, coalesce(wait_event_type || ':' || wait_event, '-') AS wait,"
                " cardinality(pg_blocking_pids(pid)) AS blockers, count(*) AS n FROM pg_stat_activity"
                " WHERE datname = current_database() AND xact_start IS NOT NULL"
                " AND pid <> pg_backend_pid() GROUP BY 1, 2, 3"
            )
        finally:
            await conn.close()
        return (
            ", ".join(f"{r['n']} {r['state']} ({r['wait']}, blocked by {r['blockers']})" for r in rows)
            or "no open transactions"
        )

    async def ready(self, names: Iterable[str]) -> float:
        async def check() -> bool:
            answers = await asyncio.gather(*(asyncio.to_thread(self.platform.ready, n) for n in names))
            return all(answers)

        return await self.until(f"{', '.join(names)} ready", check)

    async def start(self, *names: str) -> None:
        await asyncio.to_thread(self.platform.start, *names)

    # -- faults ---------------------------------------------------------------------------

    async def kill(self, service: str) -> None:
        """SIGKILL one replica; its partitions move to the other; it comes back and gets some."""
        self.platform.kill(service)
        took = await self.balanced([service])
        moved = await self.lag_moves([service])
        self.progress.say(
            f"  {service} killed: its partitions moved to the other replica in {took:.1f}s,"
            f" which worked on them in {moved:.1f}s"
        )
        await self.start(service)
        took = await self.balanced([service])
        self.progress.say(f"  {service} back; groups rebalanced in {took:.1f}s")

    async def crash_at(self, service: str, point: str) -> None:
        """Every replica of `service` is killed; one comes back armed to die at `point` (alone,
        so it is the one publishing and consuming); once it has, all come back."""
        replicas = self.platform.replicas(service)
        for name in replicas:
            self.platform.kill(name)
        self.platform.start_with({"OM_FAULTS": point}, service, wait=False)
        code = await asyncio.to_thread(self.platform.wait_exit, service, WAIT_SECONDS)
        self.progress.say(f"  {service} crashed at {point} (exit {code})")
        await self.start(*replicas)
        await self.balanced([service])

    async def restart_kafka(self) -> None:
        if infra.read_pid("kafka") is None:
            raise RuntimeError("the broker was not started by this project; cannot restart it")
        await asyncio.to_thread(infra.stop_pid, "kafka")  # returns once the process is gone
        await self.until("the broker's port closed", _closed(infra.KAFKA_PORT))
        await asyncio.to_thread(infra.kafka_start)
        await asyncio.to_thread(infra.kafka_wait_ready)
        self.progress.say("  broker answers again")
        took = await self.balanced(self.services)
        self.progress.say(f"  every consumer group back in {took:.1f}s")

    async def restart_postgres(self) -> None:
        if infra.read_pid("postgresql") is None:
            raise RuntimeError("PostgreSQL was not started by this project; cannot restart it")
        await asyncio.to_thread(infra.pg_stop)  # pg_ctl -w: returns once it has stopped
        await self.until("PostgreSQL's port closed", _closed(infra.PG_PORT))
        await asyncio.to_thread(infra.pg_start)
        took = await self.ready([n for s in self.services for n in self.live(s)])
        self.progress.say(f"  PostgreSQL back; every replica ready in {took:.1f}s")

    async def pause(self, names: list[str]) -> None:
        """SIGSTOP past the session timeout: each group moves the paused member's partitions to
        the other replica, which works on them; then SIGCONT, and they are shared again."""
        services = [n.split("#")[0] for n in names]
        for name in names:
            self.platform.signal(name, signal.SIGSTOP)
            self.paused.add(name)
        try:
            took = await self.balanced(services)
            moved = await self.lag_moves(services)
        finally:
            for name in names:
                self.platform.signal(name, signal.SIGCONT)
                self.paused.discard(name)
        back = await self.balanced(services)
        self.progress.say(
            f"  {', '.join(names)} paused: partitions moved in {took:.1f}s, the other replica"
            f" worked on them in {moved:.1f}s; back and rebalanced in {back:.1f}s"
        )

    async def ping_pong(self) -> None:
        """Partitions of every group move from replica to replica, repeatedly, under load:
        each swing pauses one replica of every consuming service, then the other."""
        for cycle in range(self.pingpong_cycles):
            for replica in range(1, REPLICAS + 1):
                self.progress.say(f"  swing {cycle * REPLICAS + replica}/{self.pingpong_cycles * REPLICAS}")
                await self.pause([replica_name(s, replica) for s in self.services])

    async def restock(self) -> None:
        """A few more units of the scarce SKU, booked on every inventory replica at once, so
        backorders are served on one while the other reserves for new orders."""
        assert self.generator is not None and self.scarce_sku is not None
        units = max(self.scarce_units // 4, 1)
        replicas = self.platform.replicas("inventory")
        receipts = [
            self.generator.receive(self.scarce_sku, code, units, replica=n)
            for n, (code, _) in zip(range(len(replicas)), loadgen.WAREHOUSES, strict=False)
        ]
        await asyncio.gather(*receipts)
        self.progress.say(
            f"  {units} more units of {self.scarce_sku} booked on each of {len(replicas)} replicas"
        )

    async def one_side_fails(self) -> None:
        """Orders whose parallel saga step fails on one side: marketplace orders (the channel
        rejects shortages) for twice what is in stock. Billing invoices each beside the refused
        reservation, so its compensation must void that invoice before the order is rejected.
        A billing replica is killed meanwhile: invoices and voids cross a rebalance."""
        generator = self.generator
        assert generator is not None
        sku = generator.scarce_sku(f"ONESIDE-{uuid4().hex[:4]}")
        code, region = loadgen.WAREHOUSES[0]
        await generator.receive(sku, code, 1)
        channel = await generator.credentials.channel("marketplace")
        for _ in range(ONE_SIDE_FAILURES):
            body = {
                "channel": "marketplace",
                "customer": {
                    "name": "One Side",
                    "email": f"{uuid4().hex[:10]}@chaos.example",
                    "region": region,
                },
                "lines": [{"sku": sku, "quantity": 2, "unit_price": "19.90"}],
                "currency": "EUR",
                "payment_terms": "prepaid",
                "shipping": {"method": "pickup"},
            }
            status, text = await generator.post(
                "order", "/orders", body, {**channel, "Idempotency-Key": f"chaos-{uuid4()}"}
            )
            if status != 202:
                raise RuntimeError(f"an order failing on one side was refused: {status} {text[:200]}")
            self.one_side_failed.append(json.loads(text)["order_id"])
        await self.kill("billing")
        took = await self.until(
            "each order failing on one side rejected, its invoice void", self._one_side_undone
        )
        self.progress.say(
            f"  {ONE_SIDE_FAILURES} orders refused stock, their invoices voided, rejected in {took:.1f}s"
        )

    async def _one_side_undone(self) -> bool:
        ids = self.one_side_failed
        order_db = await asyncpg.connect(self.settings.dsn("order"))
        billing_db = await asyncpg.connect(self.settings.dsn("billing"))
        try:
            rejected = await order_db.fetchval(
                "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[]) AND status = 'rejected'", ids
            )
            void = await billing_db.fetchval(
                "SELECT count(*) FROM invoices WHERE order_id = ANY($1::text[]) AND status = 'void'", ids
            )
        finally:
            await order_db.close()
            await billing_db.close()
        return bool(rejected == void == len(ids))

    def consumed_topics(self) -> list[str]:
        return sorted({t for g in self.groups for t in g.topics})

    async def replay(self) -> None:
        """Publish every record of the consumed topics again (duplicates of everything)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        try:
            for topic in self.consumed_topics():
                records = await read_all(self.settings, topic)
                for record in records:
                    await producer.send(
                        record.topic, record.value, key=record.key, headers=list(record.headers or ())
                    )
                self.progress.say(f"  {len(records)} records of {topic} sent again")
            await producer.flush()
        finally:
            await producer.stop()

    async def poison(self) -> None:
        """Garbage, a broken envelope, a schema-invalid payload and an unknown type, per topic."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await producer.start()
        valid = make_envelope(
            ReserveStock(order_id="poison", lines=({"sku": "X", "quantity": 1},)),  # type: ignore[arg-type]
            event_id=uuid4(),
            aggregate_id="poison",
            aggregate_version=0,
            occurred_at=datetime.now(UTC),
            correlation_id="poison",
            causation_id=None,
            actor="chaos",
        ).model_dump(mode="json")
        bad_payload = {**valid, "payload": {"order_id": "poison", "lines": [{"sku": "X", "quantity": -5}]}}
        unknown = {**valid, "event_id": str(uuid4()), "event_type": "StockTeleported"}
        messages = [
            b"\x00\xffnot json",
            b'{"event_id": "nope"}',
            json.dumps(bad_payload).encode(),
            json.dumps(unknown).encode(),
        ]
        assert len(messages) == POISON_PER_TOPIC
        try:
            for topic in self.consumed_topics():
                for value in messages:
                    await producer.send_and_wait(topic, value, key=b"poison")
                    self.poison_sent += 1
        finally:
            await producer.stop()

    def dead_letters_expected(self) -> int:
        """Each group dead-letters the poison of every topic it reads."""
        return sum(POISON_PER_TOPIC * len(g.topics) for g in self.groups) if self.poison_sent else 0

    async def dead_letters(self) -> int:
        total = 0
        for group in self.groups:
            records = await read_all(self.settings, dead_letter_topic(group.group))
            total += sum(1 for r in records if dict(r.headers or ()).get("dlq.reason"))
        return total


def _closed(port: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not infra.port_open(port)

    return check


async def read_all(settings: RuntimeSettings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in assigned]
            if all(position >= ends[tp] for position, tp in zip(positions, assigned, strict=False)):
                return records
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
    return consumer.partitions_for_topic(topic) or set()


@dataclass(frozen=True)
class Fault:
    action: Callable[[Chaos], Awaitable[None]]
    scarce: bool = False  # the load asks for one SKU with fewer units than orders


FAULTS: dict[str, Fault] = {
    "kill-order": Fault(lambda c: c.kill("order")),
    "kill-inventory": Fault(lambda c: c.kill("inventory")),
    "kill-billing": Fault(lambda c: c.kill("billing")),
    # Mid-flow: production orders being released, worked on and completed while it dies.
    "kill-production": Fault(lambda c: c.kill("production")),
    "crash-after-db-commit-before-offset-commit": Fault(
        lambda c: c.crash_at("billing", faults.AFTER_DB_COMMIT_BEFORE_OFFSET_COMMIT)
    ),
    "crash-after-publish-before-outbox-mark": Fault(
        lambda c: c.crash_at("order", faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK)
    ),
    # With OM_PUBLISH_AFTER_COMMIT: the order process dies holding committed rows it claimed;
    # the relay of a replica takes them once the dead process's liveness lock is gone.
    "crash-after-commit-before-publish": Fault(
        lambda c: c.crash_at("order", faults.AFTER_COMMIT_BEFORE_PUBLISH)
    ),
    "restart-kafka": Fault(lambda c: c.restart_kafka()),
    "restart-postgresql": Fault(lambda c: c.restart_postgres()),
    "sigstop-consumer": Fault(lambda c: c.pause(["inventory"])),
    "rebalance-ping-pong": Fault(lambda c: c.ping_pong()),
    "scarce-stock": Fault(lambda c: c.restock(), scarce=True),
    "replay-topics": Fault(lambda c: c.replay()),
    "poison": Fault(lambda c: c.poison()),
    "parallel-step-fails": Fault(lambda c: c.one_side_fails()),
}


# --- one fault under load -----------------------------------------------------------------


async def settle(chaos: Chaos, order_ids: list[str], timeout: float, stuck_after: float) -> float:
    """Until every accepted order is placed and no longer mid-saga (waiting for stock or a
    person is fine) and every confirmed one has arrived (delivered or completed: the load
    ships what is confirmed), or what is left is stuck beyond doubt; seconds it took."""

    left: dict[str, int] = {}

    async def check() -> bool:
        conn = await asyncpg.connect(chaos.settings.dsn("order"))
        try:
            rows = await invariants.order_rows(conn, order_ids)
        finally:
            await conn.close()
        left.clear()
        left["not placed yet"] = len(order_ids) - len(rows)
        for row in rows.values():
            kind = invariants.classify(row, stuck_after)[0]
            on_its_way = row.stage == "fulfilling" and row.status not in invariants.ARRIVED
            if kind in ("terminal", "needs_attention") or (kind == "waiting" and not on_its_way):
                continue
            key = f"{row.status}/{row.stage}" + (" (stuck)" if kind == "stuck" else "")
            left[key] = left.get(key, 0) + 1
        return not any(n for key, n in left.items() if not key.endswith("(stuck)"))

    def status() -> str:
        return ", ".join(f"{n} {key}" for key, n in sorted(left.items()) if n) or "not yet"

    try:
        return await chaos.until("accepted orders settled", check, timeout, status)
    except TimeoutError:
        return timeout


async def production_settled(chaos: Chaos, timeout: float) -> str | None:
    """Until no production order is open (each completed or cancelled) and the goods of every
    completed one that passed any are received; None, or what was still open when the wait ran
    out. Production orders wait for no person but the load's workers, so one left open is a
    fault's damage."""
    left: dict[str, int] = {}

    async def check() -> bool:
        conn = await asyncpg.connect(chaos.settings.dsn("production"))
        try:
            rows = await conn.fetch(
                "SELECT CASE WHEN status = 'completed' THEN 'completed, goods not received'"
                " ELSE status END AS what, count(*) AS n FROM production_orders"
                " WHERE status = ANY($1::text[]) OR (status = 'completed' AND passed > 0 AND NOT received)"
                " GROUP BY 1",
                list(OPEN_PRODUCTION),
            )
        finally:
            await conn.close()
        left.clear()
        left.update({row["what"]: int(row["n"]) for row in rows})
        # The workers read each production order's end a poll after the database has it.
        working = chaos.generator.production_open if chaos.generator is not None else 0
        if working:
            left["worked on by the load's workers"] = working
        return not left

    def status() -> str:
        return ", ".join(f"{n} {what}" for what, n in sorted(left.items())) or "not yet"

    try:
        await chaos.until("production orders settled", check, timeout, status)
    except TimeoutError:
        return f"production orders not settled within {timeout:.0f}s: {status()}"
    return None


def production_summary(generator: loadgen.LoadGenerator, report: invariants.Report) -> dict[str, int]:
    """What production made under the load so far (the workers' side and the checker's)."""
    return {
        "orders": report.counts.get("production_orders", 0),
        "completed": report.counts.get("production_completed", 0),
        **{f"worker_{k}": v for k, v in generator.production.as_dict().items()},
        "components_consumed_twice": report.counts.get("components_consumed_twice", 0),
        "goods_received_twice": report.counts.get("goods_received_twice", 0),
        "not_adding_up": report.counts.get("production_not_adding_up", 0),
    }


async def run_fault(chaos: Chaos, name: str, args: argparse.Namespace) -> dict[str, Any]:
    generator = chaos.generator
    assert generator is not None
    fault = FAULTS[name]
    orders = max(int(args.rate * args.seconds), 3)
    scarce_sku = None
    if fault.scarce:
        # Fewer units than orders (each asks 1-3), spread over the warehouses.
        scarce_sku = chaos.scarce_sku = generator.scarce_sku(f"SCARCE-{uuid4().hex[:4]}")
        chaos.scarce_units = max(orders // 2, len(loadgen.WAREHOUSES))
        per_warehouse = chaos.scarce_units // len(loadgen.WAREHOUSES)
        for code, _ in loadgen.WAREHOUSES:
            await generator.receive(scarce_sku, code, per_warehouse)
        chaos.progress.say(f"  {scarce_sku}: {per_warehouse * 3} units for about {orders} orders")
    fault_done = asyncio.Event()
    load = generator.launch(orders, args.rate, 8, drain_seconds=0, until=fault_done, scarce_sku=scarce_sku)
    error = None
    fault_seconds = None
    fault_started = time.monotonic()
    dose = desk_dose(args)
    desk: asyncio.Task[loadgen.DeskWork] | None = None
    try:
        await generator.wait_submitted(orders // 3)
        chaos.progress.say(f"  {generator.submitted} orders submitted; fault starts")
        fault_started = time.monotonic()
        if dose.any:  # the order desk changes orders while the fault runs
            desk = asyncio.create_task(loadgen.OrderDesk(generator, dose).run(fault_done))
        try:
            await FAULTS[name].action(chaos)
        except Exception as failure:  # reported in the table, and counted as a violation
            error = f"{type(failure).__name__}: {failure}"
            chaos.progress.say(f"  fault failed: {error}")
        fault_seconds = round(time.monotonic() - fault_started, 1)
        # Load after the fault too: a third of the planned orders more (at least).
        await generator.wait_submitted(generator.submitted + orders // 3)
    finally:
        fault_done.set()
        result = await load
        # Its actions started under the fault end within their time; the orders it made are
        # in the run's result by then, so they are settled and checked with the others.
        desk_work = await desk if desk is not None else None
    # The production workers go on after the load: made-to-order goods come in, and the
    # lag reaches 0 only once they have stopped.
    chaos.progress.say(f"  load done: {len(result.orders)} orders; waiting for production to settle")
    unsettled_production = await production_settled(chaos, args.settle)
    chaos.progress.say("  waiting for the lag to reach 0")
    lag_seconds: float | None = None
    try:
        await chaos.until("consumer lag 0", lambda: _lag_zero(chaos))
        lag_seconds = round(time.monotonic() - fault_started, 1)
    except TimeoutError:
        pass
    accepted = [
        oid
        for oid, t in result.orders.items()
        if not (t.outcome or "").startswith(("submit_failed", "refused"))
    ]
    settled_in = await settle(chaos, accepted, args.settle, args.stuck_after)
    chaos.progress.say(f"  settled in {settled_in:.1f}s; checking invariants")
    report = await invariants.check(
        chaos.settings, accepted, stuck_after=args.stuck_after, reject_channels=REJECT_CHANNELS
    )
    row: dict[str, Any] = {
        "fault": name,
        "fault_s": fault_seconds,
        "submitted": len(result.orders),
        "accepted": len(accepted),
        "terminal": report.counts["terminal"],
        "waiting": report.counts["waiting"],
        "in_flight": report.counts["in_flight"],
        "needs_attention": report.counts["needs_attention"],
        "stuck": report.counts["stuck"],
        "lost": report.counts["lost"],
        "oversold": report.counts["oversold"],
        "stock_reserved_twice": report.counts["stock_reserved_twice"],
        "payments_applied_twice": report.counts["payments_applied_twice"],
        "refunds_issued_twice": report.counts["refunds_issued_twice"],
        "delivered": report.counts["delivered"],
        "dispatched_twice": report.counts["dispatched_twice"],
        "lag_zero_after_s": lag_seconds,
        "violations": len(report.violations)
        + (1 if error else 0)
        + (1 if lag_seconds is None else 0)
        + (1 if unsettled_production else 0),
        "details": ([error] if error else [])
        + (["lag not 0 within the wait"] if lag_seconds is None else [])
        + ([unsettled_production] if unsettled_production else [])
        + report.violations[:10],
        "production": production_summary(generator, report),
        "notes": report.notes[:10],
    }
    if desk_work is not None:
        row["desk"] = {**desk_work.as_dict(), **{k: report.counts.get(k, 0) for k in DESK_CHECKS}}
    if name == "parallel-step-fails":
        row["one_side_failed"] = len(chaos.one_side_failed)
    if scarce_sku is not None:
        row["scarce"] = summary = await scarce_summary(chaos.settings, scarce_sku, report)
        answered = sum(v for k, v in summary.items() if k.startswith("orders_"))
        if answered != len(accepted):
            row["violations"] += 1
            row["details"].append(
                f"{len(accepted) - answered} of {len(accepted)} orders for the scarce SKU were neither"
                " reserved, backordered nor rejected"
            )
    return row


# What the invariant checker counted about the order desk's changes (tools/invariants.py).
DESK_CHECKS = (
    "reservations_checked",
    "reservations_changing",
    "reservations_not_matching_lines",
    "splits",
    "split_into_missing",
    "merged",
    "merged_units_not_moved",
    "transfers",
    "transfers_not_matching",
    "refunded_over_paid",
    "money_lost",
)


def desk_dose(args: argparse.Namespace) -> loadgen.DeskDose:
    """The order desk's actions per fault (none unless asked for)."""
    return loadgen.DeskDose(
        amends=getattr(args, "desk_amends", 0),
        splits=getattr(args, "desk_splits", 0),
        merges=getattr(args, "desk_merges", 0),
        returns=getattr(args, "desk_returns", 0),
    )


async def _lag_zero(chaos: Chaos) -> bool:
    behind = await lag(chaos.settings, chaos.groups)
    return all(v == 0 for v in behind.values())


async def scarce_summary(settings: RuntimeSettings, sku: str, report: invariants.Report) -> dict[str, int]:
    conn = await asyncpg.connect(settings.dsn("inventory"))
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(on_hand), 0) AS on_hand, coalesce(sum(reserved), 0) AS reserved"
            " FROM stock_levels WHERE sku = $1",
            sku,
        )
        # Received from the events: on hand falls as the load ships what it confirmed.
        received = await conn.fetchval(
            "SELECT coalesce(sum((payload->>'quantity')::bigint), 0) FROM events"
            " WHERE stream_id = $1 AND event_type = 'StockReceived'",
            f"sku-{sku}",
        )
    finally:
        await conn.close()
    return {
        "units_received": int(received),
        "units_on_hand": int(row["on_hand"]),
        "units_reserved": int(row["reserved"]),
        "orders_reserved": report.counts["stock_reserved"],
        "orders_backordered": report.counts["backordered"],
        "orders_refused": report.counts["refused_stock"],
        "orders_released": report.counts["released_stock"],
        "orders_rejected_unreserved": report.counts["rejected_unreserved"],
    }


# --- the run ------------------------------------------------------------------------------


async def chaos_run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress()
    run_id = uuid4().hex[:6]
    settings = RuntimeSettings(
        db_prefix=f"omchaos_{run_id}", topic_namespace=f"chaos{run_id}.", topic_partitions=PARTITIONS
    )
    groups = consumer_groups(settings)
    consuming = tuple(sorted({g.service for g in groups}))
    progress.say(f"run {run_id}: {REPLICAS} replicas each of {', '.join(consuming)}")
    await asyncio.to_thread(infra.up)
    # The services trust the development issuer's key; the load's people carry its tokens.
    dev_issuer.ensure_keys()
    platform = Platform(
        f"chaos-{run_id}",
        {
            "OM_DB_PREFIX": settings.db_prefix,
            "OM_TOPIC_NAMESPACE": settings.topic_namespace,
            "OM_TOPIC_PARTITIONS": str(PARTITIONS),
            "OM_ORDER_PAYMENT_DEADLINE_SECONDS": str(args.payment_deadline),
            "OM_ORDER_COMPENSATION_RETRY_SECONDS": "10",
            "OM_ORDER_SHORTAGE_POLICY_BY_CHANNEL": json.dumps(dict.fromkeys(REJECT_CHANNELS, "reject")),
            "OM_LOG_JSON": "false",
        },
        services=consuming,
        replicas=tuple(replica_name(s, n) for s in consuming for n in range(2, REPLICAS + 1)),
    )
    chaos = Chaos(platform, settings, groups, progress, pingpong_cycles=args.pingpong_cycles)
    rows = []
    try:
        await asyncio.to_thread(platform.start)
        await chaos.balanced(consuming)
        progress.say(f"platform up; logs in {platform.log_path('*')}")
        # Fewer SKUs than a bench: more orders meet on the same SKU aggregates. Every confirmed
        # order is shipped (warehouse steps, carrier reports) under the fault too.
        mix = loadgen.Mix(
            skus=100,
            payment_fail_share=0.05,
            never_pay_share=0.02,
            ship=True,
            manufactured_skus=MANUFACTURED_SKUS,
            manufactured_share=args.manufactured_share,
        )
        urls = {s: platform.urls(s) for s in ("order", "inventory", "billing", "production")}
        async with loadgen.LoadGenerator(
            settings, urls["order"], urls["inventory"], urls["billing"], mix, urls["production"]
        ) as generator:
            chaos.generator = generator
            await generator.stock_up(args.stock)
            await generator.start_listening()
            for n, name in enumerate(bars.each(args.faults, "chaos"), 1):
                progress.say(f"fault {n}/{len(args.faults)}: {name}")
                rows.append(await run_fault(chaos, name, args))
                progress.say(f"  {rows[-1]['violations']} violations")
            # Production orders of the last fault's orders may still be in the making: the
            # final check then sees every completion with its goods received.
            unsettled_production = await production_settled(chaos, args.settle)
            production_work = generator.production.as_dict()
        if "poison" in args.faults:
            dead, expected = await chaos.dead_letters(), chaos.dead_letters_expected()
            missing = max(expected - dead, 0)
            for row in rows:
                if row["fault"] == "poison":
                    row["poison_sent"], row["dead_lettered"] = chaos.poison_sent, dead
                    row["violations"] += missing
                    if missing:
                        row["details"].append(
                            f"{missing} poison messages missing from the dead-letter topics"
                        )
        final = await invariants.check(settings, stuck_after=args.stuck_after)
        if unsettled_production:
            final.fail(unsettled_production)
        progress.say(f"final check over every store: {len(final.violations)} violations")
    finally:
        platform.stop()
        if not args.keep:
            await drop_databases(settings)
    return {
        "run_id": run_id,
        "replicas": {s: REPLICAS for s in consuming},
        "violations": sum(r["violations"] for r in rows) + len(final.violations),
        "final_check": final.as_dict(),
        "production_workers": production_work,
        "faults": rows,
    }


COLUMNS = {  # row key -> table header
    "fault": "fault",
    "fault_s": "fault s",
    "submitted": "submitted",
    "accepted": "accepted",
    "terminal": "terminal",
    "waiting": "waiting",
    "in_flight": "in flight",
    "needs_attention": "attention",
    "stuck": "stuck",
    "lost": "lost",
    "oversold": "oversold",
    "stock_reserved_twice": "reserved 2x",
    "payments_applied_twice": "paid 2x",
    "refunds_issued_twice": "refunded 2x",
    "delivered": "delivered",
    "dispatched_twice": "dispatched 2x",
    "lag_zero_after_s": "lag->0 s",
    "violations": "violations",
}


def table(result: dict[str, Any]) -> str:
    rows = result["faults"]
    widths = {c: max(len(h), *(len(str(r[c])) for r in rows)) for c, h in COLUMNS.items()}
    lines = ["  ".join(h.ljust(widths[c]) for c, h in COLUMNS.items())]
    for row in rows:
        lines.append("  ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS))
        if "scarce" in row:
            s = row["scarce"]
            lines.append(
                f"    scarce SKU: {s['units_received']} units received, {s['units_on_hand']} on hand"
                f" (the rest shipped), {s['units_reserved']} of them reserved;"
                f" orders: {s['orders_reserved']} reserved, {s['orders_backordered']} backordered,"
                f" {s['orders_refused']} rejected by policy, {s['orders_released']} reserved and"
                " released (cancelled: payment failed or late),"
                f" {s.get('orders_rejected_unreserved', 0)} rejected before a reservation"
                " (a split's or merge's units refused)"
            )
        if row.get("production", {}).get("orders"):
            p = row["production"]
            lines.append(
                f"    production: {p['orders']} production orders, {p['completed']} completed"
                f" (workers: {p['worker_reworked']} checks reworked, {p['worker_scrapped']} scrapped,"
                f" {p['worker_refused']} steps refused, {p['worker_retried']} asked again);"
                f" components consumed twice {p['components_consumed_twice']}, goods received twice"
                f" {p['goods_received_twice']}, not adding up {p['not_adding_up']}"
            )
        if "desk" in row:
            d = row["desk"]
            done = ", ".join(f"{d[f'{a}_done']} {a}" for a in loadgen.DESK_ACTIONS)
            refused = sum(d[f"{a}_refused"] for a in loadgen.DESK_ACTIONS)
            lines.append(
                f"    order desk: {done} done, {refused} refused (409), {d['retried']} asked again;"
                f" checked: {d['reservations_checked']} reservations against their orders' lines"
                f" ({d['reservations_changing']} changing), {d['splits']} splits, {d['merged']} merged,"
                f" {d['transfers']} transfers; not matching {d['reservations_not_matching_lines']},"
                f" split or merged units astray {d['split_into_missing'] + d['merged_units_not_moved']},"
                f" refunded over paid {d['refunded_over_paid']}, money lost {d['money_lost']}"
            )
        lines += [f"    ! {detail}" for detail in row["details"]]
        lines += [f"    - {note}" for note in row["notes"]]
    lines.append(
        f"total violations: {result['violations']} (final check: {result['final_check']['violations']})"
    )
    return "\n".join(lines)


def main() -> None:
    # The broker restarts on purpose: keep the clients' reconnect chatter off the table.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faults", type=lambda v: v.split(","), default=list(FAULTS))
    parser.add_argument("--rate", type=float, default=20, help="orders/s of steady load")
    parser.add_argument("--seconds", type=float, default=12, help="load per fault (at least)")
    parser.add_argument("--settle", type=float, default=90, help="most seconds to wait for sagas")
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=30,
        help="seconds past its deadline (or in a stage without one) before an order is stuck",
    )
    parser.add_argument(
        "--payment-deadline", type=float, default=20, help="seconds a prepaid order waits for its payment"
    )
    parser.add_argument("--pingpong-cycles", type=int, default=3, help="rebalance-ping-pong cycles")
    parser.add_argument("--stock", type=int, default=100_000)
    parser.add_argument(
        "--manufactured-share",
        type=float,
        default=0.1,
        help="share of the orders with a line of a manufactured SKU (made to order)",
    )
    desk = parser.add_argument_group("the order desk", "its actions per fault, while the fault runs")
    desk.add_argument("--desk-amends", type=int, default=3, help="orders amended (up and down in turn)")
    desk.add_argument("--desk-splits", type=int, default=2, help="backordered orders split")
    desk.add_argument("--desk-merges", type=int, default=2, help="pairs of one customer's orders merged")
    desk.add_argument("--desk-returns", type=int, default=2, help="delivered orders with a unit returned")
    parser.add_argument("--keep", action="store_true", help="keep the run's databases")
    args = parser.parse_args()
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; choose from {sorted(FAULTS)}")
    result = asyncio.run(chaos_run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos-latest.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    raise SystemExit(1 if result["violations"] else 0)


if __name__ == "__main__":
    main()
