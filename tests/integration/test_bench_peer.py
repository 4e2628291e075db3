"""The peer of `make bench` (the order flow on the `eventsourcing` library) takes a handful of
orders through to confirmed on the real PostgreSQL server, with what each step should have left
in its stores, and reports the figures the bench prints."""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal
from uuid import uuid4

import pytest

from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tools import peer_bench
from tools.peer_system import WAREHOUSES, Billing, Inventory, Invoice, Orders

pytestmark = pytest.mark.integration


@pytest.fixture
def peer_settings() -> RuntimeSettings:
    return RuntimeSettings(db_prefix=f"ompeer_{RUN_ID}")


def _database_exists(settings: RuntimeSettings, name: str) -> bool:
    with peer_bench._connect(settings, "postgres") as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.mark.timeout(120)
async def test_peer_confirms_prepaid_and_on_account_orders_reserving_stock_and_charging_credit(
    peer_settings: RuntimeSettings,
) -> None:
    def run() -> None:
        with peer_bench.running_peer(peer_settings, "multi", 4) as (runner, dbname):
            channel = peer_bench.Channel(runner, peer_bench.Mix(skus=5, on_account_share=0.5), "t")
            channel.stock_up(1000)
            channel.grant_credit(12)

            result = peer_bench.closed_loop(channel, 12, 4, timeout=30)

            assert result.outcomes() == {"confirmed": 12}
            orders, billing, inventory = runner.get(Orders), runner.get(Billing), runner.get(Inventory)
            placed = {order_id: orders.get_order(order_id) for order_id in channel.tracked}
            assert {order.status for order in placed.values()} == {"confirmed"}
            terms = {order.payment_terms for order in placed.values()}
            assert terms == {"prepaid", "on_account"}, terms  # both paths taken
            for order_id, order in placed.items():
                invoice = billing.get_invoice(order_id)
                assert invoice.total == order.total > 0
                assert invoice.status == ("paid" if order.payment_terms == "prepaid" else "issued")
            ordered: dict[str, int] = {}
            for order in placed.values():
                for line in order.lines:
                    ordered[line["sku"]] = ordered.get(line["sku"], 0) + int(line["quantity"])
            reserved = {
                sku: sum(inventory.stock_item(sku, code).reserved for code, _ in WAREHOUSES)
                for sku in ordered
            }
            assert reserved == ordered
            assert all(order.allocations for order in placed.values())
            assert _database_exists(peer_settings, dbname)
        assert not _database_exists(peer_settings, dbname)  # its own database, gone after the run

    await asyncio.to_thread(run)


@pytest.mark.timeout(120)
async def test_peer_measure_reports_rate_percentiles_and_durability_the_bench_prints(
    peer_settings: RuntimeSettings,
) -> None:
    parser = argparse.ArgumentParser()
    peer_bench.add_arguments(parser)
    args = parser.parse_args(
        ["--orders", "20", "--warmup", "4", "--threads", "4", "--seconds-at-70", "1", "--skus", "5"]
    )

    result = await asyncio.to_thread(peer_bench.measure, peer_settings, args)

    assert result["outcomes"] == {"confirmed": 20}
    assert result["orders_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["at_70pct"]["outcomes"].keys() == {"confirmed"}
    assert result["rate_at_70pct"] == pytest.approx(result["orders_per_s"] * 0.7, abs=0.1)
    # The same durability as OrderMesh runs under: the server's, reported with the figure.
    assert result["durability"]["fsync"] == "on"
    assert result["durability"]["synchronous_commit"] == "on"
    assert result["library"].startswith("eventsourcing ")


def test_peer_invoice_takes_each_payment_reference_once() -> None:
    invoice = Invoice.issue(
        uuid4(), "prepaid", [{"sku": "A", "quantity": 2, "unit_price": "10.00"}], "pickup"
    )
    assert invoice.total == Decimal("24.00")  # 20.00 net, 20 % tax, no fee for a pickup

    invoice.pay(Decimal("24.00"), "ref-1")
    invoice.pay(Decimal("24.00"), "ref-1")  # the gateway calling back again

    assert invoice.amount_paid == Decimal("24.00")
    assert invoice.status == "paid"
