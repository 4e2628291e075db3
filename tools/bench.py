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
Plus events per order, CPU seconds per 1,000 orders and peak RSS per process, consumer lag.
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from libs.runtime.kafka import create_topics
from libs.runtime.settings import RuntimeSettings
from tools import bench_auth, bench_report, bench_sweep, loadgen
from tools.infra import RUN, SERVICES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
URLS = {name: f"http://127.0.0.1:{port}" for name, port in SERVICES.items()}


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
    pids: dict[str, list[int]] = {}
    for name in (*SERVICES, "kafka", "postgresql"):
        path = RUN / f"{name}.pid"
        if path.exists():
            pid = int(path.read_text())
            pids[name] = [pid, *_children(pid)]
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
        for port in SERVICES.values():
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("ordermesh_outbox_published_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def consumer_lag(settings: RuntimeSettings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await probe.start()
    lag: dict[str, int] = {}
    try:
        for group in ("order-intake", "order-saga", "inventory-commands", "billing-commands"):
            offsets = await admin.list_consumer_group_offsets(settings.topic(group))
            if not offsets:
                continue
            ends = await probe.end_offsets(list(offsets))
            lag[group] = sum(max(ends[tp] - meta.offset, 0) for tp, meta in offsets.items())
    finally:
        await probe.stop()
        await admin.close()
    return lag


# --- the scenario ---------------------------------------------------------------------


async def to_delivered(settings: RuntimeSettings, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """The whole path: orders at `rate` (an open loop well below the peak, since every order
    now also costs the warehouse's and the carrier's requests), each shipped as soon as its
    shipments exist and reported delivered at once; timed from submission to OrderDelivered."""
    mix = loadgen.Mix(ship=True)
    async with loadgen.LoadGenerator(
        settings, URLS["order"], URLS["inventory"], URLS["billing"], mix
    ) as generator:
        await generator.stock_up(1_000_000)
        await generator.start_listening()
        print(
            f"to delivered: {args.delivered_orders} orders at {rate:.0f}/s, shipped at once ...", flush=True
        )
        result = await generator.run(args.delivered_orders, rate, args.concurrency, args.drain)
        await generator.wait_delivered(args.drain)
    return loadgen.summarise(result)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    settings = RuntimeSettings()
    print("measuring raw ceilings ...", flush=True)
    kafka_raw = await kafka_ceiling(settings, args.raw_messages, 700)
    pg_raw = await postgres_ceiling(settings, args.raw_seconds, 16)
    print("measuring what authentication costs per request ...", flush=True)
    auth_cost = await bench_auth.measure(settings, URLS["order"])
    mix = loadgen.Mix()
    pids = process_ids()
    async with loadgen.LoadGenerator(
        settings, URLS["order"], URLS["inventory"], URLS["billing"], mix
    ) as generator:
        print("stocking warehouses ...", flush=True)
        await generator.stock_up(1_000_000)
        await generator.start_listening()
        print(f"warm-up: {args.warmup} orders ...", flush=True)
        await generator.run(args.warmup, 0, args.concurrency, args.drain)

        await generator.prepare_accounts(args.orders)  # finance's set-up, not the orders' cost
        pids = process_ids()  # after the warm-up: the pools have opened their connections
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        generator_cpu_before = time.process_time()
        events_before = await published_events()
        print(f"sustained: {args.orders} orders as fast as absorbed ...", flush=True)
        sustained = loadgen.summarise(await generator.run(args.orders, 0, args.concurrency, args.drain))
        cpu_after = {name: cpu_seconds(p) for name, p in process_ids().items()}
        generator_cpu = time.process_time() - generator_cpu_before
        events_after = await published_events()

        rate70 = max(sustained["orders_per_s"] * 0.7, 1.0)
        at70_orders = max(int(rate70 * args.seconds_at_70), 200)
        print(f"latency: {at70_orders} orders at {rate70:.0f}/s (70%) ...", flush=True)
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
        "events_per_order": round((events_after - events_before) / max(completed, 1), 1),
        "cpu_s_per_1000_orders": per_1000,
        "peak_rss_mb": {name: peak_rss_mb(p) for name, p in pids.items()},
        "consumer_lag_at_end": lag,
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
    print("peer: the same flow on the eventsourcing library ...", flush=True)
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
        ("events published per order", result["events_per_order"]),
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
        ("requests throttled (429, sustained)", result["sustained"]["throttled"]),
        *bench_auth.rows(result["auth_cost"]),
        *bench_report.peer_rows(result),
    ]
    rows += [(f"cpu s / 1000 orders: {k}", v) for k, v in result["cpu_s_per_1000_orders"].items()]
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
    result = asyncio.run(scenario(parser.parse_args()))
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
