"""Fact rows written a layer per statement (services/reporting/adapters/fact_rows.py)."""

from __future__ import annotations

import pytest

from services.reporting.adapters import projections
from services.reporting.adapters.fact_rows import FactRows


def test_a_fact_insert_becomes_one_insert_over_an_array_per_parameter() -> None:
    facts = FactRows(
        "INSERT INTO t (a, b, c, d) VALUES (:x, :y, 'fixed', :x) ON CONFLICT DO NOTHING",
        x="text",
        y="numeric",
    )

    assert facts.bulk_text == (
        "INSERT INTO t (a, b, c, d) SELECT fact.x, fact.y, 'fixed', fact.x"
        " FROM unnest($1::text[], $2::numeric[]) AS fact(x, y) ON CONFLICT DO NOTHING"
    )
    assert facts.columns([("a", 1), ("b", 2)]) == [["a", "b"], [1, 2]]


def test_only_inserts_that_do_nothing_on_conflict_are_fact_rows() -> None:
    # An upsert's second row for a key in one statement is an error, not a no-op.
    with pytest.raises(ValueError, match="insert-only"):
        FactRows("INSERT INTO t (a) VALUES (:a) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a", a="text")
    with pytest.raises(ValueError, match=r"\['b'\]"):
        FactRows("INSERT INTO t (a, b) VALUES (:a, :b) ON CONFLICT DO NOTHING", a="text")


def test_every_fact_table_of_the_projections_is_written_a_layer_per_statement() -> None:
    facts = {
        statement.bulk_text.split()[2]
        for statement in vars(projections).values()
        if isinstance(statement, FactRows)
    }
    assert facts >= {
        "orders",
        "order_lines",
        "order_status_changes",
        "order_shortages",
        "invoices",
        "invoice_lines",
        "payments",
        "refunds",
        "stock_movements",
        "shipments",
        "production_orders",
    }
