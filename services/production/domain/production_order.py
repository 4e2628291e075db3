"""A production order: make a quantity of a product, operation by operation, checked.

Statuses: planned -> awaiting_components (components short) -> released (components reserved)
-> in_progress (a task started) -> completed; or cancelled. Each operation of the product's
BOM is a task with its own progress. Units go through the operations in order: an operation
can only work on what the one before it handed on, and an inspected operation (the last one
always is: every completion is checked) hands on only the units its quality checks passed.
A failed check sends its units back through the operation (rework) or writes them off
(scrap). When every task is done and every unit is checked, passed + scrapped = quantity and
the order is completed.

Pure: no I/O, no clock (time comes in as arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from libs.domain import AggregateKind, DomainError, InvalidRequest, NotFound
from libs.events.base import DomainEvent
from libs.events.production import (
    Disposition,
    OperationPlan,
    Origin,
    PlannedOperation,
    ProductionAwaitingComponents,
    ProductionCancelled,
    ProductionCompleted,
    ProductionComponentsConsumed,
    ProductionGoodsReceived,
    ProductionOrderCreated,
    ProductionProgressed,
    ProductionReleased,
    ProductionScheduled,
    ProductionTaskAssigned,
    ProductionTaskCompleted,
    ProductionTaskStarted,
    QualityCheckFailed,
    QualityCheckPassed,
)
from libs.events.values import Allocation, SkuQuantity
from services.production.domain.bom import Bom, components_for

Status = Literal["new", "planned", "awaiting_components", "released", "in_progress", "completed", "cancelled"]
TaskStatus = Literal["pending", "in_progress", "done"]
OPEN = frozenset({"planned", "awaiting_components", "released", "in_progress"})
# Cancelled with its sales order without a second thought: nothing has been made yet.
UNSTARTED = frozenset({"planned", "awaiting_components", "released"})


@dataclass(frozen=True)
class Task:
    task_id: str
    operation: str
    work_center: str
    setup_minutes: Decimal
    minutes_per_unit: Decimal
    inspected: bool
    assignee: str | None = None
    status: TaskStatus = "pending"
    done: int = 0
    passed: int = 0  # checked and passed here
    scrapped: int = 0  # checked, failed and written off here
    planned_start: datetime | None = None
    planned_finish: datetime | None = None

    @property
    def unchecked(self) -> int:
        return self.done - self.passed - self.scrapped

    def output(self) -> int:
        """Units this operation has handed on to the next."""
        return self.passed if self.inspected else self.done


@dataclass(frozen=True)
class QualityCheck:
    check_id: str
    task_id: str
    operation: str
    passed: int
    failed: int
    disposition: Disposition | None
    note: str
    measurements: Mapping[str, Decimal]


@dataclass(frozen=True)
class ProductionOrder:
    production_order_id: str = ""
    sku: str = ""
    quantity: int = 0
    warehouse: str = ""
    due: datetime | None = None
    origin: Origin = "manual"
    sales_order_id: str | None = None
    parent_production_order_id: str | None = None
    replaces: str | None = None
    components: tuple[SkuQuantity, ...] = ()
    status: Status = "new"
    tasks: tuple[Task, ...] = ()
    checks: tuple[QualityCheck, ...] = ()
    allocations: tuple[Allocation, ...] = ()
    missing: tuple[SkuQuantity, ...] = ()
    expected_finish: datetime | None = None
    late: bool = False
    passed: int = 0
    scrapped: int = 0
    consumed: bool = False
    received: bool = False
    cancel_reason: str | None = None

    @property
    def exists(self) -> bool:
        return self.status != "new"

    def task_index(self, task_id: str) -> int:
        for index, task in enumerate(self.tasks):
            if task.task_id == task_id:
                return index
        raise NotFound("unknown_task", f"production order {self.production_order_id} has no task {task_id}")

    def expected_input(self, index: int) -> int:
        """Units operation `index` will work on in all: the quantity less what was scrapped
        before it."""
        return self.quantity - sum(t.scrapped for t in self.tasks[:index])

    def available_input(self, index: int) -> int:
        """Units operation `index` may have worked on by now: what the one before handed on."""
        return self.quantity if index == 0 else self.tasks[index - 1].output()

    def remaining_minutes(self, index: int) -> Decimal:
        """Work left on an operation: its setup if not begun, and its units not done yet."""
        task = self.tasks[index]
        setup = task.setup_minutes if task.done == 0 and task.status != "done" else Decimal(0)
        return setup + task.minutes_per_unit * max(self.expected_input(index) - task.done, 0)


def task_id_of(production_order_id: str, index: int) -> str:
    return f"{production_order_id}.{index + 1}"


def production_order_of_task(task_id: str) -> str:
    """Tasks are named after their production order ("PO-123.2"): no lookup needed."""
    order_id, dot, seq = task_id.rpartition(".")
    if not dot or not seq.isdigit():
        raise NotFound("unknown_task", f"no task {task_id}")
    return order_id


def _with_task(state: ProductionOrder, index: int, **changes: object) -> ProductionOrder:
    tasks = list(state.tasks)
    tasks[index] = replace(tasks[index], **changes)  # type: ignore[arg-type]
    return replace(state, tasks=tuple(tasks))


def evolve(state: ProductionOrder, event: DomainEvent) -> ProductionOrder:  # noqa: C901, PLR0911 - one case per event
    match event:
        case ProductionOrderCreated():
            last = len(event.operations) - 1
            return ProductionOrder(
                production_order_id=event.production_order_id,
                sku=event.sku,
                quantity=event.quantity,
                warehouse=event.warehouse,
                due=event.due,
                origin=event.origin,
                sales_order_id=event.sales_order_id,
                parent_production_order_id=event.parent_production_order_id,
                replaces=event.replaces,
                components=event.components,
                status="planned",
                tasks=tuple(
                    Task(
                        o.task_id,
                        o.operation,
                        o.work_center,
                        o.setup_minutes,
                        o.minutes_per_unit,
                        o.inspection or i == last,
                    )
                    for i, o in enumerate(event.operations)
                ),
            )
        case ProductionAwaitingComponents():
            return replace(state, status="awaiting_components", missing=event.missing)
        case ProductionReleased():
            return replace(state, status="released", allocations=event.allocations, missing=())
        case ProductionScheduled():
            plans = {p.task_id: p for p in event.operations}
            tasks = tuple(
                replace(
                    t,
                    planned_start=plans[t.task_id].planned_start,
                    planned_finish=plans[t.task_id].planned_finish,
                )
                if t.task_id in plans
                else t
                for t in state.tasks
            )
            return replace(state, tasks=tasks, expected_finish=event.expected_finish, late=event.late)
        case ProductionTaskAssigned():
            return _with_task(state, state.task_index(event.task_id), assignee=event.assignee)
        case ProductionTaskStarted():
            state = _with_task(state, state.task_index(event.task_id), status="in_progress")
            return replace(state, status="in_progress")
        case ProductionProgressed():
            return _with_task(state, state.task_index(event.task_id), done=event.quantity_done)
        case ProductionTaskCompleted():
            return _with_task(state, state.task_index(event.task_id), status="done")
        case QualityCheckPassed() | QualityCheckFailed():
            return _checked(state, event)
        case ProductionCompleted():
            return replace(state, status="completed", passed=event.passed, scrapped=event.scrapped)
        case ProductionComponentsConsumed():
            return replace(state, consumed=True, allocations=())
        case ProductionGoodsReceived():
            return replace(state, received=True)
        case ProductionCancelled():
            return replace(state, status="cancelled", cancel_reason=event.reason)
    return state


def _checked(state: ProductionOrder, event: QualityCheckPassed | QualityCheckFailed) -> ProductionOrder:
    index = state.task_index(event.task_id)
    task = state.tasks[index]
    failed = event.failed if isinstance(event, QualityCheckFailed) else 0
    disposition = event.disposition if isinstance(event, QualityCheckFailed) else None
    check = QualityCheck(
        event.check_id,
        event.task_id,
        event.operation,
        event.passed,
        failed,
        disposition,
        event.note,
        event.measurements,
    )
    state = replace(state, checks=(*state.checks, check))
    changes: dict[str, object] = {"passed": task.passed + event.passed}
    if disposition == "rework":
        # The failed units go back through the operation: not done until they are again.
        changes["done"] = task.done - failed
        if task.status == "done":
            changes["status"] = "in_progress"
    elif disposition == "scrap":
        changes["scrapped"] = task.scrapped + failed
    return _with_task(state, index, **changes)


PRODUCTION_ORDER = AggregateKind[ProductionOrder]("production_order", ProductionOrder, evolve)


# -- decisions ---------------------------------------------------------------------------------


def decide_create(
    state: ProductionOrder,
    production_order_id: str,
    bom: Bom,
    quantity: int,
    warehouse: str,
    due: datetime,
    origin: Origin,
    sales_order_id: str | None = None,
    parent_production_order_id: str | None = None,
    replaces: str | None = None,
) -> list[DomainEvent]:
    """A new production order for `quantity` of the BOM's product; nothing if it exists (a
    repeated request with the same id)."""
    if state.exists:
        return []
    if not bom.exists:
        raise InvalidRequest("not_manufactured", f"{bom.sku or 'this SKU'} has no bill of materials")
    created = ProductionOrderCreated(
        production_order_id=production_order_id,
        sku=bom.sku,
        quantity=quantity,
        warehouse=warehouse,
        due=due,
        origin=origin,
        sales_order_id=sales_order_id,
        parent_production_order_id=parent_production_order_id,
        replaces=replaces,
        components=components_for(bom, quantity),
        operations=tuple(
            PlannedOperation(
                task_id=task_id_of(production_order_id, i),
                operation=o.name,
                work_center=o.work_center,
                setup_minutes=o.setup_minutes,
                minutes_per_unit=o.minutes_per_unit,
                inspection=o.inspection,
            )
            for i, o in enumerate(bom.operations)
        ),
    )
    if not created.components:
        # Nothing to take from stock: it may be made at once.
        return [created, ProductionReleased(production_order_id=production_order_id)]
    return [created]


def decide_components_reserved(
    state: ProductionOrder, allocations: tuple[Allocation, ...]
) -> list[DomainEvent]:
    if state.status not in ("planned", "awaiting_components"):
        return []  # a repeated reply, or one after the order was cancelled
    return [ProductionReleased(production_order_id=state.production_order_id, allocations=allocations)]


def decide_components_short(state: ProductionOrder, missing: tuple[SkuQuantity, ...]) -> list[DomainEvent]:
    if state.status != "planned":
        return []
    return [ProductionAwaitingComponents(production_order_id=state.production_order_id, missing=missing)]


def decide_components_consumed(state: ProductionOrder, consumed: tuple[Allocation, ...]) -> list[DomainEvent]:
    if not state.exists or state.consumed:
        return []
    return [ProductionComponentsConsumed(production_order_id=state.production_order_id, consumed=consumed)]


def decide_goods_received(state: ProductionOrder, receipt_id: str, quantity: int) -> list[DomainEvent]:
    if state.status != "completed" or state.received:
        return []
    return [
        ProductionGoodsReceived(
            production_order_id=state.production_order_id, receipt_id=receipt_id, quantity=quantity
        )
    ]


def _require_open(state: ProductionOrder, doing: str) -> None:
    if not state.exists:
        raise NotFound("unknown_production_order", f"no production order {state.production_order_id}")
    if state.status not in OPEN:
        raise DomainError(
            "production_order_closed",
            f"production order {state.production_order_id} is {state.status}: cannot {doing}",
        )


def _require_workable(state: ProductionOrder, doing: str) -> None:
    _require_open(state, doing)
    if state.status not in ("released", "in_progress"):
        raise DomainError(
            "not_released",
            f"production order {state.production_order_id} is {state.status}: its components are not"
            f" reserved, so it cannot {doing} yet",
        )


def decide_assign(state: ProductionOrder, task_id: str, assignee: str) -> list[DomainEvent]:
    _require_open(state, "assign tasks")
    task = state.tasks[state.task_index(task_id)]
    if task.assignee == assignee:
        return []
    return [
        ProductionTaskAssigned(
            production_order_id=state.production_order_id, task_id=task_id, assignee=assignee
        )
    ]


def decide_start(state: ProductionOrder, task_id: str) -> list[DomainEvent]:
    _require_workable(state, "start tasks")
    task = state.tasks[state.task_index(task_id)]
    if task.status != "pending":
        return []  # started before (or done): nothing new
    return [ProductionTaskStarted(production_order_id=state.production_order_id, task_id=task_id)]


def decide_progress(state: ProductionOrder, task_id: str, quantity_done: int) -> list[DomainEvent]:
    """Units done so far on the task (cumulative): never more than the order's quantity, nor
    than the operation before handed on, never fewer than reported before."""
    _require_workable(state, "record progress")
    index = state.task_index(task_id)
    task = state.tasks[index]
    if task.status != "in_progress":
        raise DomainError(
            "task_not_started" if task.status == "pending" else "task_done",
            f"task {task_id} is {task.status}",
        )
    if quantity_done > state.quantity:
        raise InvalidRequest(
            "above_quantity",
            f"quantity_done {quantity_done} is above the production order's quantity {state.quantity}",
        )
    available = state.available_input(index)
    if quantity_done > available:
        raise InvalidRequest(
            "above_available",
            f"quantity_done {quantity_done} is more than operation {task.operation} has been handed"
            f" ({available} so far)",
        )
    if quantity_done < task.done:
        raise InvalidRequest(
            "progress_backwards", f"quantity_done is cumulative: {task.done} were reported done before"
        )
    if quantity_done == task.done:
        return []
    return [
        ProductionProgressed(
            production_order_id=state.production_order_id, task_id=task_id, quantity_done=quantity_done
        )
    ]


def decide_complete_task(state: ProductionOrder, task_id: str) -> list[DomainEvent]:
    _require_workable(state, "complete tasks")
    index = state.task_index(task_id)
    task = state.tasks[index]
    if task.status == "done":
        return []
    if task.status == "pending":
        raise DomainError("task_not_started", f"task {task_id} has not been started")
    expected = state.expected_input(index)
    if task.done != expected:
        raise DomainError(
            "task_unfinished",
            f"task {task_id} has {task.done} of {expected} units done: record its progress first",
        )
    events: list[DomainEvent] = [
        ProductionTaskCompleted(production_order_id=state.production_order_id, task_id=task_id)
    ]
    return events + _completion(_folded(state, events))


def decide_quality_check(
    state: ProductionOrder,
    check_id: str,
    operation: str | None,
    passed: int,
    failed: int,
    disposition: Disposition | None,
    measurements: Mapping[str, Decimal],
    note: str,
) -> list[DomainEvent]:
    """A quality check of units an inspected operation (by default the last: the completion
    check) has done and nobody has checked yet."""
    _require_workable(state, "record quality checks")
    index = len(state.tasks) - 1 if operation is None else _operation_index(state, operation)
    task = state.tasks[index]
    if not task.inspected:
        raise InvalidRequest("not_inspected", f"operation {task.operation} is not marked for inspection")
    if passed + failed == 0:
        raise InvalidRequest("empty_check", "a quality check counts at least one unit (passed or failed)")
    if failed and disposition is None:
        raise InvalidRequest("disposition_required", "failed units need a disposition: scrap or rework")
    if passed + failed > task.unchecked:
        raise InvalidRequest(
            "more_than_unchecked",
            f"operation {task.operation} has {task.unchecked} units done and not checked;"
            f" this check counts {passed + failed}",
        )
    check: DomainEvent
    if failed and disposition is not None:
        check = QualityCheckFailed(
            production_order_id=state.production_order_id,
            check_id=check_id,
            task_id=task.task_id,
            operation=task.operation,
            passed=passed,
            measurements=dict(measurements),
            note=note,
            failed=failed,
            disposition=disposition,
            reason=note or f"{failed} of {passed + failed} units failed {task.operation}",
        )
    else:
        check = QualityCheckPassed(
            production_order_id=state.production_order_id,
            check_id=check_id,
            task_id=task.task_id,
            operation=task.operation,
            passed=passed,
            measurements=dict(measurements),
            note=note,
        )
    return [check, *_completion(_folded(state, [check]))]


def _operation_index(state: ProductionOrder, operation: str) -> int:
    for index, task in enumerate(state.tasks):
        if task.operation == operation:
            return index
    raise InvalidRequest(
        "unknown_operation", f"production order {state.production_order_id} has no operation {operation!r}"
    )


def _folded(state: ProductionOrder, events: list[DomainEvent]) -> ProductionOrder:
    for event in events:
        state = evolve(state, event)
    return state


def _completion(state: ProductionOrder) -> list[DomainEvent]:
    """Completed once every task is done and every unit of every inspected operation is
    checked: then passed + scrapped = quantity."""
    if any(t.status != "done" or (t.inspected and t.unchecked) for t in state.tasks):
        return []
    last = state.tasks[-1]
    scrapped = sum(t.scrapped for t in state.tasks)
    if last.passed + scrapped != state.quantity:  # pragma: no cover - the rules above make it so
        raise AssertionError(f"{state.production_order_id}: {last.passed} passed + {scrapped} scrapped")
    return [
        ProductionCompleted(
            production_order_id=state.production_order_id,
            sku=state.sku,
            warehouse=state.warehouse,
            quantity=state.quantity,
            passed=last.passed,
            scrapped=scrapped,
            receipt_id=receipt_id_of(state.production_order_id),
        )
    ]


def receipt_id_of(production_order_id: str) -> str:
    """One receipt per production order: inventory books it once whatever is resent."""
    return f"production:{production_order_id}"


def decide_cancel(state: ProductionOrder, reason: str, stop_in_progress: bool = False) -> list[DomainEvent]:
    """Cancel an order nothing has been made for yet (and release its components); one in
    progress goes on into stock unless `stop_in_progress`. Finished or cancelled: nothing."""
    if state.status not in UNSTARTED and not (stop_in_progress and state.status == "in_progress"):
        return []
    return [
        ProductionCancelled(
            production_order_id=state.production_order_id,
            reason=reason,
            components_released=bool(state.components) and not state.consumed,
        )
    ]


def decide_schedule(
    state: ProductionOrder, plans: tuple[OperationPlan, ...], expected_finish: datetime | None
) -> list[DomainEvent]:
    """Record a new plan for the order's operations, if it differs from the one it has."""
    if state.status not in ("released", "in_progress"):
        return []
    late = expected_finish is None or (state.due is not None and expected_finish > state.due)
    current = {t.task_id: (t.planned_start, t.planned_finish) for t in state.tasks}
    unchanged = (
        all(current.get(p.task_id) == (p.planned_start, p.planned_finish) for p in plans)
        and state.expected_finish == expected_finish
        and state.late == late
    )
    if unchanged:
        return []
    return [
        ProductionScheduled(
            production_order_id=state.production_order_id,
            operations=plans,
            expected_finish=expected_finish,
            late=late,
        )
    ]
