"""Production HTTP API: work centres, bills of materials, production orders, the schedule,
tasks and quality checks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.domain import NotFound
from libs.events.production import (
    BomComponent,
    BomOperation,
    ComponentQuantity,
    Counted,
    DayMinutes,
    Disposition,
    Measurement,
    MeasurementName,
    Minutes,
    OperationName,
    ScrapRate,
    WorkCalendar,
    WorkCenterCode,
)
from libs.events.values import Note, Quantity, Sku, WarehouseCode
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.production.adapters import queries
from services.production.app import handlers
from services.production.app.handlers import ProductionPolicy
from services.production.domain.bom import explode
from services.production.domain.production_order import ProductionOrder
from services.production.domain.saga import COMPENSATIONS, PRODUCTION_SAGA

router = APIRouter(tags=["production"])

Reader = Annotated[Principal, requires("production:read")]
Planner = Annotated[Principal, requires("production:manage")]
MAX_LIST = 500


class WorkCenterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: WorkCenterCode
    name: str = Field(min_length=1, max_length=200)
    capacity_minutes_per_day: DayMinutes
    calendar: WorkCalendar = WorkCalendar()


class WorkCenterView(BaseModel):
    code: str
    name: str
    capacity_minutes_per_day: int
    calendar: WorkCalendar


class ComponentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    quantity: ComponentQuantity


class OperationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OperationName
    work_center: WorkCenterCode
    setup_minutes: Minutes = Decimal(0)
    minutes_per_unit: Minutes = Decimal(0)
    inspection: bool = False


class BomIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    components: list[ComponentIn] = Field(max_length=200)
    output_quantity: Quantity = 1
    scrap_rate: ScrapRate = Decimal(0)
    operations: list[OperationIn] = Field(min_length=1, max_length=50)


class ProductionOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    quantity: Quantity
    warehouse: WarehouseCode
    due: datetime = Field(description="When it is needed (a date means its midnight UTC)")

    @field_validator("due")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(min_length=1, max_length=200)


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity_done: Counted = Field(description="Units done so far on the task (cumulative)")


class QualityCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: OperationName | None = Field(
        default=None, description="The inspected operation; absent: the last one (the completion check)"
    )
    passed: Counted
    failed: Counted = 0
    disposition: Disposition | None = Field(default=None, description="What happens to failed units")
    measurements: dict[MeasurementName, Measurement] = Field(default_factory=dict, max_length=50)
    note: Note = ""


def _policy(request: Request) -> ProductionPolicy:
    policy: ProductionPolicy = request.app.state.production_policy
    return policy


# -- work centres and BOMs -----------------------------------------------------------------------


@router.post(
    "/work-centers",
    status_code=201,
    response_model=WorkCenterView,
    responses={
        **answers(200, WorkCenterView, "Registered before with exactly this: nothing changed"),
        **problems(409, on_409="Registered before with another name, capacity or calendar"),
    },
)
async def register_work_center(
    body: WorkCenterIn, request: Request, response: Response, principal: Planner
) -> dict[str, Any]:
    created = await runtime_of(request).execute(
        context_for(principal, f"work-center:{body.code}"),
        lambda uow: handlers.register_work_center(
            uow, body.code, body.name, body.capacity_minutes_per_day, body.calendar
        ),
    )
    if not created:
        response.status_code = 200
    return body.model_dump(mode="json")


@router.get("/work-centers", response_model=list[WorkCenterView])
async def list_work_centers(request: Request, _: Reader) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return [queries.work_center_view(c) for c in (await queries.work_centers(conn)).values()]


async def _bom_view(request: Request, sku: str) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        boms = await queries.boms(conn)
    bom = boms.get(sku)
    if bom is None:
        raise NotFound("unknown_bom", f"{sku} has no bill of materials")
    return {
        "sku": sku,
        "components": [c.model_dump(mode="json") for c in bom.components],
        "output_quantity": bom.output_quantity,
        "scrap_rate": str(bom.scrap_rate),
        "operations": [o.model_dump(mode="json") for o in bom.operations],
        "tree": explode(sku, boms),
    }


@router.put(
    "/boms/{sku}", responses=problems(422, on_422="A cycle, an unknown work centre, a component twice")
)
async def define_bom(sku: Sku, body: BomIn, request: Request, principal: Planner) -> dict[str, Any]:
    """Define (or replace) the SKU's bill of materials. Refused (422, naming the cycle) if the
    SKU would contain itself, directly or through its components."""
    await runtime_of(request).execute(
        context_for(principal, f"bom:{sku}"),
        lambda uow: handlers.define_bom(
            uow,
            sku,
            [BomComponent(**c.model_dump()) for c in body.components],
            body.output_quantity,
            body.scrap_rate,
            [BomOperation(**o.model_dump()) for o in body.operations],
        ),
    )
    return await _bom_view(request, sku)


@router.get("/boms/{sku}", responses=problems(404))
async def bom_of(sku: str, request: Request, _: Reader) -> dict[str, Any]:
    """The BOM and its exploded tree: what one unit needs at every level, and in all."""
    return await _bom_view(request, sku)


# -- production orders ----------------------------------------------------------------------------


def _detail(state: ProductionOrder, history: list[Any], chain: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "production_order_id": state.production_order_id,
        "sku": state.sku,
        "quantity": state.quantity,
        "warehouse": state.warehouse,
        "due": state.due.isoformat() if state.due else None,
        "origin": state.origin,
        "status": state.status,
        "late": state.late,
        "expected_finish": state.expected_finish.isoformat() if state.expected_finish else None,
        "passed": state.passed,
        "scrapped": state.scrapped,
        "sales_orders": [state.sales_order_id] if state.sales_order_id else [],
        "parent_production_order_id": state.parent_production_order_id,
        "replaces": state.replaces,
        "component_orders": [
            c for c in chain if c["parent_production_order_id"] == state.production_order_id
        ],
        "replaced_by": [c for c in chain if c["replaces"] == state.production_order_id],
        "components": {
            "needed": [c.model_dump() for c in state.components],
            "reserved": [a.model_dump() for a in state.allocations],
            "missing": [m.model_dump() for m in state.missing],
            "consumed": state.consumed,
        },
        "goods_received": state.received,
        "operations": [
            {
                "task_id": t.task_id,
                "operation": t.operation,
                "work_center": t.work_center,
                "inspection": t.inspected,
                "assignee": t.assignee,
                "status": t.status,
                "quantity_done": t.done,
                "passed": t.passed,
                "scrapped": t.scrapped,
                "planned_start": t.planned_start.isoformat() if t.planned_start else None,
                "planned_finish": t.planned_finish.isoformat() if t.planned_finish else None,
            }
            for t in state.tasks
        ],
        "quality_checks": [
            {
                "check_id": c.check_id,
                "task_id": c.task_id,
                "operation": c.operation,
                "passed": c.passed,
                "failed": c.failed,
                "disposition": c.disposition,
                "measurements": {k: str(v) for k, v in c.measurements.items()},
                "note": c.note,
            }
            for c in state.checks
        ],
        "cancel_reason": state.cancel_reason,
        "history": [
            {
                "at": e.occurred_at.isoformat(),
                "type": e.event_type,
                "actor": e.actor,
                "version": e.aggregate_version,
                "details": {k: v for k, v in e.payload.items() if k != "production_order_id"},
            }
            for e in history
        ],
    }


async def _production_order(request: Request, production_order_id: str) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        state, history = await queries.load_order(conn, production_order_id)
        if not state.exists:
            raise NotFound("unknown_production_order", f"no production order {production_order_id}")
        chain = await queries.children(conn, production_order_id)
    return _detail(state, history, chain)


@router.post("/production-orders", status_code=201, responses=problems(422))
async def create_production_order(
    body: ProductionOrderIn, request: Request, principal: Planner
) -> dict[str, Any]:
    """A production order by hand (make-to-order and make-to-stock ones come from inventory's
    shortages and low-stock alerts by themselves)."""
    state = await runtime_of(request).execute(
        context_for(principal, f"production:{body.sku}"),
        lambda uow: handlers.create_by_hand(uow, body.sku, body.quantity, body.warehouse, body.due),
    )
    return await _production_order(request, state.production_order_id)


@router.get("/production-orders")
async def list_production_orders(
    request: Request,
    _: Reader,
    status: Annotated[str | None, Query(max_length=40)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    order_id: Annotated[str | None, Query(max_length=64, description="The sales order served")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await queries.list_orders(conn, status, sku, order_id, limit)


@router.get("/production-orders/{production_order_id}", responses=problems(404))
async def production_order(production_order_id: str, request: Request, _: Reader) -> dict[str, Any]:
    """With its operations (tasks), quality checks, component reservations, the sales order
    it serves, the production orders of its components and its history."""
    return await _production_order(request, production_order_id)


@router.post(
    "/production-orders/{production_order_id}/quality-checks",
    status_code=201,
    responses=problems(404, 409, 422),
)
async def quality_check(
    production_order_id: str, body: QualityCheckIn, request: Request, principal: Planner
) -> dict[str, Any]:
    check_id = str(uuid4())
    await runtime_of(request).execute(
        context_for(principal, production_order_id),
        lambda uow: handlers.record_quality_check(
            uow,
            production_order_id,
            check_id,
            body.operation,
            body.passed,
            body.failed,
            body.disposition,
            dict(body.measurements),
            body.note,
            _policy(request),
        ),
    )
    return {"check_id": check_id, **await _production_order(request, production_order_id)}


# -- schedule and tasks --------------------------------------------------------------------------------


@router.get("/schedule")
async def schedule(
    request: Request,
    _: Reader,
    work_center: Annotated[str | None, Query(max_length=32)] = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """The planned operations (bars of a Gantt chart) per work centre, and which orders are late."""
    async with runtime_of(request).engine.connect() as conn:
        bars = await queries.schedule(conn, work_center, start, end)
        centres = await queries.work_centers(conn)
    by_centre: dict[str, list[dict[str, Any]]] = {}
    for bar in bars:
        by_centre.setdefault(bar["work_center"], []).append(bar)
    return {
        "work_centers": [
            {**queries.work_center_view(centres[code]), "operations": by_centre.get(code, [])}
            for code in sorted(centres)
            if work_center is None or code == work_center
        ],
        "late": sorted({bar["production_order_id"] for bar in bars if bar["late"]}),
    }


@router.get("/tasks")
async def list_tasks(
    request: Request,
    _: Reader,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    """A worker's list: open tasks, in planned order."""
    async with runtime_of(request).engine.connect() as conn:
        return await queries.list_tasks(conn, assignee, status, limit)


async def _task_view(request: Request, task_id: str, state: ProductionOrder) -> dict[str, Any]:
    detail = await _production_order(request, state.production_order_id)
    task = next(t for t in detail["operations"] if t["task_id"] == task_id)
    return {**task, "production_order_id": state.production_order_id, "production_order_status": state.status}


@router.post("/tasks/{task_id}/assign", responses=problems(404, 409))
async def assign_task(task_id: str, body: AssignIn, request: Request, principal: Planner) -> dict[str, Any]:
    state = await runtime_of(request).execute(
        context_for(principal, task_id),
        lambda uow: handlers.assign_task(uow, task_id, body.assignee, _policy(request)),
    )
    return await _task_view(request, task_id, state)


@router.post("/tasks/{task_id}/start", responses=problems(404, 409))
async def start_task(task_id: str, request: Request, principal: Planner) -> dict[str, Any]:
    state = await runtime_of(request).execute(
        context_for(principal, task_id), lambda uow: handlers.start_task(uow, task_id, _policy(request))
    )
    return await _task_view(request, task_id, state)


@router.post("/tasks/{task_id}/progress", responses=problems(404, 409, 422))
async def record_progress(
    task_id: str, body: ProgressIn, request: Request, principal: Planner
) -> dict[str, Any]:
    state = await runtime_of(request).execute(
        context_for(principal, task_id),
        lambda uow: handlers.record_progress(uow, task_id, body.quantity_done, _policy(request)),
    )
    return await _task_view(request, task_id, state)


@router.post("/tasks/{task_id}/complete", responses=problems(404, 409))
async def complete_task(task_id: str, request: Request, principal: Planner) -> dict[str, Any]:
    state = await runtime_of(request).execute(
        context_for(principal, task_id), lambda uow: handlers.complete_task(uow, task_id, _policy(request))
    )
    return await _task_view(request, task_id, state)


@router.get("/saga", tags=["docs"])
async def saga_definition(_: Reader) -> dict[str, Any]:
    """A production order's steps with inventory, and the compensation."""
    return {
        "steps": [
            {
                "step": s.step,
                "participant": s.participant,
                "request": s.request,
                "succeeds_on": s.succeeds_on,
                "fails_on": s.fails_on,
                "compensation": s.compensation,
                "status_after": s.status_after,
            }
            for s in PRODUCTION_SAGA
        ],
        "compensations": {
            name: {
                "participant": c.participant,
                "command": c.request,
                "completed_by": c.completed_by,
                "when": c.when,
            }
            for name, c in COMPENSATIONS.items()
        },
    }
