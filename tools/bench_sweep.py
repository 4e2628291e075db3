"""The open-loop sweep of `make bench`: orders at a few offered rates, from low to beyond the
measured peak, a bounded time each; for every rate p50/p99 from submission to `confirmed`, and
where the time of a median and of a p99 order goes, stage by stage, read from the orders'
timelines (GET /orders/{id}: every event of the order with its time).

    python -m tools.bench_sweep --quick     # a tiny sweep against the platform `make up` runs
    python -m tools.bench_sweep --peak 200  # the full sweep, around a peak measured before

`make bench` runs the full sweep after its own peak and 70% phases (tools/bench.py) and draws
the chart (tools/bench_report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from libs.runtime.settings import RuntimeSettings
from tools import bench_report, loadgen

# The offered rates, as fractions of the closed-loop peak, plus fixed rates the issue's
# targets name (50 orders/s). Beyond 1.0 the backlog grows for the whole step: that is the
# point, the chart shows where latency gives way.
PEAK_FRACTIONS = (0.25, 0.5, 0.7, 0.9, 1.1, 1.3)
FIXED_RATES = (50.0,)
QUICK_FRACTIONS = (0.3, 0.7, 1.2)

# The milestones of a prepaid order on its way to `confirmed`, each the first event of these
# types on the order's timeline. With parallel steps (OM_ORDER_PARALLEL_STEPS) the stock and
# the invoice come in either order, and the invoice is recorded as OrderInvoiced when it comes
# first: stages are taken in the order each order reached them. Events of one transaction
# share its time (a consumer's whole batch has one), so a stage of 0 ms was recorded in the
# same transaction as the one before it.
# A milestone the timeline lacks (renamed, or not recorded by a new structure) is left out:
# its time counts in the next milestone's stage.
MILESTONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("placed", ("OrderPlaced",)),
    ("reviewed", ("OrderApproved",)),
    ("reserved", ("OrderStockAllocated",)),
    ("invoiced", ("OrderInvoiced", "OrderAwaitingPayment")),
    ("paid", ("OrderPaymentRecorded",)),
    ("confirmed", ("OrderConfirmed",)),
)
SUBMITTED = "submitted"
SEEN = "seen by the channel"  # the load generator read OrderConfirmed from Kafka
STAGES = (*(name for name, _ in MILESTONES), SEEN)
# Orders whose latency rank lies within this share of the median's (or the p99's) are the
# "median order" (or "p99 order"): one order alone is noise, a few dozen average it out.
BAND = 0.005
BAND_MAX_ORDERS = 40


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    seconds: float
    drain: float
    concurrency: int = 200


def plan(peak: float, quick: bool = False, seconds: float = 12.0, drain: float = 60.0) -> Plan:
    if quick:
        rates = {round(max(peak * f, 1.0), 1) for f in QUICK_FRACTIONS}
        return Plan(tuple(sorted(rates)), seconds=3.0, drain=20.0)
    rates = {round(max(peak * f, 1.0), 1) for f in PEAK_FRACTIONS} | set(FIXED_RATES)
    return Plan(tuple(sorted(rates)), seconds=seconds, drain=drain)


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The value q of the orders stayed within; None when that is an order still unconfirmed
    (math.inf) at the end of the step's drain."""
    if not values:
        return None
    value = sorted(values)[max(math.ceil(q * len(values)) - 1, 0)]
    return None if math.isinf(value) else round(value, 1)


def point(result: loadgen.RunResult, offered: float) -> dict[str, Any]:
    """One point of the curve. Every submitted order counts: those not confirmed by the end
    of the drain as slower than any (a p99 past them reads null: "beyond the drain")."""
    accepted = [t for t in result.orders.values() if not (t.outcome or "").startswith(("refused", "submit"))]
    latencies = [
        t.latency_ms if t.outcome == "confirmed" and t.latency_ms is not None else math.inf
        for t in accepted
        if t.outcome in (None, "confirmed")
    ]
    confirmed = [t.finished for t in accepted if t.outcome == "confirmed" and t.finished is not None]
    window = result.submitted_until - result.started
    return {
        "offered_per_s": offered,
        "orders": len(result.orders),
        "outcomes": result.outcomes(),
        "submitted_per_s": round(len(result.orders) / window, 1) if window > 0 else None,
        "confirmed_per_s": round(len(confirmed) / (max(confirmed) - result.started), 1) if confirmed else 0.0,
        "confirmed_share": round(len(confirmed) / max(len(latencies), 1), 4),
        "p50_ms": nearest_rank(latencies, 0.50),
        "p99_ms": nearest_rank(latencies, 0.99),
    }


# --- where the time goes --------------------------------------------------------------------


def _band(ranked: list[tuple[str, loadgen.Tracked]], q: float) -> list[tuple[str, loadgen.Tracked]]:
    n = len(ranked)
    centre = min(max(math.ceil(q * n) - 1, 0), n - 1)
    half = max(int(n * BAND), 0)
    lo, hi = max(centre - half, 0), min(centre + half + 1, n)
    band = ranked[lo:hi]
    if len(band) > BAND_MAX_ORDERS:  # the ones nearest the rank itself
        start = max(min(centre - lo - BAND_MAX_ORDERS // 2, len(band) - BAND_MAX_ORDERS), 0)
        band = band[start : start + BAND_MAX_ORDERS]
    return band


def stage_times(timeline: list[dict[str, Any]], submitted_wall: float, seen_wall: float) -> dict[str, float]:
    """For one order: each stage's ms, from the milestone reached before it (in time) to it."""
    reached: list[tuple[float, int, str]] = []
    for rank, (name, types) in enumerate(MILESTONES):
        at = next((entry["at"] for entry in timeline if entry["type"] in types), None)
        if at is not None:
            reached.append((datetime.fromisoformat(at).timestamp(), rank, name))
    reached.sort()  # by time; milestones of one transaction (one time) in the table's order
    reached.append((seen_wall, len(MILESTONES), SEEN))
    stages: dict[str, float] = {}
    previous = submitted_wall
    for at, _, name in reached:
        stages[name] = (at - previous) * 1000
        previous = at
    return stages


async def breakdown(
    result: loadgen.RunResult, order_url: str, headers: dict[str, str], run: str
) -> dict[str, Any]:
    """Where the time of a median and of a p99 prepaid order (paid at once) goes: the mean of
    each stage over the orders around that rank, read from their timelines. Stage times use
    the services' clocks (`at` of each event, taken when the handler decided, before its
    commit) against the load generator's (submission, and seeing OrderConfirmed on Kafka):
    one machine, one clock."""
    ranked = sorted(
        (
            (order_id, t)
            for order_id, t in result.orders.items()
            if t.prepaid and t.outcome == "confirmed" and t.latency_ms is not None
        ),
        key=lambda pair: pair[1].latency_ms or 0.0,
    )
    if not ranked:
        return {"run": run, "orders": 0, "stages": []}
    wall_offset = time.time() - time.perf_counter()
    gate = asyncio.Semaphore(8)

    async def timeline(client: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
        async with gate:
            response = await client.get(f"/orders/{order_id}")
            response.raise_for_status()
            entries: list[dict[str, Any]] = response.json()["timeline"]
            return entries

    bands = {"median_order": _band(ranked, 0.50), "p99_order": _band(ranked, 0.99)}
    means: dict[str, dict[str, float | None]] = {}
    async with httpx.AsyncClient(base_url=order_url, headers=headers, timeout=30) as client:
        for label, band in bands.items():
            timelines = await asyncio.gather(*(timeline(client, order_id) for order_id, _ in band))
            per_order = [
                stage_times(entries, t.submitted + wall_offset, (t.finished or t.submitted) + wall_offset)
                for (_, t), entries in zip(band, timelines, strict=True)
            ]
            means[label] = {stage: _mean([o[stage] for o in per_order if stage in o]) for stage in STAGES}
            means[label]["total"] = _mean([t.latency_ms or 0.0 for _, t in band])
    return {
        "run": run,
        "orders": len(ranked),
        "orders_averaged": {label: len(band) for label, band in bands.items()},
        "stages": [
            {
                "stage": stage,
                "median_order_ms": means["median_order"][stage],
                "p99_order_ms": means["p99_order"][stage],
            }
            for stage in STAGES
        ],
        "total_ms": {label: means[label]["total"] for label in bands},
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


# --- the sweep --------------------------------------------------------------------------------


async def sweep(generator: loadgen.LoadGenerator, steps: Plan) -> list[dict[str, Any]]:
    """Each rate for `steps.seconds`, then up to `steps.drain` seconds for its orders to finish
    (so the next rate starts on an empty platform), lowest rate first."""
    points = []
    order_url = generator.urls["order"][0]
    for rate in steps.rates:
        orders = max(int(rate * steps.seconds), 10)
        print(f"sweep: {orders} orders at {rate:.1f}/s ...", flush=True)
        await generator.prepare_accounts(orders)
        result = await generator.run(orders, rate, steps.concurrency, steps.drain)
        measured = point(result, rate)
        measured["breakdown"] = await breakdown(
            result, order_url, generator.credentials.admin, f"sweep at {rate:.1f}/s"
        )
        points.append(measured)
    return points


async def standalone(
    settings: RuntimeSettings,
    urls: dict[str, str],
    out: Path,
    *,
    quick: bool,
    peak: float | None = None,
) -> dict[str, Any]:
    """The sweep on its own: a short closed loop for the peak unless given one, then the sweep;
    writes sweep.json and latency-curve.png into `out`."""
    mix = loadgen.Mix(skus=20) if quick else loadgen.Mix()
    async with loadgen.LoadGenerator(settings, urls["order"], urls["inventory"], urls["billing"], mix) as gen:
        await gen.stock_up(1_000_000)
        await gen.start_listening()
        if peak is None:
            orders = 40 if quick else 2000
            await gen.prepare_accounts(orders)
            print(f"peak: {orders} orders as fast as absorbed ...", flush=True)
            peak = loadgen.summarise(await gen.run(orders, 0, 20 if quick else 200, 60))["orders_per_s"]
        steps = plan(peak, quick=quick)
        points = await sweep(gen, steps)
    result = {
        "orders_per_s": peak,
        "rate_at_70pct": round(peak * 0.7, 1),
        "sweep": points,
        "breakdown": _nearest(points, peak * 0.7)["breakdown"] if points else {},
    }
    await asyncio.to_thread(write, result, out)
    return result


def write(result: dict[str, Any], out: Path) -> None:
    """sweep.json and the chart, side by side in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    result["latency_curve_png"] = str(bench_report.draw_curve(result, out / bench_report.CURVE_FILE))
    (out / "sweep.json").write_text(json.dumps(result, indent=2))


def _nearest(points: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    return min(points, key=lambda p: abs(float(p["offered_per_s"]) - rate))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="three short steps: to see it work")
    parser.add_argument("--peak", type=float, help="orders/s measured before (else a short closed loop)")
    parser.add_argument("--out", type=Path, default=bench_report.RESULTS)
    parser.add_argument("--order-url", default="http://127.0.0.1:8001")
    parser.add_argument("--inventory-url", default="http://127.0.0.1:8002")
    parser.add_argument("--billing-url", default="http://127.0.0.1:8004")
    args = parser.parse_args()
    urls = {"order": args.order_url, "inventory": args.inventory_url, "billing": args.billing_url}
    result = asyncio.run(standalone(RuntimeSettings(), urls, args.out, quick=args.quick, peak=args.peak))
    print(bench_report.sweep_table(result["sweep"]))
    print()
    print(bench_report.breakdown_table(result["breakdown"]))
    print(f"\nwritten to {args.out / 'sweep.json'} and {result['latency_curve_png']}")


if __name__ == "__main__":
    main()
