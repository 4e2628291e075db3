"""The reports' parameters and row rules (services/reporting/domain)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.reporting.domain import reports
from services.reporting.domain.regions import order_region
from services.reporting.domain.reports import InvalidParameter, Period


def test_group_by_dimensions_combine_in_the_order_given() -> None:
    assert reports.group_by("region,month") == ("region", "month")
    assert reports.group_by(" status , channel ") == ("status", "channel")
    assert reports.group_by(None) == ()


@pytest.mark.parametrize("raw", ["colour", "region,colour", "region,region"])
def test_a_bad_group_by_is_refused_naming_the_parameter(raw: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        reports.group_by(raw)
    assert refused.value.status == 422
    assert refused.value.details["errors"][0]["field"] == "group_by"


def test_ranking_and_top_are_checked() -> None:
    assert reports.ranking_dimension("customer") == "customer"
    with pytest.raises(InvalidParameter, match="by"):
        reports.ranking_dimension("warehouse")
    with pytest.raises(InvalidParameter, match="top"):
        reports.top(0)
    assert reports.top(10) == 10


def test_a_period_without_a_zone_is_utc_and_must_not_end_before_it_starts() -> None:
    period = Period.of(datetime(2026, 11, 1), None)
    assert period.start == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidParameter) as refused:
        Period.of(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert refused.value.details["errors"][0]["field"] == "to"


def test_funnel_rates_are_of_the_previous_stage_and_of_placed() -> None:
    rows = reports.funnel({"placed": 4, "confirmed": 3, "shipped": 2, "delivered": 1, "completed": 1})
    assert [r.stage for r in rows] == ["placed", "confirmed", "shipped", "delivered", "completed"]
    assert rows[1].conversion_from_previous == Decimal("0.7500")
    assert rows[2].conversion_from_previous == Decimal("0.6667")
    assert rows[4].conversion_from_placed == Decimal("0.2500")
    assert reports.funnel({})[0].conversion_from_placed is None  # nothing placed: no rate


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-1, "not_due"),
        (0, "0-30"),
        (30, "0-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "over_90"),
        (400, "over_90"),
    ],
)
def test_ageing_buckets(days: int, bucket: str) -> None:
    assert reports.ageing_bucket(days) == bucket


def test_the_region_is_the_shipping_country_else_the_customer_s_region() -> None:
    assert order_region("DE", "north") == "DE"
    assert order_region(None, "north") == "north"
    assert order_region(" ", None) == "unknown"
