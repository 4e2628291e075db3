"""Inline projector: keeps the production query tables in step with the events."""

from __future__ import annotations

import json

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.production import (
    BomDefined,
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
    WorkCenterRegistered,
)
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

_WORK_CENTER = Sql(
    "INSERT INTO work_centers VALUES (:code, :name, :capacity, CAST(:calendar AS jsonb), :at)"
    " ON CONFLICT (code) DO NOTHING"
)
_BOM = Sql(
    "INSERT INTO boms VALUES (:sku, CAST(:components AS jsonb), :output, :scrap, CAST(:operations AS jsonb),"
    " :version, :at) ON CONFLICT (sku) DO UPDATE SET components = EXCLUDED.components,"
    " output_quantity = EXCLUDED.output_quantity, scrap_rate = EXCLUDED.scrap_rate,"
    " operations = EXCLUDED.operations, version = EXCLUDED.version, defined_at = EXCLUDED.defined_at"
)
_CREATE = Sql(
    "INSERT INTO production_orders (production_order_id, sku, quantity, warehouse, due, origin,"
    " sales_order_id, parent_production_order_id, replaces, status, components, created_at, updated_at)"
    " VALUES (:id, :sku, :quantity, :warehouse, :due, :origin, :sales_order_id, :parent, :replaces,"
    " 'planned', CAST(:components AS jsonb), :at, :at) ON CONFLICT DO NOTHING"
)
_TASK = Sql(
    "INSERT INTO production_tasks (task_id, production_order_id, seq, operation, work_center, inspected,"
    " status, updated_at) VALUES (:task_id, :id, :seq, :operation, :work_center, :inspected, 'pending', :at)"
    " ON CONFLICT DO NOTHING"
)
_STATUS = Sql(
    "UPDATE production_orders SET status = :status, updated_at = :at WHERE production_order_id = :id"
)
_AWAITING = Sql(
    "UPDATE production_orders SET status = 'awaiting_components', missing = CAST(:missing AS jsonb),"
    " updated_at = :at WHERE production_order_id = :id"
)
_RELEASED = Sql(
    "UPDATE production_orders SET status = 'released', missing = '[]', updated_at = :at"
    " WHERE production_order_id = :id"
)
_PLAN = Sql(
    "UPDATE production_orders SET late = :late, expected_finish = :finish, updated_at = :at"
    " WHERE production_order_id = :id"
)
_PLAN_TASK = Sql(
    "UPDATE production_tasks SET planned_start = :start, planned_finish = :finish WHERE task_id = :task_id"
)
_ASSIGN = Sql("UPDATE production_tasks SET assignee = :assignee, updated_at = :at WHERE task_id = :task_id")
_TASK_STATUS = Sql("UPDATE production_tasks SET status = :status, updated_at = :at WHERE task_id = :task_id")
_PROGRESS = Sql(
    "UPDATE production_tasks SET quantity_done = :done, updated_at = :at WHERE task_id = :task_id"
)
_REWORK = Sql(
    "UPDATE production_tasks SET quantity_done = quantity_done - :failed,"
    " status = CASE WHEN status = 'done' THEN 'in_progress' ELSE status END, updated_at = :at"
    " WHERE task_id = :task_id"
)
_COMPLETED = Sql(
    "UPDATE production_orders SET status = 'completed', passed = :passed, scrapped = :scrapped,"
    " late = false, updated_at = :at WHERE production_order_id = :id"
)
_CONSUMED = Sql(
    "UPDATE production_orders SET consumed = true, updated_at = :at WHERE production_order_id = :id"
)
_RECEIVED = Sql(
    "UPDATE production_orders SET received = true, updated_at = :at WHERE production_order_id = :id"
)
_CANCELLED = Sql(
    "UPDATE production_orders SET status = 'cancelled', late = false, updated_at = :at"
    " WHERE production_order_id = :id"
)


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:  # noqa: C901 - one case per event
    at = envelope.occurred_at
    if isinstance(event, WorkCenterRegistered):
        params = {
            "code": event.code,
            "name": event.name,
            "capacity": event.capacity_minutes_per_day,
            "calendar": event.calendar.model_dump_json(),
            "at": at,
        }
        writes.add(_WORK_CENTER, params, ("work_center", event.code))
        return
    if isinstance(event, BomDefined):
        params = {
            "sku": event.sku,
            "components": json.dumps([c.model_dump(mode="json") for c in event.components]),
            "output": event.output_quantity,
            "scrap": event.scrap_rate,
            "operations": json.dumps([o.model_dump(mode="json") for o in event.operations]),
            "version": envelope.aggregate_version,
            "at": at,
        }
        writes.add(_BOM, params, ("bom", event.sku))
        return
    production_order_id = getattr(event, "production_order_id", None)
    if production_order_id is None:
        return
    # Every write of a production order (its tasks' rows too) keeps the order of its events.
    row = ("production_order", production_order_id)
    key = {"id": production_order_id, "at": at}
    match event:
        case ProductionOrderCreated():
            writes.add(
                _CREATE,
                {
                    **key,
                    "sku": event.sku,
                    "quantity": event.quantity,
                    "warehouse": event.warehouse,
                    "due": event.due,
                    "origin": event.origin,
                    "sales_order_id": event.sales_order_id,
                    "parent": event.parent_production_order_id,
                    "replaces": event.replaces,
                    "components": json.dumps([c.model_dump(mode="json") for c in event.components]),
                },
                row,
            )
            for seq, operation in enumerate(event.operations, start=1):
                inspected = operation.inspection or seq == len(event.operations)
                params = {
                    **key,
                    "task_id": operation.task_id,
                    "seq": seq,
                    "operation": operation.operation,
                    "work_center": operation.work_center,
                    "inspected": inspected,
                }
                writes.add(_TASK, params, row)
        case ProductionAwaitingComponents():
            missing = json.dumps([m.model_dump(mode="json") for m in event.missing])
            writes.add(_AWAITING, {**key, "missing": missing}, row)
        case ProductionReleased():
            writes.add(_RELEASED, key, row)
        case ProductionScheduled():
            writes.add(_PLAN, {**key, "late": event.late, "finish": event.expected_finish}, row)
            for plan in event.operations:
                params = {"task_id": plan.task_id, "start": plan.planned_start, "finish": plan.planned_finish}
                writes.add(_PLAN_TASK, params, row)
        case ProductionTaskAssigned():
            writes.add(_ASSIGN, {"task_id": event.task_id, "assignee": event.assignee, "at": at}, row)
        case ProductionTaskStarted():
            writes.add(_TASK_STATUS, {"task_id": event.task_id, "status": "in_progress", "at": at}, row)
            writes.add(_STATUS, {**key, "status": "in_progress"}, row)
        case ProductionProgressed():
            writes.add(_PROGRESS, {"task_id": event.task_id, "done": event.quantity_done, "at": at}, row)
        case ProductionTaskCompleted():
            writes.add(_TASK_STATUS, {"task_id": event.task_id, "status": "done", "at": at}, row)
        case QualityCheckFailed() if event.disposition == "rework":
            writes.add(_REWORK, {"task_id": event.task_id, "failed": event.failed, "at": at}, row)
        case QualityCheckPassed() | QualityCheckFailed():
            pass  # the checks are read from the production order's events
        case ProductionCompleted():
            writes.add(_COMPLETED, {**key, "passed": event.passed, "scrapped": event.scrapped}, row)
        case ProductionComponentsConsumed():
            writes.add(_CONSUMED, key, row)
        case ProductionGoodsReceived():
            writes.add(_RECEIVED, key, row)
        case ProductionCancelled():
            writes.add(_CANCELLED, key, row)
