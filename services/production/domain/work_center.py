"""Work centres: where operations run, with their daily capacity and calendar.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.domain import AggregateKind, DomainError
from libs.events.base import DomainEvent
from libs.events.production import WorkCalendar, WorkCenterRegistered


@dataclass(frozen=True)
class WorkCenter:
    code: str = ""
    name: str = ""
    capacity_minutes_per_day: int = 0
    calendar: WorkCalendar = WorkCalendar()

    @property
    def exists(self) -> bool:
        return bool(self.code)


def evolve(state: WorkCenter, event: DomainEvent) -> WorkCenter:
    if isinstance(event, WorkCenterRegistered):
        return WorkCenter(event.code, event.name, event.capacity_minutes_per_day, event.calendar)
    return state


WORK_CENTER = AggregateKind[WorkCenter]("work_center", WorkCenter, evolve)


def decide_register(
    state: WorkCenter, code: str, name: str, capacity_minutes_per_day: int, calendar: WorkCalendar
) -> list[DomainEvent]:
    """Register a work centre: nothing if registered before with exactly this; refused,
    naming the differences, if registered with something else."""
    registered = WorkCenterRegistered(
        code=code, name=name, capacity_minutes_per_day=capacity_minutes_per_day, calendar=calendar
    )
    if not state.exists:
        return [registered]
    again = evolve(WorkCenter(), registered)
    if again == state:
        return []
    differences = [
        field
        for field in ("name", "capacity_minutes_per_day", "calendar")
        if getattr(again, field) != getattr(state, field)
    ]
    raise DomainError(
        "work_center_exists",
        f"work centre {code} is registered with another {', '.join(differences)}",
    )
