"""Load generator: drives the real platform the way sales channels and a payment gateway do.

It submits orders over HTTP and over the intake topic with a realistic mix (many SKUs with a
skewed popularity, a few hot ones, several warehouses, prepaid and on-account customers),
pays each prepaid invoice as soon as it is issued (a configurable share fails or never pays;
a customer whose card is declined pays again at once some of the time, else leaves the order
to its payment deadline),
and records for each order the time from submission to its outcome (confirmed, cancelled,
rejected), read from the order events topic: its OrderStatusChanged messages, or with
OM_PUBLIC_EVENTS_ONLY=false the order's own events (OrderConfirmed, ...), which are then public.

It authenticates as real callers do (Credentials): at the start, as the operator, it issues
API keys through the order service's admin endpoint -- one per sales channel, one for the
payment gateway, one for the carrier, one for the ERP booking goods receipts -- and waits until
the services that will see each key know it; people carry development tokens (an admin sets up
the warehouses, warehouse clerks scoped to their warehouse pick, pack and ship). The keys are
revoked when the run ends. A caller over its rate limit (429) waits as told and asks again;
`throttled` counts those answers, so a run that was slowed by its own limits says so.

    python -m tools.loadgen --orders 2000 --rate 0          # as fast as it is absorbed
    python -m tools.loadgen --orders 1000 --rate 300        # open loop at 300 orders/s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.events import encode, make_envelope
from libs.events.order import SubmitOrder
from libs.events.topics import (
    BILLING_EVENTS,
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    ORDER_INTAKE,
    PRODUCTION_EVENTS,
)
from libs.runtime.settings import RuntimeSettings
from libs.security import dev_issuer
from tools import apikeys

OUTCOMES = {"OrderConfirmed": "confirmed", "OrderCancelled": "cancelled", "OrderRejected": "rejected"}
# With shipping on: the order events that mean its goods reached the customer.
ARRIVALS = ("OrderDelivered", "OrderCompleted")
# The public contract says both with one message type, by the status it reaches. One change
# may cover several steps (one transaction): a status past confirmed was confirmed on the way.
STATUS_CHANGED = "OrderStatusChanged"
OUTCOME_OF_STATUS = {
    "confirmed": "confirmed",
    "partially_shipped": "confirmed",
    "shipped": "confirmed",
    "delivered": "confirmed",
    "completed": "confirmed",
    "cancelled": "cancelled",
    "rejected": "rejected",
}
ARRIVED_STATUSES = frozenset({"delivered", "completed"})
DELIVERY_ADDRESS = {"line1": "1 Load St", "city": "Benchville", "postal_code": "12345", "country": "DE"}
WAREHOUSES = (("LG-NORTH", "north"), ("LG-SOUTH", "south"), ("LG-WEST", "west"))
# On-account orders come from a channel offering the terms (under the default
# OM_ORDER_ON_ACCOUNT_CHANNELS), each for a B2B account finance granted credit to just before.
ACCOUNT_CHANNEL = "b2b"
ACCOUNT_CREDIT_LIMIT = "100000.00"
# The channels the mix submits for; a channel met later gets its key when first used.
CHANNELS = ("web", "marketplace", ACCOUNT_CHANNEL)
# A person may send OM_AUTH_USER_RATE_LIMIT_PER_SECOND requests (50) per second per replica:
# shipping a few hundred orders a second takes a team of clerks in each warehouse.
CLERKS_PER_WAREHOUSE = 4
TOKEN_LIFETIME_SECONDS = 12 * 3600
# Production (Mix.manufactured_skus): the shop floor's people, and how long a production order's
# worker keeps asking when its steps are refused (4xx) before it gives up on it.
PRODUCTION_WORKERS = 2
PRODUCTION_REFUSALS_TOLERATED = 20


@dataclass
class Mix:
    skus: int = 300
    hot_skus: int = 5
    hot_share: float = 0.3
    http_share: float = 0.5
    on_account_share: float = 0.3
    payment_fail_share: float = 0.0
    never_pay_share: float = 0.0
    # A declined card leaves the order awaiting payment (OM_ORDER_MAX_PAYMENT_ATTEMPTS): this
    # share of those customers pays again at once, and succeeds; the others walk away, and the
    # payment deadline cancels the order.
    retry_after_decline_share: float = 0.5
    # Ship what is confirmed: a warehouse that picks, packs and dispatches every shipment (or
    # hands pickups over) and a carrier that reports each parcel delivered. Half the orders
    # then ship standard to an address, half are picked up.
    ship: bool = False
    clerks_per_warehouse: int = CLERKS_PER_WAREHOUSE
    # Make-to-order (needs the production service's URL): this many manufactured SKUs, each with
    # a BOM (parts of its own and a hot SKU, two operations on two work centres, the first
    # inspected) and `manufactured_stock` units per warehouse, so that most of the orders that
    # ask for one (`manufactured_share` of them, as an extra line) wait for a production order.
    # A production worker drives each such order's tasks and quality checks: the first check of
    # an inspected operation fails a unit for `rework_share` of the tasks, scraps one for
    # `scrap_share` of them (the shortfall gets a production order of its own). 0: off, and the
    # orders are exactly those of a run without production (make bench).
    manufactured_skus: int = 0
    manufactured_share: float = 0.1
    manufactured_stock: int = 1
    rework_share: float = 0.3
    scrap_share: float = 0.1
    seed: int = 7


@dataclass
class Tracked:
    submitted: float
    prepaid: bool
    outcome: str | None = None
    finished: float | None = None
    delivered: float | None = None
    # False: an order the order desk made (a split's or merge's), not one the run submitted:
    # its outcome does not count towards the run's open submissions.
    counted: bool = True

    @property
    def latency_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.submitted) * 1000

    @property
    def delivery_ms(self) -> float | None:
        return None if self.delivered is None else (self.delivered - self.submitted) * 1000


@dataclass
class RunResult:
    orders: dict[str, Tracked] = field(default_factory=dict)
    started: float = 0.0
    submitted_until: float = 0.0
    errors: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers: a caller over its rate limit, asked again after Retry-After
    declined: int = 0  # prepaid orders whose first payment was declined
    paid_after_decline: int = 0  # of those, the customers who paid again (the rest: the deadline)

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tracked in self.orders.values():
            key = tracked.outcome or "pending"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def latencies(self, prepaid_confirmed_only: bool = False) -> list[float]:
        return sorted(
            t.latency_ms
            for t in self.orders.values()
            if t.latency_ms is not None
            and (not prepaid_confirmed_only or (t.prepaid and t.outcome == "confirmed"))
        )

    def throughput(self) -> float:
        done = [t.finished for t in self.orders.values() if t.finished is not None]
        if not done:
            return 0.0
        return len(done) / (max(done) - self.started)

    def deliveries(self) -> list[float]:
        return sorted(t.delivery_ms for t in self.orders.values() if t.delivery_ms is not None)

    def delivered_per_s(self) -> float:
        done = [t.delivered for t in self.orders.values() if t.delivered is not None]
        return len(done) / (max(done) - self.started) if done else 0.0


@dataclass
class ProductionWork:
    """What the simulated production workers did, over the generator's life (not per run):
    production orders outlive the run whose order caused them."""

    seen: int = 0  # production orders of the run's manufactured SKUs
    completed: int = 0
    cancelled: int = 0
    given_up: int = 0  # refused more than PRODUCTION_REFUSALS_TOLERATED times
    steps: int = 0  # assign, start, progress, complete, quality checks accepted
    reworked: int = 0  # quality checks that sent a unit back through its operation
    scrapped: int = 0  # quality checks that wrote a unit off
    refused: int = 0  # 4xx answers (a step the state had moved past)
    retried: int = 0  # a replica away or failing (5xx): asked again

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def next_production_step(
    order: dict[str, Any], rework_share: float, scrap_share: float
) -> tuple[str, dict[str, Any]] | None:
    """What a worker does next for a production order, read from its state alone (GET
    /production-orders/{id}), so asking again after a lost answer never does a step twice: the
    first unfinished operation is assigned, started, brought up to what the one before handed
    on, checked when inspected (the first check of a task fails one unit for a share of the
    tasks, fixed by the task id: rework or scrap), and completed. None: nothing to do now."""
    if order["status"] not in ("released", "in_progress"):
        return None
    quantity = int(order["quantity"])
    handed_on, scrapped_before = quantity, 0
    for op in order["operations"]:
        done, passed, scrapped = int(op["quantity_done"]), int(op["passed"]), int(op["scrapped"])
        unchecked = done - passed - scrapped
        if op["status"] != "done" or (op["inspection"] and unchecked):
            task = f"/tasks/{op['task_id']}"
            if op["assignee"] is None:
                return f"{task}/assign", {"assignee": "load-production-floor"}
            if op["status"] == "pending":
                return f"{task}/start", {}
            if op["status"] == "in_progress" and done < handed_on:
                return f"{task}/progress", {"quantity_done": handed_on}
            if op["inspection"] and unchecked:
                return _quality_check(order, op, unchecked, rework_share, scrap_share)
            if op["status"] == "in_progress" and done == quantity - scrapped_before:
                return f"{task}/complete", {}
            return None
        handed_on = passed if op["inspection"] else done
        scrapped_before += scrapped
    return None


def _quality_check(
    order: dict[str, Any], op: dict[str, Any], unchecked: int, rework_share: float, scrap_share: float
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"operation": op["operation"], "passed": unchecked, "failed": 0, "note": "ok"}
    checked_before = any(c["task_id"] == op["task_id"] for c in order["quality_checks"])
    roll = random.Random(op["task_id"]).random()
    if not checked_before and roll < rework_share + scrap_share:
        disposition = "rework" if roll < rework_share else "scrap"
        body.update(
            passed=unchecked - 1, failed=1, disposition=disposition, note=f"load: one unit to {disposition}"
        )
    return f"/production-orders/{order['production_order_id']}/quality-checks", body


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[min(int(q * 1000) - 1, 998)]


Urls = str | Sequence[str]  # one service's base URL, or one per replica
Headers = dict[str, str]


class Credentials:
    """Who the load acts as. Machines: an API key per sales channel (submissions), the payment
    gateway's (payments:record, billing:read), the carrier's (carrier:report) and the ERP's that
    books goods receipts (stock:receive). People: development tokens -- an admin for setting up
    warehouses, clerks of the warehouse role scoped to their warehouse for the shipping steps,
    finance people granting each on-account customer's credit."""

    def __init__(self, urls: dict[str, list[str]], run_tag: str, clerks_per_warehouse: int) -> None:
        self.urls = urls
        self.run_tag = run_tag
        # The operator who issues (and at the end revokes) the keys.
        self.admin_api = apikeys.admin_headers(TOKEN_LIFETIME_SECONDS)
        self.channels: dict[str, Headers] = {}
        self.gateway: Headers = {}
        self.carrier: Headers = {}
        self.goods_in: Headers = {}
        self.key_ids: list[str] = []
        self._channel_locks: dict[str, asyncio.Lock] = {}
        self.admin = self._person("admin", "load-admin")
        self.clerks = {
            code: [
                self._person("warehouse", f"load-clerk-{code}-{n}", [code])
                for n in range(clerks_per_warehouse)
            ]
            for code, _ in WAREHOUSES
        }
        self._next_clerk = dict.fromkeys(self.clerks, 0)
        # Finance grants each on-account customer's credit: several people, like the clerks.
        self.finance = [self._person("finance", f"load-finance-{n}") for n in range(clerks_per_warehouse)]
        self._next_finance = 0

    @staticmethod
    def _person(role: str, subject: str, warehouses: list[str] | None = None) -> Headers:
        token = dev_issuer.mint(
            subject, [role], warehouses=warehouses, lifetime_seconds=TOKEN_LIFETIME_SECONDS
        )
        return {"Authorization": f"Bearer {token}"}

    def person(self, role: str) -> Headers:
        """A development token of `role` (finance granting credit, order desk approving, ...)."""
        return self._person(role, f"load-{role}")

    def finance_person(self) -> Headers:
        self._next_finance += 1
        return self.finance[self._next_finance % len(self.finance)]

    def clerk(self, warehouse: str) -> Headers:
        """The next clerk of the warehouse, in turn (each has a rate limit of their own)."""
        clerks = self.clerks.get(warehouse)
        if clerks is None:
            clerks = self.clerks[warehouse] = [
                self._person("warehouse", f"load-clerk-{warehouse}", [warehouse])
            ]
            self._next_clerk[warehouse] = 0
        self._next_clerk[warehouse] += 1
        return clerks[self._next_clerk[warehouse] % len(clerks)]

    async def issue_keys(self) -> None:
        machines = [
            ("gateway", "payment gateway", ["payments:record", "billing:read"], "billing"),
            ("carrier", "carrier", ["carrier:report"], "inventory"),
            ("goods_in", "ERP goods receipts", ["stock:receive"], "inventory"),
        ]
        issued = await asyncio.gather(
            *(
                self._issue(f"load {self.run_tag} {name}", scopes, service)
                for _, name, scopes, service in machines
            ),
            *(self._issue(f"load {self.run_tag} channel {c}", None, "order", c) for c in CHANNELS),
        )
        for (attribute, *_), headers in zip(machines, issued, strict=False):
            setattr(self, attribute, headers)
        self.channels.update(zip(CHANNELS, issued[len(machines) :], strict=True))

    async def channel(self, channel: str) -> Headers:
        found = self.channels.get(channel)
        if found is not None:
            return found
        async with self._channel_locks.setdefault(channel, asyncio.Lock()):
            if channel not in self.channels:
                self.channels[channel] = await self._issue(
                    f"load {self.run_tag} channel {channel}", None, "order", channel
                )
            return self.channels[channel]

    async def _issue(
        self, name: str, scopes: list[str] | None, service: str, channel: str | None = None
    ) -> Headers:
        issued = await self._admin(
            lambda url: apikeys.issue(url, name, channel=channel, scopes=scopes, headers=self.admin_api)
        )
        self.key_ids.append(issued["key_id"])
        await apikeys.wait_accepted(issued["api_key"], {service: self.urls[service]})
        return apikeys.key_headers(issued["api_key"])

    async def _admin(self, call: Any) -> Any:
        """The admin call on the first order replica that answers."""
        failure: Exception | None = None
        for url in self.urls["order"]:
            try:
                return await call(url)
            except Exception as error:  # a replica away (chaos): ask the next
                failure = error
        assert failure is not None
        raise failure

    async def revoke_keys(self) -> None:
        for key_id in self.key_ids:
            await self._admin(
                lambda url, key_id=key_id: apikeys.revoke(
                    url, key_id, "load run over", headers=self.admin_api
                )
            )
        self.key_ids.clear()


class LoadGenerator:
    def __init__(
        self,
        settings: RuntimeSettings,
        order_url: Urls,
        inventory_url: Urls,
        billing_url: Urls,
        mix: Mix,
        production_url: Urls | None = None,
    ) -> None:
        self.settings = settings
        self.mix = mix
        self.random = random.Random(mix.seed)
        self.run_tag = uuid4().hex[:6]
        self.skus = [f"LG-{self.run_tag}-{n:04d}" for n in range(mix.skus)]
        # Zipf-like popularity: a long tail of slow movers, plus a few very hot SKUs.
        self.weights = [1 / (rank + 1) for rank in range(mix.skus)]
        # Requests go round the replicas, so a retry after a failure asks another one.
        given = {"order": order_url, "inventory": inventory_url, "billing": billing_url}
        if production_url is not None:
            given["production"] = production_url
        self.urls = {
            service: [urls] if isinstance(urls, str) else list(urls) for service, urls in given.items()
        }
        self._turn = dict.fromkeys(self.urls, 0)
        # aiohttp, not httpx: a profile showed httpx's pool scanning every connection on each
        # request, which pegged the load generator's core before the platform's.
        self.http: aiohttp.ClientSession | None = None
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2)
        self.credentials = Credentials(self.urls, self.run_tag, mix.clerks_per_warehouse)
        self.result = RunResult()
        self._listeners: list[asyncio.Task[None]] = []
        self._payments: set[asyncio.Task[None]] = set()
        self._shipping: set[asyncio.Task[None]] = set()
        self._delivered = asyncio.Condition()
        self._all_done = asyncio.Event()
        self._outcome_seen = asyncio.Event()
        self._open = 0  # submitted orders without an outcome yet
        self._scarce_sku: str | None = None
        self._expected = 0
        self._run_over = True
        self._submitted = asyncio.Condition()
        # Accounts finance granted credit to ahead of the orders (prepare_accounts): a business
        # grants an account once, not before each of its orders.
        self._granted_accounts: list[str] = []
        # Production (Mix.manufactured_skus): the manufactured SKUs and the parts only they use.
        self.manufactured = [f"LG-{self.run_tag}-MADE-{n}" for n in range(mix.manufactured_skus)]
        self.parts = [f"LG-{self.run_tag}-PART-{n}" for n in range(mix.manufactured_skus)]
        self.production = ProductionWork()
        self._producing: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, asyncio.Event] = {}  # order -> set when its shipments may go
        self._production_workers = [
            Credentials._person("production", f"load-production-{n}") for n in range(PRODUCTION_WORKERS)
        ]

    async def prepare_accounts(self, orders: int) -> None:
        """Grants credit to enough accounts for the on-account share of `orders` before they
        are placed, so that a measured run times and costs the orders, not finance's set-up."""
        wanted = int(orders * self.mix.on_account_share * 1.2) + 10
        accounts = [f"LG-{self.run_tag}-ACCT-{uuid4().hex[:10]}" for _ in range(wanted)]
        gate = asyncio.Semaphore(16)

        async def grant(account: str) -> None:
            async with gate:
                await self._grant_credit(account)

        await asyncio.gather(*(grant(a) for a in accounts))
        self._granted_accounts += accounts

    async def __aenter__(self) -> LoadGenerator:
        await self.credentials.issue_keys()
        await self.producer.start()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=20)
        )
        return self

    async def post(
        self,
        service: str,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        replica: int | None = None,
    ) -> tuple[int, str]:
        """POST JSON to a service (the next replica in turn, or the one named by its index);
        (status, body text). Over the caller's rate limit (429), waits Retry-After and asks again."""
        return await self.send("POST", service, path, body, headers, replica=replica)

    async def send(
        self,
        method: str,
        service: str,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        replica: int | None = None,
    ) -> tuple[int, str]:
        """As post, with another method (PUT)."""
        assert self.http is not None, "use the load generator as an async context manager"
        replicas = self.urls[service]
        while True:
            self._turn[service] += 1
            url = replicas[(self._turn[service] if replica is None else replica) % len(replicas)]
            async with self.http.request(method, url + path, json=body, headers=headers) as response:
                if response.status != 429:
                    return response.status, await response.text()
                self.result.throttled += 1
                wait = float(response.headers.get("Retry-After") or 1)
            await asyncio.sleep(wait)

    async def __aexit__(self, *_: object) -> None:
        # Payments and shipping steps still under way (for orders a run gave up waiting on)
        # end with the generator, before its HTTP session closes under them.
        working = [*self._listeners, *self._payments, *self._shipping, *self._producing.values()]
        for task in working:
            task.cancel()
        await asyncio.gather(*working, return_exceptions=True)
        with contextlib.suppress(Exception):  # the platform gone already: the keys go with it
            await asyncio.wait_for(self.credentials.revoke_keys(), 30)
        await self.producer.stop()
        if self.http is not None:
            await self.http.close()

    async def stock_up(self, units_per_sku: int) -> None:
        for code, region in WAREHOUSES:
            status, text = await self.post(
                "inventory",
                "/warehouses",
                {"code": code, "name": code, "region": region},
                self.credentials.admin,
            )
            assert status in (200, 201), text
        semaphore = asyncio.Semaphore(20)

        async def receive(sku: str, warehouse: str) -> None:
            async with semaphore:
                await self.receive(sku, warehouse, units_per_sku)

        await asyncio.gather(*(receive(sku, code) for sku in self.skus for code, _ in WAREHOUSES))
        if self.manufactured:
            await self._set_up_production(units_per_sku)

    async def receive(self, sku: str, warehouse: str, quantity: int, replica: int | None = None) -> None:
        """Book a receipt, asking again (same receipt id, so booked once) until inventory answers."""
        body = {"sku": sku, "warehouse": warehouse, "quantity": quantity, "receipt_id": f"lg-{uuid4()}"}
        for attempt in range(60):
            try:
                status, text = await self.post(
                    "inventory", "/stock/receipts", body, self.credentials.goods_in, replica=replica
                )
                if status < 500:
                    assert status in (200, 201), text
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
        raise RuntimeError(f"inventory did not book the receipt {body}")

    def scarce_sku(self, name: str) -> str:
        """A SKU of this run that no order asks for unless told (run(..., scarce_sku=...))."""
        return f"LG-{self.run_tag}-{name}"

    # -- listening ----------------------------------------------------------------------

    async def start_listening(self) -> None:
        listening = [
            (ORDER_EVENTS, self._on_order_event, {*OUTCOMES, *ARRIVALS, STATUS_CHANGED}),
            (BILLING_EVENTS, self._on_billing_event, {"InvoiceIssued"}),
        ]
        if self.mix.ship:
            listening.append((INVENTORY_EVENTS, self._on_inventory_event, {"ShipmentCreated"}))
        if self.manufactured:
            listening.append((PRODUCTION_EVENTS, self._on_production_event, {"ProductionOrderCreated"}))
        for topic, handler, wanted in listening:
            consumer = AIOKafkaConsumer(
                self.settings.topic(topic),
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="latest",
                group_id=None,
                enable_auto_commit=False,
            )
            await consumer.start()
            await consumer.seek_to_end()
            # The first fetch positions the consumer at the end before any order is sent.
            await consumer.getmany(timeout_ms=100)
            self._listeners.append(asyncio.create_task(self._listen(consumer, handler, wanted)))

    async def _listen(self, consumer: AIOKafkaConsumer, handler: Any, wanted: set[str]) -> None:
        wanted_headers = {name.encode() for name in wanted}
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        # Most events are not outcomes: skip them by header, without parsing.
                        event_type = dict(record.headers or ()).get("event_type")
                        if event_type is None or event_type in wanted_headers:
                            try:
                                envelope = json.loads(record.value)
                                await handler(envelope, now)
                            except (ValueError, KeyError, TypeError):
                                continue  # not an envelope (the chaos suite's poison, say)
        finally:
            await consumer.stop()

    async def _on_order_event(self, envelope: dict[str, Any], now: float) -> None:
        tracked = self.result.orders.get(envelope["aggregate_id"])
        event_type = envelope["event_type"]
        if event_type == STATUS_CHANGED:
            status = envelope["payload"]["status"]
            arrived, outcome = status in ARRIVED_STATUSES, OUTCOME_OF_STATUS.get(status)
        else:
            arrived, outcome = event_type in ARRIVALS, OUTCOMES.get(event_type)
        if arrived and tracked is not None and tracked.delivered is None:
            tracked.delivered = now
            async with self._delivered:
                self._delivered.notify_all()
        if outcome and tracked and tracked.outcome is None:
            tracked.outcome, tracked.finished = outcome, now
            if not tracked.counted:
                return
            self._open -= 1
            self._outcome_seen.set()
            if self._open == 0 and self._expected_reached():
                self._all_done.set()

    def _expected_reached(self) -> bool:
        return len(self.result.orders) >= self._expected

    async def _on_billing_event(self, envelope: dict[str, Any], now: float) -> None:
        if envelope["event_type"] != "InvoiceIssued" or envelope["payload"]["payment_terms"] != "prepaid":
            return
        order_id = envelope["payload"]["order_id"]
        if order_id not in self.result.orders:
            return
        roll = self.random.random()
        if roll < self.mix.never_pay_share:
            return
        declined = roll < self.mix.never_pay_share + self.mix.payment_fail_share
        retries = declined and self.random.random() < self.mix.retry_after_decline_share
        task = asyncio.create_task(
            self._customer_pays(order_id, envelope["payload"]["total"], declined, retries)
        )
        self._payments.add(task)
        task.add_done_callback(self._payments.discard)

    async def _customer_pays(self, order_id: str, amount: str, declined: bool, retries: bool) -> None:
        if not declined:
            await self._pay(order_id, amount, "succeeded")
            return
        self.result.declined += 1
        await self._pay(order_id, amount, "failed")
        if retries:  # the customer tries again (another card), and it goes through
            self.result.paid_after_decline += 1
            await self._pay(order_id, amount, "succeeded", attempt=2)

    async def _pay(self, order_id: str, amount: str, outcome: str, attempt: int = 1) -> None:
        """Like a gateway: call back until billing answers, with the same reference (one per
        attempt)."""
        body = {
            "order_id": order_id,
            "amount": amount,
            "method": "card",
            "reference": f"lg-{order_id}" + (f"-{attempt}" if attempt > 1 else ""),
            "outcome": outcome,
        }
        for _ in range(60):
            try:
                status, _ = await self.post("billing", "/payments", body, self.credentials.gateway)
                if status < 500:
                    if status >= 400:
                        self.result.errors += 1
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        self.result.errors += 1

    # -- shipping (Mix.ship) ------------------------------------------------------------

    async def _on_inventory_event(self, envelope: dict[str, Any], now: float) -> None:
        payload = envelope["payload"]
        if envelope["event_type"] != "ShipmentCreated" or payload["order_id"] not in self.result.orders:
            return
        task = asyncio.create_task(
            self._ship(payload["shipment_id"], payload["method"], payload["warehouse"], payload["order_id"])
        )
        self._shipping.add(task)
        task.add_done_callback(self._shipping.discard)

    async def _ship(self, shipment_id: str, method: str, warehouse: str, order_id: str) -> None:
        """A warehouse clerk's steps, then the carrier's report (or the customer's pickup);
        for an order the desk holds back (hold_shipping), once it is released, unless the
        shipment was cancelled meanwhile (an amendment, split or merge changed the order)."""
        path = f"/shipments/{shipment_id}"
        clerk = self.credentials.clerk(warehouse)
        held = self._held.get(order_id)
        if held is not None:
            await held.wait()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                status, text = await self.send("GET", "inventory", path, {}, clerk)
                if status == 200 and json.loads(text)["status"] == "cancelled":
                    return
        steps: list[tuple[str, dict[str, Any], Headers]]
        if method == "pickup":
            steps = [
                (f"{path}/pick", {}, clerk),
                (f"{path}/pack", {}, clerk),
                (f"{path}/ready-for-pickup", {}, clerk),
                (f"{path}/collect", {}, clerk),
            ]
        else:
            tracking = f"LG-{shipment_id}"
            steps = [
                (f"{path}/pick", {}, clerk),
                (f"{path}/pack", {"parcels": 1}, clerk),
                (f"{path}/dispatch", {"carrier": "LoadCarrier", "tracking_number": tracking}, clerk),
                (
                    "/carrier-events",
                    {
                        "tracking_number": tracking,
                        "status": "delivered",
                        "location": "Benchville",
                        "occurred_at": datetime.now(UTC).isoformat(),
                    },
                    self.credentials.carrier,
                ),
            ]
        for step_path, body, headers in steps:
            if not await self._retrying_post("inventory", step_path, body, headers):
                return

    # -- production (Mix.manufactured_skus) ---------------------------------------------

    async def _set_up_production(self, units_per_part: int) -> None:
        """Two work centres, a BOM per manufactured SKU (a part of its own and the hottest SKU;
        cut, inspected, then assembled), the parts in stock, a little of each product."""
        planner = self._production_workers[0]
        cut, assemble = f"LG-{self.run_tag}-CUT", f"LG-{self.run_tag}-ASM"
        for code in (cut, assemble):
            body = {"code": code, "name": f"load {code}", "capacity_minutes_per_day": 1440}
            if not await self._retrying_post("production", "/work-centers", body, planner):
                raise RuntimeError(f"production did not register the work centre {code}")
        for made, part in zip(self.manufactured, self.parts, strict=True):
            bom = {
                "components": [{"sku": part, "quantity": "2"}, {"sku": self.skus[0], "quantity": "1"}],
                "output_quantity": 1,
                "operations": [
                    {
                        "name": "cut",
                        "work_center": cut,
                        "setup_minutes": "5",
                        "minutes_per_unit": "2",
                        "inspection": True,
                    },
                    {
                        "name": "assemble",
                        "work_center": assemble,
                        "setup_minutes": "5",
                        "minutes_per_unit": "3",
                        "inspection": True,
                    },
                ],
            }
            if not await self._retrying_send("PUT", "production", f"/boms/{made}", bom, planner):
                raise RuntimeError(f"production did not take the BOM of {made}")
        receipts = [(part, units_per_part) for part in self.parts]
        receipts += [(made, self.mix.manufactured_stock) for made in self.manufactured]
        await asyncio.gather(
            *(self.receive(sku, code, units) for sku, units in receipts if units for code, _ in WAREHOUSES)
        )

    async def _on_production_event(self, envelope: dict[str, Any], now: float) -> None:
        payload = envelope["payload"]
        production_order_id = payload["production_order_id"]
        # Once per production order, however often its creation is delivered (replays).
        if payload["sku"] not in self.manufactured or production_order_id in self._producing:
            return
        self.production.seen += 1
        self._producing[production_order_id] = asyncio.create_task(self._produce(production_order_id))

    async def _produce(self, production_order_id: str) -> None:
        """A worker on the shop floor: reads the production order, does its next step, and
        again, until it is completed or cancelled. A replica away or failing: asks another one
        (send goes round them); a step refused (4xx, the state moved on): reads again."""
        worker = self._production_workers[len(self._producing) % len(self._production_workers)]
        path = f"/production-orders/{production_order_id}"
        refusals = 0
        while True:
            try:
                status, text = await self.send("GET", "production", path, {}, worker)
                order = json.loads(text) if status == 200 else None
                step = (
                    None
                    if order is None
                    else next_production_step(order, self.mix.rework_share, self.mix.scrap_share)
                )
                if order is not None and order["status"] in ("completed", "cancelled"):
                    if order["status"] == "completed":
                        self.production.completed += 1
                    else:
                        self.production.cancelled += 1
                    return
                if step is None:  # not released yet (or not known to this replica yet)
                    await asyncio.sleep(0.5)
                    continue
                step_path, body = step
                status, text = await self.post("production", step_path, body, worker)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self.production.retried += 1
                await asyncio.sleep(0.5)
                continue
            if status >= 500:
                self.production.retried += 1
                await asyncio.sleep(0.5)
            elif status >= 400:
                self.production.refused += 1
                refusals += 1
                if refusals > PRODUCTION_REFUSALS_TOLERATED:
                    self.production.given_up += 1
                    return
                await asyncio.sleep(0.2)
            else:
                self.production.steps += 1
                if body.get("disposition") == "rework":
                    self.production.reworked += 1
                elif body.get("disposition") == "scrap":
                    self.production.scrapped += 1

    @property
    def production_open(self) -> int:
        """Production orders a worker is still on."""
        return sum(1 for task in self._producing.values() if not task.done())

    async def _retrying_send(
        self, method: str, service: str, path: str, body: dict[str, Any], headers: Headers
    ) -> bool:
        for _ in range(60):
            try:
                status, _ = await self.send(method, service, path, body, headers)
                if status < 500:
                    if status >= 400:
                        self.result.errors += 1
                    return status < 400
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        self.result.errors += 1
        return False

    async def _retrying_post(self, service: str, path: str, body: dict[str, Any], headers: Headers) -> bool:
        for _ in range(60):
            try:
                status, _ = await self.post(service, path, body, headers)
                if status < 500:
                    if status >= 400:
                        self.result.errors += 1
                    return status < 400
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        self.result.errors += 1
        return False

    async def wait_delivered(self, timeout: float) -> None:
        """Until every confirmed order of the run has arrived (or `timeout` seconds pass)."""

        def all_arrived() -> bool:
            return all(
                t.delivered is not None for t in self.result.orders.values() if t.outcome == "confirmed"
            )

        async with self._delivered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._delivered.wait_for(all_arrived), timeout)

    # -- submitting ---------------------------------------------------------------------

    def _order_body(self) -> dict[str, Any]:
        mix = self.mix
        if self._scarce_sku is not None:
            sku = self._scarce_sku
        elif self.random.random() < mix.hot_share:
            sku = self.random.choice(self.skus[: mix.hot_skus])
        else:
            sku = self.random.choices(self.skus, self.weights)[0]
        lines = [{"sku": sku, "quantity": self.random.randint(1, 3), "unit_price": "19.90"}]
        if self.random.random() < 0.3:
            lines.append(
                {"sku": self.random.choices(self.skus, self.weights)[0], "quantity": 1, "unit_price": "4.50"}
            )
        # Drawn only with production on: without it the orders are those of a run before it.
        if self.manufactured and self._scarce_sku is None and self.random.random() < mix.manufactured_share:
            made = self.random.choice(self.manufactured)
            lines.append({"sku": made, "quantity": self.random.randint(1, 3), "unit_price": "89.00"})
        on_account = self.random.random() < mix.on_account_share
        customer_number = self.random.randint(1, 5000)
        channel = "web" if self.random.random() < 0.7 else "marketplace"
        # An account of its own for each on-account order: one account's orders alike would be
        # held as possible duplicates. Granted ahead (prepare_accounts) or just before the order.
        account = {}
        if on_account:
            granted = self._granted_accounts.pop() if self._granted_accounts else None
            account = {"id": granted or f"LG-{self.run_tag}-ACCT-{uuid4().hex[:10]}", "granted": granted}
        return {
            "channel": ACCOUNT_CHANNEL if on_account else channel,
            "customer": {
                **account,
                "name": f"Customer {customer_number}",
                "email": f"c{customer_number}-{uuid4().hex[:6]}@load.example",
                "region": self.random.choice(WAREHOUSES)[1],
            },
            "lines": lines,
            "currency": "EUR",
            "payment_terms": "on_account" if on_account else "prepaid",
            "shipping": (
                {"method": "standard", "address": DELIVERY_ADDRESS}
                if mix.ship and self.random.random() < 0.5
                else {"method": "pickup"}
            ),
        }

    async def submit(self, body: dict[str, Any], key: str | None = None) -> str:
        """Submit this order as a channel does (the order desk's actor places its own), with
        this Idempotency-Key if given; its id."""
        return await self._submit_one(body, key)

    def track(self, order_id: str, prepaid: bool) -> None:
        """Follow an order the order desk made (a split's or a merge's) like the run's own: it
        is paid, shipped and checked, without counting as submitted."""
        self.result.orders.setdefault(order_id, Tracked(time.perf_counter(), prepaid, counted=False))

    def hold_shipping(self, order_id: str) -> None:
        """The warehouse leaves the order's shipments alone until release_shipping: the order
        desk is about to change it, which it may only do before anything left."""
        self._held.setdefault(order_id, asyncio.Event())

    def release_shipping(self, order_id: str) -> None:
        held = self._held.pop(order_id, None)
        if held is not None:
            held.set()

    async def _submit_one(self, body: dict[str, Any] | None = None, key: str | None = None) -> str:
        body = body if body is not None else self._order_body()
        if body["payment_terms"] == "on_account" and not body["customer"].pop("granted"):
            await self._grant_credit(body["customer"]["id"])
        key = key or f"lg-{uuid4()}"
        order_id = str(uuid5(NAMESPACE_URL, f"ordermesh:idem:{key}"))
        tracked = Tracked(time.perf_counter(), body["payment_terms"] == "prepaid")
        self.result.orders[order_id] = tracked
        self._open += 1
        async with self._submitted:
            self._submitted.notify_all()
        over_http = self.random.random() < self.mix.http_share
        # Like a channel: on a failure, submit again with the same key (idempotent).
        for attempt in range(60):
            try:
                if over_http:
                    channel_key = await self.credentials.channel(body["channel"])
                    status, _ = await self.post(
                        "order", "/orders", body, {**channel_key, "Idempotency-Key": key}
                    )
                    if status >= 500:
                        raise RuntimeError(f"{status}")
                    if status != 202:
                        tracked.outcome = f"refused {status}"
                        self.result.errors += 1
                        self._open -= 1
                    return order_id
                submission = SubmitOrder.model_validate({**body, "idempotency_key": key})
                envelope = make_envelope(
                    submission,
                    event_id=uuid4(),
                    aggregate_id=key,
                    aggregate_version=0,
                    occurred_at=datetime.now(UTC),
                    correlation_id=key,
                    causation_id=None,
                    actor=f"channel:{body['channel']}",
                )
                await self.producer.send_and_wait(
                    self.settings.topic(ORDER_INTAKE), encode(envelope), key=key.encode()
                )
                return order_id
            except Exception:
                self.result.retries += 1
                await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
        self.result.errors += 1
        tracked.outcome = "submit_failed"
        self._open -= 1
        return order_id

    async def _grant_credit(self, customer_id: str) -> None:
        """Finance sets the account's credit limit (not timed as part of the order)."""
        path, body = f"/customers/{customer_id}/credit-limit", {"credit_limit": ACCOUNT_CREDIT_LIMIT}
        for _ in range(60):
            try:
                status, _ = await self.send("PUT", "billing", path, body, self.credentials.finance_person())
                if status < 500:
                    if status >= 400:
                        self.result.errors += 1  # its order is then rejected: no credit
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        self.result.errors += 1

    @property
    def submitted(self) -> int:
        """Orders of the current run handed to the platform so far (sent or being sent)."""
        return len(self.result.orders)

    async def wait_submitted(self, count: int) -> None:
        """Until the current run has submitted `count` orders (or it ended short of them)."""
        async with self._submitted:
            await self._submitted.wait_for(lambda: self.submitted >= count or self._run_over)

    def launch(
        self,
        orders: int,
        rate: float,
        concurrency: int,
        drain_seconds: float,
        *,
        until: asyncio.Event | None = None,
        scarce_sku: str | None = None,
    ) -> asyncio.Task[RunResult]:
        """run() as a task, with the run begun at once: wait_submitted() counts from it."""
        self.result = RunResult(started=time.perf_counter())
        self._run_over = False
        return asyncio.create_task(
            self.run(orders, rate, concurrency, drain_seconds, until=until, scarce_sku=scarce_sku)
        )

    async def run(
        self,
        orders: int,
        rate: float,
        concurrency: int,
        drain_seconds: float,
        *,
        until: asyncio.Event | None = None,
        scarce_sku: str | None = None,
    ) -> RunResult:
        """rate > 0: open loop at that many orders/s; rate == 0: closed loop, `concurrency`
        submissions in flight at once (as fast as the platform absorbs them).

        `until` (open loop only): after `orders`, keep submitting at the same rate until it
        is set. `scarce_sku`: every order asks for that SKU (and maybe one other)."""
        if until is not None and rate <= 0:
            raise ValueError("`until` needs an open loop (rate > 0)")
        self.result = RunResult(started=time.perf_counter())
        self._expected = orders
        self._scarce_sku = scarce_sku
        self._run_over = False
        self._all_done.clear()
        try:
            await self._submit_all(orders, rate, concurrency, until)
        finally:
            self._scarce_sku = None
            self._run_over = True
            async with self._submitted:
                self._submitted.notify_all()
        self._expected = len(self.result.orders)
        if self._open == 0:
            self._all_done.set()
        else:  # set early if the run outlived `orders` (until) with none open for a moment
            self._all_done.clear()
        self.result.submitted_until = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done.wait(), drain_seconds)
        return self.result

    async def _submit_all(
        self, orders: int, rate: float, concurrency: int, until: asyncio.Event | None
    ) -> None:
        if rate > 0:
            in_flight: set[asyncio.Task[str]] = set()
            n = 0
            while n < orders or (until is not None and not until.is_set()):
                target = self.result.started + n / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._submit_one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            await asyncio.gather(*in_flight)
        else:
            remaining = iter(range(orders))

            async def worker() -> None:
                for _ in remaining:
                    await self._submit_one()
                    await self._backpressure(concurrency)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _backpressure(self, concurrency: int) -> None:
        # Closed loop: keep at most a few thousand orders open, so "as fast as absorbed"
        # measures the platform, not an ever-growing queue in Kafka.
        while self._open > concurrency * 20:
            self._outcome_seen.clear()
            await self._outcome_seen.wait()


# --- the order desk (tools/chaos.py) --------------------------------------------------------


@dataclass(frozen=True)
class DeskDose:
    """How much the order desk does under one fault, at most: each action a person of the desk
    takes (docs/order-desk.md, docs/returns.md), each bounded by `action_seconds`."""

    amends: int = 0  # confirmed or awaiting-payment orders amended, up and down in turn
    splits: int = 0  # backordered orders split
    merges: int = 0  # pairs of one customer's orders (same email and address), placed and merged
    returns: int = 0  # delivered orders of which one unit comes back (resellable, damaged in turn)
    action_seconds: float = 60.0

    @property
    def any(self) -> bool:
        return bool(self.amends or self.splits or self.merges or self.returns)


DESK_ACTIONS = ("amend", "split", "merge", "return")


@dataclass
class DeskWork:
    """What the order desk's actor did, per action: done; refused (409: the order's state had
    moved on, as it may under load); no_candidate (no order to act on came up within the
    action's time); given_up (its time ran out: a fault kept the answer away)."""

    done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DESK_ACTIONS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DESK_ACTIONS, 0))
    no_candidate: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DESK_ACTIONS, 0))
    given_up: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DESK_ACTIONS, 0))
    retried: int = 0  # a replica away or failing (5xx, no answer): asked again with the same key
    differences_paid: int = 0  # amendments up of paid orders whose customer paid the difference

    def as_dict(self) -> dict[str, int]:
        flat = {
            f"{action}_{what}": n
            for what in ("done", "refused", "no_candidate", "given_up")
            for action, n in getattr(self, what).items()
        }
        return {**flat, "retried": self.retried, "differences_paid": self.differences_paid}


class _NoCandidate(Exception):
    pass


class _Refused(Exception):
    pass


# An order the desk may amend (the brief: confirmed or awaiting payment), and the statuses an
# order reaches that no amendment will follow.
AMENDABLE = frozenset({"confirmed", "awaiting_payment"})
PAST_AMENDING = frozenset(
    {
        "awaiting_stock",
        "on_hold",
        "cancelled",
        "rejected",
        "merged",
        "needs_attention",
        "shipped",
        "delivered",
    }
)
DESK_POLL_SECONDS = 0.5


class OrderDesk:
    """The order desk's people under load: they amend some of the run's orders up and down,
    split backordered ones, merge pairs of one customer's orders, and take back a unit of
    some delivered ones, each with an Idempotency-Key that is sent again, unchanged, while a
    service is away (5xx, no answer). An order the desk is about to change is held back by
    the warehouse (hold_shipping) until the change is done: a change is refused once a
    shipment has left. A refusal (409: the order moved on) is counted, not a failure."""

    def __init__(self, generator: LoadGenerator, dose: DeskDose) -> None:
        self.generator = generator
        self.dose = dose
        self.work = DeskWork()
        self.person = generator.credentials.person("order_desk")
        self.clerk = generator.credentials.person("warehouse")
        self.random = random.Random(generator.mix.seed + 15)
        self._used: set[str] = set()  # orders the desk acted on (or chose to): once each

    async def run(self, until: asyncio.Event) -> DeskWork:
        """Each kind of action in turn, as often as the dose says, until `until` is set (an
        action started then runs to its end, within its time)."""
        plan = {
            "amend": (self.dose.amends, self._amend),
            "split": (self.dose.splits, self._split),
            "merge": (self.dose.merges, self._merge),
            "return": (self.dose.returns, self._return),
        }
        await asyncio.gather(*(self._repeat(kind, n, act, until) for kind, (n, act) in plan.items()))
        return self.work

    async def _repeat(self, kind: str, times: int, act: Any, until: asyncio.Event) -> None:
        for n in range(times):
            if n and until.is_set():
                return
            held: list[str] = []
            try:
                await asyncio.wait_for(act(n, held), self.dose.action_seconds)
                self.work.done[kind] += 1
            except _Refused:
                self.work.refused[kind] += 1
            except _NoCandidate:
                self.work.no_candidate[kind] += 1
            except TimeoutError:
                self.work.given_up[kind] += 1
            finally:
                for order_id in held:
                    self.generator.release_shipping(order_id)

    # -- the actions ----------------------------------------------------------------------

    async def _amend(self, n: int, held: list[str]) -> None:
        """The next order submitted, held back from the warehouse, amended once it is
        confirmed or awaits payment: one more unit of its first line, or (every other time)
        one fewer of a line that has several (else a line dropped); a paid customer pays the
        difference of an amendment up."""
        while True:  # the next that gets there: others wait for stock or a person, or failed
            order_id = await self._next_submitted()
            self.generator.hold_shipping(order_id)
            held.append(order_id)
            order = await self._order_when(
                order_id, lambda o: o["status"] in AMENDABLE or o["status"] in PAST_AMENDING
            )
            if order["status"] in AMENDABLE:
                break
            self.generator.release_shipping(held.pop())
        lines = [{k: line[k] for k in ("sku", "quantity", "unit_price")} for line in order["lines"]]
        down = n % 2 == 1 and (any(line["quantity"] > 1 for line in lines) or len(lines) > 1)
        if not down:
            lines[0]["quantity"] += 1
        elif any(line["quantity"] > 1 for line in lines):
            line = next(line for line in lines if line["quantity"] > 1)
            line["quantity"] -= 1
        else:
            lines.pop()
        body = {"lines": lines, "reason": f"chaos: the customer called ({'fewer' if down else 'more'})"}
        await self._change(f"/orders/{order_id}/amend", body)
        order = await self._order_when(order_id, lambda o: o.get("change") is None)
        if not down and order["status"] == "awaiting_payment":
            await self._pay_difference(order_id, n)

    async def _split(self, n: int, held: list[str]) -> None:
        """A backordered order of the run split: the line of the SKU it most likely waits for
        (a manufactured or scarce one, else its last) moves to a new order; an order of one
        line moves one unit if it has several."""
        order = await self._candidate("awaiting_stock")
        lines = order["lines"]
        skus = {line["sku"] for line in lines}
        if len(skus) > 1:
            waits_for = [line["sku"] for line in lines if line["sku"] in self._slow_skus()]
            sku = waits_for[0] if waits_for else lines[-1]["sku"]
            moved = [{"sku": sku, "quantity": sum(line["quantity"] for line in lines if line["sku"] == sku)}]
        elif lines[0]["quantity"] > 1:
            moved = [{"sku": lines[0]["sku"], "quantity": 1}]
        else:
            raise _NoCandidate
        answer = await self._change(
            f"/orders/{order['order_id']}/split",
            {"lines": moved, "reason": "chaos: ship what is in stock now"},
        )
        if answer.get("new_order_id"):
            self.generator.track(answer["new_order_id"], order["payment_terms"] == "prepaid")
        await self._order_when(order["order_id"], lambda o: o.get("change") is None)

    async def _merge(self, n: int, held: list[str]) -> None:
        """Two orders of one customer (same email and address, other SKUs so they are no
        duplicates), placed, held back from the warehouse, and merged once both are
        confirmed or await payment."""
        generator = self.generator
        customer = {
            "name": f"Desk Customer {n}",
            "email": f"desk-{uuid4().hex[:10]}@load.example",
            "region": self.random.choice(WAREHOUSES)[1],
        }
        skus = self.random.sample(generator.skus[generator.mix.hot_skus :], 2)
        bodies = [
            {
                "channel": "web",
                "customer": customer,
                "lines": [{"sku": sku, "quantity": self.random.randint(1, 2), "unit_price": "19.90"}],
                "currency": "EUR",
                "payment_terms": "prepaid",
                "shipping": {"method": "standard", "address": DELIVERY_ADDRESS},
            }
            for sku in skus
        ]
        ids = []
        for body in bodies:
            order_id = await self._submit_held(body, held)
            ids.append(order_id)
        for order_id in ids:
            order = await self._order_when(
                order_id, lambda o: o["status"] in AMENDABLE or o["status"] in PAST_AMENDING
            )
            if order["status"] not in AMENDABLE:
                raise _NoCandidate
        answer = await self._change("/orders/merge", {"order_ids": ids, "reason": "chaos: one parcel"})
        generator.track(answer["order_id"], True)
        for order_id in ids:
            await self._order_when(order_id, lambda o: o.get("change") is None)

    async def _return(self, n: int, held: list[str]) -> None:
        """One unit of a delivered order of the run comes back: asked for, approved and
        received, resellable or (every other time) damaged; refunded by billing."""
        order = await self._delivered()
        line = order["lines"][0]
        key = {**self.person, "Idempotency-Key": f"desk-return-{uuid4()}"}
        body = {
            "order_id": order["order_id"],
            "lines": [{"sku": line["sku"], "quantity": 1, "reason": "chaos: not as described"}],
            "resolution": "refund",
        }
        status, answer = await self._ask("POST", "/returns", body, key)
        self._refused_unless(status, answer, 200, 201)
        path = f"/returns/{answer['return_id']}"
        status, answer = await self._ask("POST", f"{path}/approve", {}, self.person)
        self._refused_unless(status, answer, 200)
        condition = "damaged" if n % 2 else "resellable"
        receipt = {"lines": [{"sku": line["sku"], "quantity": 1, "condition": condition}]}
        status, answer = await self._ask("POST", f"{path}/receive", receipt, self.clerk)
        self._refused_unless(status, answer, 200, 202)

    # -- finding orders ---------------------------------------------------------------------

    async def _next_submitted(self) -> str:
        """The run's next order, as it is submitted (before anything ships)."""
        generator = self.generator
        await generator.wait_submitted(generator.submitted + 1)
        for order_id, tracked in reversed(generator.result.orders.items()):
            if tracked.counted and order_id not in self._used:
                self._used.add(order_id)
                return order_id
        raise _NoCandidate

    async def _submit_held(self, body: dict[str, Any], held: list[str]) -> str:
        """Submit with the order held back from the warehouse from the start: its id is known
        before it is sent (the key's), so the hold is in place before any shipment."""
        key = f"lg-{uuid4()}"
        order_id = str(uuid5(NAMESPACE_URL, f"ordermesh:idem:{key}"))
        self.generator.hold_shipping(order_id)
        held.append(order_id)
        self._used.add(order_id)
        submitted = await self.generator.submit(body, key=key)
        assert submitted == order_id
        return order_id

    async def _candidate(self, status: str) -> dict[str, Any]:
        """An order of the run in `status`, not acted on before (the list, newest first)."""
        while True:
            code, page = await self._ask(
                "GET", "/orders", None, self.person, params={"status": status, "limit": 100}
            )
            if code == 200 and page:
                for item in page["items"]:
                    if (
                        item["order_id"] in self.generator.result.orders
                        and item["order_id"] not in self._used
                    ):
                        self._used.add(item["order_id"])
                        return await self._order(item["order_id"])
            await asyncio.sleep(DESK_POLL_SECONDS * 2)

    async def _delivered(self) -> dict[str, Any]:
        while True:
            for order_id, tracked in list(self.generator.result.orders.items()):
                if tracked.delivered is not None and tracked.counted and order_id not in self._used:
                    self._used.add(order_id)
                    order = await self._order(order_id)
                    if order["status"] in ("delivered", "completed"):
                        return order
            await asyncio.sleep(DESK_POLL_SECONDS * 2)

    def _slow_skus(self) -> set[str]:
        """SKUs an order most likely waits for: made to order, or a fault's scarce one."""
        scarce = self.generator._scarce_sku  # noqa: SLF001 - the run's scarce SKU, if any
        return {*self.generator.manufactured, *([scarce] if scarce else [])}

    async def _order(self, order_id: str) -> dict[str, Any]:
        while True:
            status, order = await self._ask("GET", f"/orders/{order_id}", None, self.person)
            if status == 200 and order:
                return dict(order)
            await asyncio.sleep(DESK_POLL_SECONDS)  # not placed yet (intake), or a replica behind

    async def _order_when(self, order_id: str, ready: Any) -> dict[str, Any]:
        while True:
            order = await self._order(order_id)
            if ready(order):
                return order
            await asyncio.sleep(DESK_POLL_SECONDS)

    # -- asking --------------------------------------------------------------------------

    async def _change(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """An amend, split or merge, with its Idempotency-Key: the same change however often
        it is sent. 409 (the order's state moved on): refused."""
        key = {**self.person, "Idempotency-Key": f"desk-{uuid4()}"}
        status, answer = await self._ask("POST", path, body, key)
        self._refused_unless(status, answer, 200, 202)
        return dict(answer or {})

    def _refused_unless(self, status: int, answer: Any, *ok: int) -> None:
        if status in ok:
            return
        if status == 409:
            raise _Refused
        # Anything else is the actor's mistake or the platform's: the run says so.
        self.generator.result.errors += 1
        raise _Refused

    async def _pay_difference(self, order_id: str, n: int) -> None:
        status, invoices = await self._ask(
            "GET", "/invoices", None, self.person, service="billing", params={"order_id": order_id}
        )
        if status != 200 or not invoices:
            return
        invoice = invoices[0]
        owed = Decimal(invoice["amount"]) - Decimal(invoice["amount_paid"])
        if invoice["status"] == "open" and owed > 0 and Decimal(invoice["amount_paid"]) > 0:
            await self.generator._pay(order_id, str(owed), "succeeded", attempt=100 + n)  # noqa: SLF001
            self.work.differences_paid += 1

    async def _ask(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: Headers,
        *,
        service: str = "order",
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON answer) once a replica answers below 500; asked again meanwhile."""
        query = "" if not params else "?" + "&".join(f"{k}={v}" for k, v in params.items())
        while True:
            try:
                status, text = await self.generator.send(method, service, path + query, body or {}, headers)
                if status < 500:
                    return status, json.loads(text) if text else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            self.work.retried += 1
            await asyncio.sleep(DESK_POLL_SECONDS)


def summarise(result: RunResult) -> dict[str, Any]:
    latencies = result.latencies()
    prepaid = result.latencies(prepaid_confirmed_only=True)
    return {
        "orders": len(result.orders),
        "outcomes": result.outcomes(),
        "orders_per_s": round(result.throughput(), 1),
        "p50_ms": _round(percentile(latencies, 0.50)),
        "p95_ms": _round(percentile(latencies, 0.95)),
        "p99_ms": _round(percentile(latencies, 0.99)),
        "prepaid_confirmed_p50_ms": _round(percentile(prepaid, 0.50)),
        "prepaid_confirmed_p99_ms": _round(percentile(prepaid, 0.99)),
        "prepaid_confirmed_count": len(prepaid),
        "errors": result.errors,
        "submit_retries": result.retries,
        "throttled": result.throttled,
        "payments_declined": result.declined,
        "paid_after_decline": result.paid_after_decline,
        "delivered": len(result.deliveries()),
        "delivered_per_s": round(result.delivered_per_s(), 1),
        "p50_ms_to_delivered": _round(percentile(result.deliveries(), 0.50)),
        "p99_ms_to_delivered": _round(percentile(result.deliveries(), 0.99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = RuntimeSettings()
    mix = Mix(
        http_share=args.http_share,
        payment_fail_share=args.fail_share,
        never_pay_share=args.never_pay_share,
        retry_after_decline_share=args.retry_after_decline_share,
        on_account_share=args.on_account_share,
        ship=args.ship,
    )
    async with LoadGenerator(
        settings, args.order_url, args.inventory_url, args.billing_url, mix
    ) as generator:
        await generator.stock_up(args.stock)
        await generator.start_listening()
        result = await generator.run(args.orders, args.rate, args.concurrency, args.drain)
        if args.ship:
            await generator.wait_delivered(args.drain)
    return summarise(result)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--order-url", default="http://127.0.0.1:8001")
    parser.add_argument("--inventory-url", default="http://127.0.0.1:8002")
    parser.add_argument("--billing-url", default="http://127.0.0.1:8004")
    parser.add_argument("--http-share", type=float, default=0.5)
    parser.add_argument("--on-account-share", type=float, default=0.3)
    parser.add_argument("--fail-share", type=float, default=0.0)
    parser.add_argument("--never-pay-share", type=float, default=0.0)
    parser.add_argument(
        "--retry-after-decline-share",
        type=float,
        default=Mix.retry_after_decline_share,
        help="of the customers whose card is declined, the share who pay again at once",
    )
    parser.add_argument("--stock", type=int, default=100_000, help="units per SKU per warehouse")
    parser.add_argument("--drain", type=float, default=120, help="seconds to wait for outcomes")
    parser.add_argument(
        "--ship",
        action="store_true",
        help="also ship what is confirmed (warehouse steps over HTTP, carrier reports) and time"
        " submission to delivered",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0, help="orders/s (0: as fast as absorbed)")
    parser.add_argument("--concurrency", type=int, default=50)
    add_arguments(parser)
    print(json.dumps(asyncio.run(main_async(parser.parse_args())), indent=2))
