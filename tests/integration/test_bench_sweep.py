"""`make bench`'s open-loop sweep, in its quick form, on the test platform: the JSON a reader
(and docs/performance.md) quotes, the chart as a PNG, and a per-stage breakdown whose stages add
up to the orders' latency."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from matplotlib import image

from libs.runtime.settings import RuntimeSettings
from tools import bench_sweep
from tools.processes import Platform

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(120)
async def test_quick_sweep_writes_the_curve_points_the_stage_breakdown_and_a_png_chart(
    platform: Platform, e2e_settings: RuntimeSettings, tmp_path: Path
) -> None:
    urls = {service: platform.url(service) for service in ("order", "inventory", "billing")}

    await bench_sweep.standalone(e2e_settings, urls, tmp_path, quick=True)

    written, chart_head, chart_shape = await asyncio.to_thread(read_results, tmp_path)
    assert {"orders_per_s", "rate_at_70pct", "sweep", "breakdown", "latency_curve_png"} <= written.keys()
    points = written["sweep"]
    assert [p["offered_per_s"] for p in points] == sorted(p["offered_per_s"] for p in points)
    assert len(points) == len(bench_sweep.QUICK_FRACTIONS)
    for point in points:
        assert {"offered_per_s", "confirmed_per_s", "confirmed_share", "p50_ms", "p99_ms", "breakdown"} <= (
            point.keys()
        )
    lowest = points[0]  # well below the peak: every order confirmed, both percentiles known
    assert lowest["confirmed_share"] == 1.0, lowest
    assert 0 < lowest["p50_ms"] <= lowest["p99_ms"], lowest

    breakdown = written["breakdown"]
    assert [row["stage"] for row in breakdown["stages"]] == list(bench_sweep.STAGES)
    for band in ("median_order", "p99_order"):
        stages = [row[f"{band}_ms"] for row in breakdown["stages"]]
        assert all(ms is not None and ms >= -5 for ms in stages), (band, breakdown)  # clock jitter only
        # Every milestone found on every averaged order's timeline: the stages add up to its latency.
        assert sum(stages) == pytest.approx(breakdown["total_ms"][band], abs=1.0), (band, breakdown)

    assert Path(written["latency_curve_png"]) == tmp_path / "latency-curve.png"
    assert chart_head == PNG_SIGNATURE
    height, width, _ = chart_shape
    assert height >= 300 and width >= 600


def read_results(out: Path) -> tuple[dict[str, Any], bytes, tuple[int, ...]]:
    """sweep.json, the chart's first bytes and its size once decoded as a PNG."""
    chart = out / "latency-curve.png"
    return json.loads((out / "sweep.json").read_text()), chart.read_bytes()[:8], image.imread(chart).shape


def test_stages_follow_the_time_each_milestone_was_reached_and_add_up_to_the_latency() -> None:
    """Parallel steps: the invoice before the stock, the payment in the stock's transaction."""
    timeline = [
        {"at": "2026-01-01T00:00:00.010+00:00", "type": "OrderPlaced"},
        {"at": "2026-01-01T00:00:00.010+00:00", "type": "OrderApproved"},
        {"at": "2026-01-01T00:00:00.050+00:00", "type": "OrderInvoiced"},
        {"at": "2026-01-01T00:00:00.120+00:00", "type": "OrderConfirmed"},
        {"at": "2026-01-01T00:00:00.120+00:00", "type": "OrderStockAllocated"},
        {"at": "2026-01-01T00:00:00.120+00:00", "type": "OrderPaymentRecorded"},
    ]
    submitted = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

    stages = bench_sweep.stage_times(timeline, submitted, submitted + 0.2)

    assert {name: round(ms) for name, ms in stages.items()} == {
        "placed": 10,
        "reviewed": 0,
        "invoiced": 40,
        "reserved": 70,  # reached after the invoice: its stage runs from there
        "paid": 0,
        "confirmed": 0,
        "seen by the channel": 80,
    }
    assert sum(stages.values()) == pytest.approx(200)
