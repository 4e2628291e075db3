"""Finite-capacity scheduling: released production orders on their work centres.

Orders go in by earliest due date (then by id, so a tie always plans the same way). Each
order's operations run in sequence; each operation is placed on its work centre after
everything placed there before it, in the centre's working windows (its calendar's working
days, from `day_start` for `capacity_minutes_per_day`), and after the previous operation of
the same order finishes. An order whose last operation finishes after its due date is late.

Pure: no I/O, no clock (`now` comes in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from libs.events.production import OperationPlan
from services.production.domain.production_order import ProductionOrder
from services.production.domain.work_center import WorkCenter

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead a work centre is searched for capacity before an operation is called
# unplannable (a centre with no capacity at all, or a calendar closed for good).
HORIZON_DAYS = 3 * 366


@dataclass(frozen=True)
class OrderPlan:
    operations: tuple[OperationPlan, ...]
    expected_finish: datetime | None  # None: it cannot be planned at all


class _Centre:
    """A work centre's working windows and how much of them is taken."""

    def __init__(self, centre: WorkCenter | None, now: datetime) -> None:
        self.capacity = centre.capacity_minutes_per_day if centre else 0
        calendar = centre.calendar if centre else None
        self.working = {WEEKDAYS.index(d) for d in calendar.working_days} if calendar else set()
        self.closed: set[date] = set(calendar.closed) if calendar else set()
        hours, minutes = (int(part) for part in (calendar.day_start if calendar else "00:00").split(":"))
        self.day_start = time(hours, minutes, tzinfo=now.tzinfo)
        self.free_from = now

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        if self.capacity <= 0 or day.weekday() not in self.working or day in self.closed:
            return None
        start = datetime.combine(day, self.day_start)
        return start, start + timedelta(minutes=self.capacity)

    def place(self, earliest: datetime, minutes: int) -> tuple[datetime, datetime] | None:
        """Book `minutes` from `earliest` on: (start, finish), or None beyond the horizon."""
        at = max(earliest, self.free_from)
        if minutes == 0:
            return at, at
        start: datetime | None = None
        left = minutes
        day = at.date() - timedelta(days=1)  # a window may begin the day before and run past midnight
        for _ in range(HORIZON_DAYS):
            window = self._window(day)
            day += timedelta(days=1)
            if window is None or window[1] <= at:
                continue
            begin = max(at, window[0])
            take = min(left, int((window[1] - begin).total_seconds() // 60))
            if take <= 0:
                continue
            start = start or begin
            left -= take
            at = begin + timedelta(minutes=take)
            if left == 0:
                self.free_from = at
                return start, at
        return None


def schedule(
    orders: Sequence[ProductionOrder], centres: Mapping[str, WorkCenter], now: datetime
) -> dict[str, OrderPlan]:
    """The plan of every released or in-progress order's unfinished operations."""
    workable = [o for o in orders if o.status in ("released", "in_progress")]
    workable.sort(key=lambda o: (o.due or datetime.max.replace(tzinfo=now.tzinfo), o.production_order_id))
    booked: dict[str, _Centre] = {}
    plans: dict[str, OrderPlan] = {}
    for order in workable:
        ready = now
        operations: list[OperationPlan] = []
        finish: datetime | None = now
        for index, task in enumerate(order.tasks):
            if task.status == "done":
                continue
            centre = booked.setdefault(task.work_center, _Centre(centres.get(task.work_center), now))
            minutes = _whole_minutes(order.remaining_minutes(index))
            placed = centre.place(ready, minutes)
            if placed is None:
                finish = None
                break
            operations.append(
                OperationPlan(
                    task_id=task.task_id,
                    operation=task.operation,
                    work_center=task.work_center,
                    planned_start=placed[0],
                    planned_finish=placed[1],
                )
            )
            ready = finish = placed[1]
        plans[order.production_order_id] = OrderPlan(tuple(operations), finish)
    return plans


def _whole_minutes(minutes: Decimal) -> int:
    return math.ceil(minutes)


def behind(order: ProductionOrder, now: datetime) -> bool:
    """An unfinished operation was planned to be finished by now: the plan needs redoing."""
    return order.status in ("released", "in_progress") and any(
        t.status != "done" and t.planned_finish is not None and t.planned_finish < now for t in order.tasks
    )
