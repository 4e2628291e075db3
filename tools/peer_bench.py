"""The peer figure of `make bench`: the order-to-confirmed flow written on the `eventsourcing`
library (tools/peer_system.py), run in this one process against the same PostgreSQL server as
OrderMesh, in a database of its own (`<db_prefix>_peer`, dropped and created anew each run).

1. Stock for every SKU in three warehouses, credit for the on-account customers (not timed).
2. A warm-up, then a closed loop (`--orders`, or `--seconds` if that comes first): `--threads`
   customers each place an order, pay its invoice as soon as it is issued (prepaid), wait
   until it is confirmed, then place the next; orders/s to an outcome, p50/p99 from placing
   to confirmed (those percentiles measure the queue the closed loop builds, as OrderMesh's
   sustained ones do).
3. Open loop at 70% of that rate for `--seconds-at-70` seconds: p50/p99 placing to confirmed.

The mix is OrderMesh's load generator's in spirit: 300 SKUs of skewed popularity plus 5 hot
ones taking 30% of the orders, one or two lines, 30% on account (credit granted ahead), the
rest prepaid and paid at once. The "channel" learns of each order event as the library hands
it to its followers (after the commit), as OrderMesh's load generator learns of it from Kafka.

    python -m tools.peer_bench                      # the figure make bench prints
    python -m tools.peer_bench --quick              # a few seconds, to see that it works
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.system import MultiThreadedRunner, Runner, SingleThreadedRunner
from psycopg import sql

from libs.runtime.settings import RuntimeSettings
from tools.loadgen import percentile
from tools.peer_system import SYSTEM, WAREHOUSES, Billing, Inventory, Order, Orders

OUTCOMES: dict[type[Any], str] = {
    Order.Confirmed: "confirmed",
    Order.Cancelled: "cancelled",
    Order.Rejected: "rejected",
    Order.Held: "held",
}
CREDIT_LIMIT = Decimal("100000.00")
RUNNERS: dict[str, type[Runner[Any]]] = {"multi": MultiThreadedRunner, "single": SingleThreadedRunner}


@dataclass
class Mix:
    skus: int = 300
    hot_skus: int = 5
    hot_share: float = 0.3
    on_account_share: float = 0.3
    seed: int = 11


@dataclass
class Tracked:
    """One order as its channel sees it: when it was placed, paid for, and its outcome."""

    submitted: float
    invoiced: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    amount_due: Decimal | None = None
    outcome: str | None = None
    finished: float | None = None

    @property
    def latency_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.submitted) * 1000


class Channel:
    """Places orders on the peer as customers would, and pays each prepaid one at once."""

    def __init__(self, runner: Runner[Any], mix: Mix, run_tag: str) -> None:
        self.orders = runner.get(Orders)
        self.billing = runner.get(Billing)
        self.inventory = runner.get(Inventory)
        self.mix = mix
        self.random = random.Random(mix.seed)  # noqa: S311 - a seeded order mix, not a secret
        self.random_lock = threading.Lock()
        self.skus = [f"PEER-{run_tag}-{n:04d}" for n in range(mix.skus)]
        self.weights = [1 / (rank + 1) for rank in range(mix.skus)]
        self.accounts: list[str] = []
        self.tracked: dict[UUID, Tracked] = {}
        self.tracked_lock = threading.Lock()
        self.orders.listeners.append(self._on_order_event)

    def stock_up(self, units: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda pair: self.inventory.receive_stock(pair[0], pair[1], units),
                    [(sku, code) for sku in self.skus for code, _ in WAREHOUSES],
                )
            )

    def grant_credit(self, orders: int) -> None:
        """Finance grants credit ahead of the orders, as in OrderMesh's bench (not timed)."""
        accounts = [
            f"PEER-ACCT-{uuid4().hex[:10]}" for _ in range(int(orders * self.mix.on_account_share * 1.2) + 10)
        ]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda account: self.billing.grant_credit(account, CREDIT_LIMIT), accounts))
        self.accounts += accounts

    def _slot(self, order_id: UUID, submitted: float = 0.0) -> Tracked:
        with self.tracked_lock:
            slot = self.tracked.get(order_id)
            if slot is None:
                slot = self.tracked[order_id] = Tracked(submitted)
            return slot

    def _on_order_event(self, domain_event: DomainEventProtocol[UUID]) -> None:
        now = time.perf_counter()
        if isinstance(domain_event, Order.AwaitingPayment):
            slot = self._slot(domain_event.originator_id)
            slot.amount_due = domain_event.amount_due
            slot.invoiced.set()
            return
        outcome = OUTCOMES.get(type(domain_event)) or (
            "held" if isinstance(domain_event, Order.Held) else None
        )
        if outcome is not None:
            slot = self._slot(domain_event.originator_id)
            if slot.outcome is None:
                slot.outcome, slot.finished = outcome, now
                slot.done.set()

    def _order(self) -> dict[str, Any]:
        with self.random_lock:
            draw = self.random
            if draw.random() < self.mix.hot_share:
                sku = draw.choice(self.skus[: self.mix.hot_skus])
            else:
                sku = draw.choices(self.skus, self.weights)[0]
            lines = [{"sku": sku, "quantity": draw.randint(1, 3), "unit_price": "19.90"}]
            if draw.random() < 0.3:
                lines.append(
                    {"sku": draw.choices(self.skus, self.weights)[0], "quantity": 1, "unit_price": "4.50"}
                )
            on_account = draw.random() < self.mix.on_account_share and bool(self.accounts)
            customer = self.accounts.pop() if on_account else f"guest-{draw.randint(1, 5000)}"
            region = draw.choice(WAREHOUSES)[1]
        return {
            "channel": "b2b" if on_account else "web",
            "customer_id": customer,
            "region": region,
            "lines": lines,
            "payment_terms": "on_account" if on_account else "prepaid",
            "shipping_method": "pickup",
        }

    def order_to_outcome(self, timeout: float) -> Tracked:
        """One customer's order: place it, pay the invoice once issued, wait for the outcome."""
        body = self._order()
        submitted = time.perf_counter()
        order_id = self.orders.place_order(**body)
        slot = self._slot(order_id, submitted)
        slot.submitted = submitted
        if body["payment_terms"] == "prepaid":
            # An order refused at placing is done without an invoice: either event ends the wait.
            deadline = time.perf_counter() + timeout
            while not slot.invoiced.wait(0.05) and not slot.done.is_set():
                if time.perf_counter() > deadline:
                    return slot
            if slot.invoiced.is_set() and slot.amount_due is not None:
                self.billing.record_payment(order_id, slot.amount_due, f"peer-{order_id}")
        slot.done.wait(timeout)
        return slot


@dataclass
class RunResult:
    tracked: list[Tracked]
    started: float
    ended: float

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for slot in self.tracked:
            key = slot.outcome or "pending"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        confirmed = sorted(s.latency_ms for s in self.tracked if s.outcome == "confirmed" and s.latency_ms)
        finished = [s.finished for s in self.tracked if s.finished is not None]
        elapsed = (max(finished) - self.started) if finished else 0.0
        return {
            "orders": len(self.tracked),
            "outcomes": self.outcomes(),
            "orders_per_s": round(len(finished) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": _round(percentile(confirmed, 0.50)),
            "p99_ms": _round(percentile(confirmed, 0.99)),
        }


def closed_loop(
    channel: Channel, orders: int, threads: int, timeout: float, seconds: float | None = None
) -> RunResult:
    """`threads` customers, each placing its next order once the last is done, until `orders`
    were placed or `seconds` have passed (a slow peer still ends in bounded time)."""
    remaining = iter(range(orders))
    remaining_lock = threading.Lock()
    tracked: list[Tracked] = []
    stop_at = time.perf_counter() + seconds if seconds else None

    def customer() -> None:
        while True:
            with remaining_lock:
                if next(remaining, None) is None or (stop_at and time.perf_counter() > stop_at):
                    return
            tracked.append(channel.order_to_outcome(timeout))

    started = time.perf_counter()
    workers = [threading.Thread(target=customer, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return RunResult(tracked, started, time.perf_counter())


def open_loop(channel: Channel, rate: float, seconds: float, timeout: float) -> RunResult:
    """Orders at `rate` per second for `seconds`, each placed on schedule whatever the others do."""
    count = max(int(rate * seconds), 1)
    started = time.perf_counter()
    # Enough customers that none waits for a free one unless the peer falls behind by seconds.
    with ThreadPoolExecutor(max_workers=min(max(int(rate * 2), 8), 256)) as pool:
        futures = []
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(channel.order_to_outcome, timeout))
        tracked = [future.result() for future in futures]
    return RunResult(tracked, started, time.perf_counter())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- its database ---------------------------------------------------------------------


def _connect(settings: RuntimeSettings, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=settings.pg_host,
        port=settings.pg_port,
        user=settings.pg_user,
        password=settings.pg_password,
        dbname=dbname,
        autocommit=True,
    )


@contextmanager
def fresh_database(settings: RuntimeSettings, keep: bool = False) -> Iterator[str]:
    """The peer's own database, created empty; dropped afterwards unless `keep`."""
    name = settings.database_name("peer")
    with _connect(settings, "postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        if not keep:
            with _connect(settings, "postgres") as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def durability(settings: RuntimeSettings, dbname: str) -> dict[str, str]:
    """What the server promises the peer's commits: the same settings OrderMesh runs under."""
    with _connect(settings, dbname) as conn:
        return {
            name: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }


def library_env(settings: RuntimeSettings, dbname: str, pool_size: int) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": str(settings.pg_port),
        "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        # The library's aggregate cache (stock items and accounts are read by every order).
        "AGGREGATE_CACHE_MAXSIZE": "100000",
    }


@contextmanager
def running_peer(
    settings: RuntimeSettings, runner_kind: str, pool_size: int, keep: bool = False
) -> Iterator[tuple[Runner[Any], str]]:
    with fresh_database(settings, keep) as dbname:
        runner = RUNNERS[runner_kind](SYSTEM, env=library_env(settings, dbname, pool_size))
        runner.start()
        try:
            yield runner, dbname
        finally:
            runner.stop()


def measure(settings: RuntimeSettings, args: argparse.Namespace) -> dict[str, Any]:
    with running_peer(settings, args.runner, args.threads, keep=args.keep) as (runner, dbname):
        channel = Channel(runner, Mix(skus=args.skus), uuid4().hex[:6])
        channel.stock_up(1_000_000)
        channel.grant_credit(args.warmup + args.orders)
        closed_loop(channel, args.warmup, args.threads, args.timeout, args.seconds)
        peak = closed_loop(channel, args.orders, args.threads, args.timeout, args.seconds).summary()
        rate70 = max(peak["orders_per_s"] * 0.7, 1.0)
        channel.grant_credit(int(rate70 * args.seconds_at_70))
        at70 = open_loop(channel, rate70, args.seconds_at_70, args.timeout).summary()
        return {
            **peak,
            "rate_at_70pct": round(rate70, 1),
            "at_70pct": at70,
            "threads": args.threads,
            "runner": args.runner,
            "library": f"eventsourcing {version('eventsourcing')}",
            "database": dbname,
            "durability": durability(settings, dbname),
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=3000, help="orders in the closed loop, at most")
    parser.add_argument(
        "--seconds", type=float, default=30, help="the closed loop (and the warm-up) at most this long"
    )
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--threads", type=int, default=16, help="customers in flight (closed loop)")
    parser.add_argument("--seconds-at-70", type=float, default=15)
    parser.add_argument("--skus", type=int, default=Mix.skus, help="SKUs in the mix (each in 3 warehouses)")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="multi")
    parser.add_argument("--timeout", type=float, default=60, help="seconds an order may take")
    parser.add_argument("--keep", action="store_true", help="keep the peer's database afterwards")
    parser.add_argument("--quick", action="store_true", help="a few hundred orders: to see it work")


def quick(args: argparse.Namespace) -> argparse.Namespace:
    if args.quick:
        args.orders, args.warmup, args.seconds_at_70 = 200, 20, 2.0
    return args


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    args = quick(parser.parse_args())
    result = measure(RuntimeSettings(), args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
