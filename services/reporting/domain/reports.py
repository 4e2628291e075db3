"""The reports' parameters and the rules that shape their rows: what may be grouped or ranked
by, the period, the funnel's stages, the ageing buckets. Pure: the queries that compute the
figures live in adapters/queries.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from libs.domain import InvalidRequest

ORDER_DIMENSIONS = ("status", "customer", "product", "region", "channel", "warehouse", "day", "week", "month")
RANKING_DIMENSIONS = ("product", "customer", "region")
MAX_TOP = 1000
# The funnel, in order: an order that reached a stage passed every stage before it.
FUNNEL_STAGES = ("placed", "confirmed", "shipped", "delivered", "completed")
# Days past due, inclusive bounds: 0-30, 31-60, 61-90, over 90 (not yet due: not_due).
AGEING_BUCKETS = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("over_90", 91, None))
RATE_PLACES = Decimal("0.0001")

OrderDimension = Literal[
    "status", "customer", "product", "region", "channel", "warehouse", "day", "week", "month"
]


class InvalidParameter(InvalidRequest):
    """A report parameter that cannot be used: answered 422, naming the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__("invalid_parameter", f"{parameter}: {message}")
        self.details = {"errors": [{"field": parameter, "message": message}]}


@dataclass(frozen=True)
class Period:
    """[start, end): either bound may be open."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, start: datetime | None, end: datetime | None) -> Period:
        """A time without a zone (a bare date: its midnight) is taken as UTC."""
        start, end = in_utc(start), in_utc(end)
        if start is not None and end is not None and end <= start:
            raise InvalidParameter("to", "must be after from")
        return cls(start, end)


def in_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def group_by(raw: str | None) -> tuple[str, ...]:
    """`group_by=region,month`: the dimensions, in the order given, each once."""
    if raw is None or not raw.strip():
        return ()
    names = [name.strip() for name in raw.split(",")]
    unknown = [name for name in names if name not in ORDER_DIMENSIONS]
    if unknown:
        raise InvalidParameter(
            "group_by",
            f"unknown {', '.join(map(repr, unknown))}; one or more of {', '.join(ORDER_DIMENSIONS)}",
        )
    if len(set(names)) != len(names):
        raise InvalidParameter("group_by", "a dimension is named twice")
    return tuple(names)


def ranking_dimension(raw: str) -> str:
    if raw not in RANKING_DIMENSIONS:
        raise InvalidParameter("by", f"one of {', '.join(RANKING_DIMENSIONS)}, not {raw!r}")
    return raw


def top(raw: int) -> int:
    if not 1 <= raw <= MAX_TOP:
        raise InvalidParameter("top", f"from 1 to {MAX_TOP}")
    return raw


def rate(part: int, whole: int) -> Decimal | None:
    """part / whole to four places (None when there is no whole)."""
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    orders: int
    conversion_from_previous: Decimal | None
    conversion_from_placed: Decimal | None


def funnel(reached: dict[str, int]) -> list[FunnelStage]:
    """The funnel's rows from how many orders reached each stage."""
    rows = []
    placed = reached.get("placed", 0)
    previous = placed
    for stage in FUNNEL_STAGES:
        count = reached.get(stage, 0)
        rows.append(FunnelStage(stage, count, rate(count, previous), rate(count, placed)))
        previous = count
    return rows


def ageing_bucket(days_past_due: int) -> str:
    """The bucket of an invoice `days_past_due` days after its due date (negative: not due)."""
    if days_past_due < 0:
        return "not_due"
    for name, low, high in AGEING_BUCKETS:
        if days_past_due >= low and (high is None or days_past_due <= high):
            return name
    raise AssertionError("unreachable")
