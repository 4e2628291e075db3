"""Projector for warehouse operations: stock in transit and adjusted on `stock_levels`,
transfers, stock counts, reorder points and open low-stock alerts.

Writes to a `stock_levels` row name it ("stock", sku, warehouse), as the stock projector does,
so their order holds. A transfer's or a count's lines travel as one JSON array per event, so
an event of 500 lines is one statement, not 500.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from libs.events import Envelope
from libs.events.base import DomainEvent
from libs.events.inventory import (
    LowStockCleared,
    LowStockDetected,
    ReorderPointSet,
    StockAdjusted,
    StockCounted,
    StockCountPosted,
    StockCountStarted,
    StockTransferredIn,
    StockTransferredOut,
    StockTransitWrittenOff,
    TransferCancelled,
    TransferDispatched,
    TransferReceived,
    TransferRequested,
    TransferWrittenOff,
)
from libs.events.values import SkuQuantity
from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

# -- stock_levels --------------------------------------------------------------------------------

# Found stock may land where the SKU never was: an upsert (on hand never goes below zero).
_ADJUST = Sql(
    "INSERT INTO stock_levels (sku, warehouse, on_hand, reserved) VALUES (:sku, :wh, :delta, 0)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = stock_levels.on_hand + :delta"
)
_LEAVE = Sql(
    "UPDATE stock_levels SET on_hand = on_hand - :qty, in_transit_out = in_transit_out + :qty"
    " WHERE sku = :sku AND warehouse = :wh"
)
_HEAD_FOR = Sql(
    "INSERT INTO stock_levels (sku, warehouse, on_hand, reserved, in_transit_in)"
    " VALUES (:sku, :wh, 0, 0, :qty)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET in_transit_in = stock_levels.in_transit_in + :qty"
)
_ARRIVE = Sql(
    "UPDATE stock_levels SET on_hand = on_hand + :qty, in_transit_in = in_transit_in - :qty"
    " WHERE sku = :sku AND warehouse = :wh"
)
_NO_LONGER_OUT = Sql(
    "UPDATE stock_levels SET in_transit_out = in_transit_out - :qty WHERE sku = :sku AND warehouse = :wh"
)
_NO_LONGER_IN = Sql(
    "UPDATE stock_levels SET in_transit_in = in_transit_in - :qty WHERE sku = :sku AND warehouse = :wh"
)

# -- transfers -----------------------------------------------------------------------------------

_LINES = "jsonb_to_recordset(CAST(:lines AS jsonb)) AS x(sku text, quantity bigint)"
_REQUEST = Sql(
    "INSERT INTO transfers (transfer_id, reference, from_warehouse, to_warehouse, status, requested_at,"
    " updated_at) VALUES (:id, :reference, :source, :destination, 'requested', :at, :at)"
    " ON CONFLICT DO NOTHING"
)
_REQUEST_LINES = Sql(
    "INSERT INTO transfer_lines (transfer_id, sku, quantity)"
    f" SELECT CAST(:id AS text), x.sku, x.quantity FROM {_LINES}"
    " ON CONFLICT DO NOTHING"
)
_SET_STATUS = Sql("UPDATE transfers SET status = :status, updated_at = :at WHERE transfer_id = :id")
_RECEIVE_LINES = Sql(
    f"UPDATE transfer_lines t SET received = t.received + x.quantity FROM {_LINES}"
    " WHERE t.transfer_id = :id AND t.sku = x.sku"
)
_WRITE_OFF_LINES = Sql(
    f"UPDATE transfer_lines t SET written_off = t.written_off + x.quantity FROM {_LINES}"
    " WHERE t.transfer_id = :id AND t.sku = x.sku"
)
_RECORD_WRITE_OFFS = Sql(
    "INSERT INTO transfer_write_offs (transfer_id, sku, quantity, reason, written_off_at)"
    " SELECT CAST(:id AS text), x.sku, x.quantity, CAST(:reason AS text), CAST(:at AS timestamptz)"
    f" FROM {_LINES}"
)
# After its lines moved on: completed once nothing is outstanding; a receipt makes it
# partially received, a write-off alone leaves the status as it was.
_PROGRESS = Sql(
    "UPDATE transfers SET updated_at = :at, status = CASE"
    " WHEN NOT EXISTS (SELECT 1 FROM transfer_lines l WHERE l.transfer_id = :id"
    " AND l.quantity > l.received + l.written_off) THEN 'completed'"
    " WHEN CAST(:received AS boolean) THEN 'partially_received' ELSE status END"
    " WHERE transfer_id = :id"
)

# -- stock counts ------------------------------------------------------------------------------

_START_COUNT = Sql(
    "INSERT INTO stock_counts (count_id, warehouse, whole_warehouse, status, started_at)"
    " VALUES (:id, :wh, :whole, 'open', :at) ON CONFLICT DO NOTHING"
)
_SNAPSHOT = Sql(
    "INSERT INTO stock_count_lines (count_id, sku, expected) SELECT CAST(:id AS text), x.sku, x.quantity"
    f" FROM {_LINES} ON CONFLICT DO NOTHING"
)
_COUNT = Sql(
    "INSERT INTO stock_count_lines (count_id, sku, expected, counted, book)"
    " VALUES (:id, :sku, 0, :counted, :book)"
    " ON CONFLICT (count_id, sku) DO UPDATE SET counted = :counted, book = :book"
)
_POST_COUNT = Sql(
    "UPDATE stock_counts SET status = 'posted', posted_at = :at, posted_by = :by WHERE count_id = :id"
)

# -- reorder points and alerts -------------------------------------------------------------------

_SET_REORDER_POINT = Sql(
    "INSERT INTO reorder_points (sku, warehouse, min, max) VALUES (:sku, :wh, :min, :max)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET min = :min, max = :max"
)
_OPEN_ALERT = Sql(
    "INSERT INTO low_stock_alerts (sku, warehouse, available, min, max, suggested_quantity, detected_at)"
    " VALUES (:sku, :wh, :available, :min, :max, :suggested, :at)"
    " ON CONFLICT (sku, warehouse) DO UPDATE SET available = :available, min = :min, max = :max,"
    " suggested_quantity = :suggested, detected_at = :at"
)
_CLOSE_ALERT = Sql("DELETE FROM low_stock_alerts WHERE sku = :sku AND warehouse = :wh")


def _lines(lines: Sequence[SkuQuantity]) -> str:
    return json.dumps([{"sku": line.sku, "quantity": line.quantity} for line in lines])


def project(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    _project_stock(writes, event)
    _project_transfer(writes, envelope, event)
    _project_count(writes, envelope, event)
    _project_reorder(writes, envelope, event)


def _project_stock(writes: WriteBatch, event: DomainEvent) -> None:
    if isinstance(event, StockAdjusted):
        row = ("stock", event.sku, event.warehouse)
        writes.add(_ADJUST, {"sku": event.sku, "wh": event.warehouse, "delta": event.delta}, row)
    elif isinstance(event, StockTransferredOut | StockTransferredIn | StockTransitWrittenOff):
        source = ("stock", event.sku, event.from_warehouse)
        destination = ("stock", event.sku, event.to_warehouse)
        at_source = {"sku": event.sku, "wh": event.from_warehouse, "qty": event.quantity}
        at_destination = {"sku": event.sku, "wh": event.to_warehouse, "qty": event.quantity}
        if isinstance(event, StockTransferredOut):
            writes.add(_LEAVE, at_source, source)
            writes.add(_HEAD_FOR, at_destination, destination)
        else:
            writes.add(_NO_LONGER_OUT, at_source, source)
            arrived = isinstance(event, StockTransferredIn)
            writes.add(_ARRIVE if arrived else _NO_LONGER_IN, at_destination, destination)


def _project_transfer(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, TransferRequested):
        row = ("transfer", event.transfer_id)
        header = {
            "id": event.transfer_id,
            "reference": event.reference,
            "source": event.from_warehouse,
            "destination": event.to_warehouse,
            "at": envelope.occurred_at,
        }
        writes.add(_REQUEST, header, row)
        writes.add(_REQUEST_LINES, {"id": event.transfer_id, "lines": _lines(event.lines)}, row)
    elif isinstance(event, TransferDispatched | TransferCancelled):
        status = "dispatched" if isinstance(event, TransferDispatched) else "cancelled"
        row = ("transfer", event.transfer_id)
        writes.add(_SET_STATUS, {"id": event.transfer_id, "status": status, "at": envelope.occurred_at}, row)
    elif isinstance(event, TransferReceived | TransferWrittenOff):
        row = ("transfer", event.transfer_id)
        lines = {"id": event.transfer_id, "lines": _lines(event.lines)}
        received = isinstance(event, TransferReceived)
        if isinstance(event, TransferWrittenOff):
            writes.add(_WRITE_OFF_LINES, lines, row)
            writes.add(_RECORD_WRITE_OFFS, {**lines, "reason": event.reason, "at": envelope.occurred_at}, row)
        else:
            writes.add(_RECEIVE_LINES, lines, row)
        progress = {"id": event.transfer_id, "received": received, "at": envelope.occurred_at}
        writes.add(_PROGRESS, progress, row)


def _project_count(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, StockCountStarted):
        row = ("stock_count", event.count_id)
        header = {
            "id": event.count_id,
            "wh": event.warehouse,
            "whole": event.whole_warehouse,
            "at": envelope.occurred_at,
        }
        writes.add(_START_COUNT, header, row)
        expected = json.dumps([{"sku": level.sku, "quantity": level.quantity} for level in event.expected])
        writes.add(_SNAPSHOT, {"id": event.count_id, "lines": expected}, row)
    elif isinstance(event, StockCounted):
        counted = {"id": event.count_id, "sku": event.sku, "counted": event.counted, "book": event.book}
        writes.add(_COUNT, counted, ("stock_count", event.count_id))
    elif isinstance(event, StockCountPosted):
        posted = {"id": event.count_id, "at": envelope.occurred_at, "by": event.approved_by}
        writes.add(_POST_COUNT, posted, ("stock_count", event.count_id))


def _project_reorder(writes: WriteBatch, envelope: Envelope, event: DomainEvent) -> None:
    if isinstance(event, ReorderPointSet):
        point = {"sku": event.sku, "wh": event.warehouse, "min": event.min, "max": event.max}
        writes.add(_SET_REORDER_POINT, point, ("reorder_point", event.sku, event.warehouse))
    elif isinstance(event, LowStockDetected):
        alert = {
            "sku": event.sku,
            "wh": event.warehouse,
            "available": event.available,
            "min": event.min,
            "max": event.max,
            "suggested": event.suggested_quantity,
            "at": envelope.occurred_at,
        }
        writes.add(_OPEN_ALERT, alert, ("low_stock", event.sku, event.warehouse))
    elif isinstance(event, LowStockCleared):
        closed = {"sku": event.sku, "wh": event.warehouse}
        writes.add(_CLOSE_ALERT, closed, ("low_stock", event.sku, event.warehouse))
