"""`make bench`: one fixed scenario against the platform `make up` started, one table, and
bench/results/latest.json.

1. Raw ceilings of this machine, measured in the same run: Kafka produce+consume of messages
   of an order event's size through aiokafka (acks=all, idempotent), and PostgreSQL
   single-row insert transactions (synchronous_commit as configured: on).
2. Sustained orders/s through the whole saga, closed loop (as fast as it is absorbed).
3. Latency at 70% of that rate, open loop: p50/p95/p99 from submission to outcome.
4. What authenticating one request costs the server (tools/bench_auth.py): a token, an API key.
5. An open-loop sweep (tools/bench_sweep.py): a few offered rates from low to beyond the peak,
   p50/p99 to `confirmed` at each, drawn as bench/results/latency-curve.png
   (tools/bench_report.py), and where the time of a median and of a p99 order goes, stage by
   stage. --no-sweep (or OM_BENCH_SWEEP=off) leaves it out.
6. The peer (tools/peer_bench.py): the same flow on the `eventsourcing` library against the same
   PostgreSQL, in a process of its own; OrderMesh's orders/s as a multiple of the peer's.
   --no-peer (or OM_BENCH_PEER=off) leaves it out.
Plus messages published per order (all of them, and per topic: what the order events topic
carries with OM_PUBLIC_EVENTS_ONLY on or off), CPU seconds per 1,000 orders and peak RSS per
process, consumer lag.
The load authenticates as real callers do (tools/loadgen.py: API keys for machines, tokens for
people), so every number above includes that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from libs.events.topics import ALL_TOPICS, ORDER_EVENTS
from libs.runtime.kafka import create_topics
from libs.runtime.settings import RuntimeSettings
from tools import bench_auth, bench_report, bench_sweep, loadgen, profile, progress
from tools.infra import RUN, SERVICES, all_processes, processes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
URLS = {name: f"http://127.0.0.1:{port}" for name, port in SERVICES.items()}
# Prints each phase's line and, on a terminal, draws a bar over the phases (tools/progress.py).
phase = progress.PhaseBar("bench", total=8)
# Every process of each service (OM_SCALE, tools/infra.py): the load is spread over them.
REPLICA_URLS = {name: [f"http://127.0.0.1:{port}" for _, port in processes(name)] for name in SERVICES}


# --- raw ceilings ---------------------------------------------------------------------


async def kafka_ceiling(settings: RuntimeSettings, messages: int, size: int) -> float:
    topic = f"bench.raw.{uuid4().hex[:6]}"
    await create_topics(settings, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await producer.start()
    await consumer.start()
    payload = b"x" * size
    started = time.perf_counter()
    try:

        async def produce() -> None:
            pending = [await producer.send(topic, payload, key=str(n % 64).encode()) for n in range(messages)]
            await asyncio.gather(*pending)

        async def consume() -> None:
            seen = 0
            while seen < messages:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                seen += sum(len(records) for records in batches.values())

        await asyncio.gather(produce(), consume())
    finally:
        await producer.stop()
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.delete_topics([topic])
    await admin.close()
    return messages / (time.perf_counter() - started)


async def postgres_ceiling(settings: RuntimeSettings, seconds: float, connections: int) -> float:
    dsn = settings.dsn("order")
    setup = await asyncpg.connect(dsn)
    table = f"bench_raw_{uuid4().hex[:6]}"
    await setup.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, body text)")
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        conn = await asyncpg.connect(dsn)
        try:
            while time.perf_counter() < deadline:
                await conn.execute(f"INSERT INTO {table} (body) VALUES ($1)", "x" * 200)
                count += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await setup.execute(f"DROP TABLE {table}")
    await setup.close()
    return count / elapsed


# --- process accounting ---------------------------------------------------------------


def process_ids() -> dict[str, list[int]]:
    """Per service (all its processes), Kafka and PostgreSQL: the pids and their children."""
    pids: dict[str, list[int]] = {}
    named = [(service, name) for service in SERVICES for name, _ in processes(service)]
    for group, name in (*named, ("kafka", "kafka"), ("postgresql", "postgresql")):
        path = RUN / f"{name}.pid"
        if path.exists():
            pid = int(path.read_text())
            pids.setdefault(group, []).extend([pid, *_children(pid)])
    return pids


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each process; the first (the parent) also counts its children
    that have exited (PostgreSQL backends come and go)."""
    seconds: dict[int, float] = {}
    for index, pid in enumerate(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if index == 0:
            seconds[pid] += (int(fields[13]) + int(fields[14])) / CLK_TCK
    return seconds


def machine_cpu() -> dict[str, float]:
    """The whole machine's CPU seconds so far (/proc/stat): busy, idle (with I/O wait), and
    stolen by the hypervisor, which says how much a shared VM's figures can be trusted."""
    fields = [int(v) / CLK_TCK for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def machine_cpu_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    spent = {key: after[key] - before[key] for key in before}
    total = sum(spent.values()) or 1.0
    return {f"{key}_pct": round(100 * value / total, 1) for key, value in spent.items()}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots; a process that appeared meanwhile (a new database
    connection's backend) counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        if match:
            total += int(match.group(1))
    return round(total / 1024, 1)


async def published_events() -> int:
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as client:
        for _, _, port in all_processes():
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("ordermesh_outbox_published_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def topic_ends(settings: RuntimeSettings) -> dict[str, int]:
    """Messages on each of the platform's topics so far (the sum of its partitions' end
    offsets): a difference of two readings is what was published between them, per topic."""
    # The partitions from the admin client's metadata: a consumer without subscriptions keeps
    # no metadata for a topic it did not ask about, and would read every topic as empty.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        described = await admin.describe_topics([settings.topic(topic) for topic in ALL_TOPICS])
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        ]
        ends = await probe.end_offsets(partitions) if partitions else {}
    finally:
        await probe.stop()
        await admin.close()
    totals = dict.fromkeys(ALL_TOPICS, 0)
    for topic in ALL_TOPICS:
        totals[topic] = sum(end for tp, end in ends.items() if tp.topic == settings.topic(topic))
    return totals


async def consumer_lag(settings: RuntimeSettings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await probe.start()
    lag: dict[str, int] = {}
    try:
        for group in (
            "order-intake",
            "order-saga",
            "inventory-commands",
            "billing-commands",
            "reporting-events",
        ):
            offsets = await admin.list_consumer_group_offsets(settings.topic(group))
            if not offsets:
                continue
            ends = await probe.end_offsets(list(offsets))
            lag[group] = sum(max(ends[tp] - meta.offset, 0) for tp, meta in offsets.items())
    finally:
        await probe.stop()
        await admin.close()
    return lag


async def reporting_lag_seconds(headers: dict[str, str]) -> float | None:
    """How far behind its sources the reporting service said it was (GET /reports/freshness)."""
    try:
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            response = await client.get(f"{URLS['reporting']}/reports/freshness")
    except httpx.HTTPError:
        return None
    return response.json()["lag_seconds"] if response.status_code == 200 else None


# --- the scenario ---------------------------------------------------------------------


async def to_delivered(settings: RuntimeSettings, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """The whole path: orders at `rate` (an open loop well below the peak, since every order
    now also costs the warehouse's and the carrier's requests), each shipped as soon as its
    shipments exist and reported delivered at once; timed from submission to OrderDelivered."""
    mix = loadgen.Mix(ship=True)
    async with loadgen.LoadGenerator(
        settings, REPLICA_URLS["order"], REPLICA_URLS["inventory"], REPLICA_URLS["billing"], mix
    ) as generator:
        await generator.stock_up(1_000_000)
        await generator.start_listening()
        phase(f"to delivered: {args.delivered_orders} orders at {rate:.0f}/s, shipped at once ...")
        result = await generator.run(args.delivered_orders, rate, args.concurrency, args.drain)
        await generator.wait_delivered(args.drain)
    return loadgen.summarise(result)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    settings = RuntimeSettings()
    phase("measuring raw ceilings ...")
    kafka_raw = await kafka_ceiling(settings, args.raw_messages, 700)
    pg_raw = await postgres_ceiling(settings, args.raw_seconds, 16)
    phase("measuring what authentication costs per request ...")
    auth_cost = await bench_auth.measure(settings, URLS["order"])
    mix = loadgen.Mix()
    pids = process_ids()
    async with loadgen.LoadGenerator(
        settings, REPLICA_URLS["order"], REPLICA_URLS["inventory"], REPLICA_URLS["billing"], mix
    ) as generator:
        phase("stocking warehouses ...")
        await generator.stock_up(1_000_000)
        await generator.start_listening()
        phase(f"warm-up: {args.warmup} orders ...")
        await generator.run(args.warmup, 0, args.concurrency, args.drain)

        await generator.prepare_accounts(args.orders)  # finance's set-up, not the orders' cost
        pids = process_ids()  # after the warm-up: the pools have opened their connections
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        machine_before = machine_cpu()
        generator_cpu_before = time.process_time()
        events_before = await published_events()
        topics_before = await topic_ends(settings)
        phase(f"sustained: {args.orders} orders as fast as absorbed ...")
        # --profile: py-spy samples the busiest services while the peak is measured (it costs
        # them a little CPU, so the run's orders/s reads slightly low).
        profiling = (
            profile.record(
                {name: pids[name][0] for name in ("order", "inventory", "billing") if name in pids},
                args.profile_seconds,
                RESULTS,
            )
            if args.profile
            else []
        )
        sustained = loadgen.summarise(await generator.run(args.orders, 0, args.concurrency, args.drain))
        for sampler in profiling:
            await asyncio.to_thread(sampler.wait)
        cpu_after = {name: cpu_seconds(p) for name, p in process_ids().items()}
        machine = machine_cpu_share(machine_before, machine_cpu())
        generator_cpu = time.process_time() - generator_cpu_before
        events_after = await published_events()
        topics_after = await topic_ends(settings)

        rate70 = max(sustained["orders_per_s"] * 0.7, 1.0)
        at70_orders = max(int(rate70 * args.seconds_at_70), 200)
        phase(f"latency: {at70_orders} orders at {rate70:.0f}/s (70%) ...")
        await generator.prepare_accounts(at70_orders)
        at70_run = await generator.run(at70_orders, rate70, args.concurrency, args.drain)
        at70 = loadgen.summarise(at70_run)
        breakdown = await bench_sweep.breakdown(
            at70_run, URLS["order"], generator.credentials.admin, f"at 70% ({rate70:.0f}/s)"
        )
        sweep: list[dict[str, Any]] = []
        if args.sweep:
            steps = bench_sweep.plan(sustained["orders_per_s"], seconds=args.sweep_seconds, drain=args.drain)
            sweep = await bench_sweep.sweep(generator, steps)
    shipped = await to_delivered(settings, args, rate=max(sustained["orders_per_s"] * 0.3, 1.0))
    lag = await consumer_lag(settings)
    reporting_lag = await reporting_lag_seconds(generator.credentials.admin)
    peer = await asyncio.to_thread(run_peer, args) if args.peer else None
    completed = sum(
        v for k, v in sustained["outcomes"].items() if k in ("confirmed", "cancelled", "rejected")
    )
    per_1000 = {
        name: round(cpu_used(cpu_before[name], cpu_after.get(name, {})) / max(completed, 1) * 1000, 2)
        for name in pids
    }
    # It shares the machine: what the simulated channels and gateway cost is not free either.
    per_1000["load generator"] = round(generator_cpu / max(completed, 1) * 1000, 2)
    return {
        "orders_per_s": sustained["orders_per_s"],
        "p50_ms": sustained["p50_ms"],
        "p95_ms": sustained["p95_ms"],
        "p99_ms": sustained["p99_ms"],
        "rate_at_70pct": round(rate70, 1),
        "p50_ms_at_70pct": at70["p50_ms"],
        "p95_ms_at_70pct": at70["p95_ms"],
        "p99_ms_at_70pct": at70["p99_ms"],
        "prepaid_confirmed_p50_ms_at_70pct": at70["prepaid_confirmed_p50_ms"],
        "prepaid_confirmed_p99_ms_at_70pct": at70["prepaid_confirmed_p99_ms"],
        # Every message the services' outboxes published (events and commands), per order:
        # comparable with earlier runs. Per topic from the topics themselves, so what the order
        # events topic carries reads the same with OM_PUBLIC_EVENTS_ONLY on or off.
        "events_per_order": round((events_after - events_before) / max(completed, 1), 1),
        "published_per_order_by_topic": {
            topic: round((topics_after[topic] - topics_before[topic]) / max(completed, 1), 2)
            for topic in ALL_TOPICS
            if topics_after[topic] > topics_before[topic]
        },
        "public_events_only": settings.public_events_only,
        "cpu_s_per_1000_orders": per_1000,
        # The machine as a whole during the sustained phase: near 100 % busy means the peak is
        # bound by CPU (ours, the broker's, the database's), not by waiting.
        "machine_cpu_sustained": machine,
        "profile": {
            name: profile.summarise((RESULTS / f"profile-{name}.txt").read_text().splitlines()).as_dict()
            for name in ("order", "inventory", "billing")
            if args.profile and (RESULTS / f"profile-{name}.txt").exists()
        },
        "peak_rss_mb": {name: peak_rss_mb(p) for name, p in pids.items()},
        "consumer_lag_at_end": lag,
        "reporting_lag_seconds_at_end": reporting_lag,
        "kafka_raw_msgs_per_s": round(kafka_raw, 1),
        "pg_raw_tx_per_s": round(pg_raw, 1),
        "orders_per_s_vs_pg_raw_tx": round(sustained["orders_per_s"] / pg_raw, 4),
        "sustained": sustained,
        "at_70pct": at70,
        "to_delivered": shipped,
        "auth_cost": auth_cost,
        "machine": {"cpus": os.cpu_count()},
        "breakdown": breakdown,
        "sweep": sweep,
        "peer": peer,
        "orders_per_s_vs_peer": (
            round(sustained["orders_per_s"] / peer["orders_per_s"], 2)
            if peer and peer.get("orders_per_s")
            else None
        ),
    }


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """The peer in a process of its own, as a user would run it: it shares neither the
    bench's interpreter nor its event loop."""
    phase("peer: the same flow on the eventsourcing library ...")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "peer.json"
        command = [sys.executable, "-m", "tools.peer_bench", "--out", str(out), *args.peer_args.split()]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0 or not out.exists():
            return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
        peer: dict[str, Any] = json.loads(out.read_text())
        return peer


def table(result: dict[str, Any]) -> str:
    shipped = result["to_delivered"]
    rows = [
        ("sustained orders/s (to outcome)", result["orders_per_s"]),
        ("p50 / p95 / p99 ms at that rate", f"{result['p50_ms']} / {result['p95_ms']} / {result['p99_ms']}"),
        ("rate at 70% (orders/s)", result["rate_at_70pct"]),
        (
            "p50 / p95 / p99 ms at 70%",
            f"{result['p50_ms_at_70pct']} / {result['p95_ms_at_70pct']} / {result['p99_ms_at_70pct']}",
        ),
        (
            "prepaid paid at once p50 / p99 ms at 70%",
            f"{result['prepaid_confirmed_p50_ms_at_70pct']} / {result['prepaid_confirmed_p99_ms_at_70pct']}",
        ),
        ("messages published per order (events + commands)", result["events_per_order"]),
        (
            f"  of which on {ORDER_EVENTS}",
            result.get("published_per_order_by_topic", {}).get(ORDER_EVENTS, "-"),
        ),
        ("kafka raw produce+consume msgs/s", result["kafka_raw_msgs_per_s"]),
        ("postgres raw insert tx/s", result["pg_raw_tx_per_s"]),
        ("outcomes (sustained)", result["sustained"]["outcomes"]),
        ("to delivered: delivered of orders", f"{shipped['delivered']} of {shipped['orders']}"),
        ("to delivered: delivered/s", shipped["delivered_per_s"]),
        (
            "to delivered: p50 / p99 ms",
            f"{shipped['p50_ms_to_delivered']} / {shipped['p99_ms_to_delivered']}",
        ),
        ("consumer lag at end", result["consumer_lag_at_end"]),
        ("reporting lag at end (s)", result["reporting_lag_seconds_at_end"]),
        ("requests throttled (429, sustained)", result["sustained"]["throttled"]),
        *bench_auth.rows(result["auth_cost"]),
        *bench_report.peer_rows(result),
    ]
    rows += [(f"cpu s / 1000 orders: {k}", v) for k, v in result["cpu_s_per_1000_orders"].items()]
    rows += [("machine CPU while sustained (%)", result["machine_cpu_sustained"])]
    rows += [(f"peak RSS MB: {k}", v) for k, v in result["peak_rss_mb"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds-at-70", type=float, default=20)
    parser.add_argument("--raw-messages", type=int, default=50_000)
    parser.add_argument("--raw-seconds", type=float, default=5)
    parser.add_argument("--drain", type=float, default=180)
    parser.add_argument(
        "--delivered-orders", type=int, default=600, help="orders taken all the way to delivered"
    )
    parser.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("OM_BENCH_SWEEP", "on") != "off",
        help="the open-loop sweep and its chart (default on; OM_BENCH_SWEEP=off)",
    )
    parser.add_argument("--sweep-seconds", type=float, default=12, help="seconds at each offered rate")
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("OM_BENCH_PEER", "on") != "off",
        help="the eventsourcing peer (default on; OM_BENCH_PEER=off)",
    )
    parser.add_argument("--peer-args", default="", help="passed to python -m tools.peer_bench")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the order, inventory and billing processes with py-spy during the sustained"
        " phase (bench/results/profile-<service>.txt, summarised in the JSON; tools/profile.py)",
    )
    parser.add_argument("--profile-seconds", type=float, default=30, help="how long --profile samples")
    try:
        result = asyncio.run(scenario(parser.parse_args()))
    finally:
        phase.done()
    RESULTS.mkdir(parents=True, exist_ok=True)
    written = [RESULTS / "latest.json"]
    if result["sweep"]:
        curve = bench_report.draw_curve(result, RESULTS / bench_report.CURVE_FILE)
        result["latency_curve_png"] = str(curve)
        written.append(curve)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print()
    print(bench_report.breakdown_table(result["breakdown"]))
    if result["sweep"]:
        print()
        print(bench_report.sweep_table(result["sweep"]))
    print(f"\nwritten to {', '.join(str(path) for path in written)}")


if __name__ == "__main__":
    main()
