"""Warehouse operations: transfers between warehouses, stock adjustments (and the reservations
they revoke), stock counts and reorder points. Each use case loads aggregates, asks the domain
and records the events in the caller's unit of work (one transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from libs.domain import InvalidRequest, NotFound
from libs.events.inventory import AdjustmentReason, StockShortage
from libs.events.values import SkuQuantity
from libs.runtime.uow import UnitOfWork
from services.inventory.adapters import queries, warehouse_ops_queries
from services.inventory.app import shipments
from services.inventory.app.handlers import LoadedSkus, serve_backorders
from services.inventory.domain import adjustment, reorder, stock_count, transfer
from services.inventory.domain.reservation import RESERVATION
from services.inventory.domain.stock import SKU, SkuStock
from services.inventory.domain.stock_count import STOCK_COUNT, StockCount
from services.inventory.domain.transfer import TRANSFER, Transfer, TransferDecision

NOTE_ON_TIMELINE = 200


async def _require_warehouse(uow: UnitOfWork, code: str) -> None:
    if not await queries.warehouse_exists(uow.conn, code):
        raise InvalidRequest("unknown_warehouse", f"warehouse {code!r} is not registered")


async def _preferred(uow: UnitOfWork, region: str | None) -> list[str]:
    return await uow.memo(("warehouses", region), lambda: queries.warehouses_in_region(uow.conn, region))


# -- transfers ---------------------------------------------------------------------------------


async def request_transfer(
    uow: UnitOfWork, reference: str, from_warehouse: str, to_warehouse: str, lines: Sequence[SkuQuantity]
) -> tuple[str, bool]:
    """The transfer's id, and whether this request created it (False: the same request again)."""
    transfer_id = transfer.transfer_id_for(reference)
    state, version = await uow.load(TRANSFER, transfer_id)
    stocks: dict[str, SkuStock] = {}
    if not state.exists:
        for warehouse in (from_warehouse, to_warehouse):
            await _require_warehouse(uow, warehouse)
        stocks = await LoadedSkus().ensure(uow, [line.sku for line in lines])
    events = transfer.decide_request(
        state, transfer_id, reference, from_warehouse, to_warehouse, lines, stocks
    )
    await uow.record(TRANSFER, transfer_id, version, events)
    return transfer_id, bool(events)


async def _load_transfer(uow: UnitOfWork, transfer_id: str) -> tuple[Transfer, int]:
    state, version = await uow.load(TRANSFER, transfer_id)
    if not state.exists:
        raise NotFound("unknown_transfer", f"no transfer {transfer_id!r}")
    return state, version


async def _apply(
    uow: UnitOfWork, transfer_id: str, version: int, decision: TransferDecision, skus: LoadedSkus
) -> None:
    for sku, events in decision.skus.items():
        await skus.record(uow, sku, events)
    await uow.record(TRANSFER, transfer_id, version, decision.transfer)


async def dispatch_transfer(uow: UnitOfWork, transfer_id: str) -> None:
    state, version = await _load_transfer(uow, transfer_id)
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, [line.sku for line in state.lines])
    await _apply(uow, transfer_id, version, transfer.decide_dispatch(state, stocks), skus)


async def receive_transfer(
    uow: UnitOfWork, transfer_id: str, lines: Sequence[SkuQuantity], receipt_id: str | None
) -> None:
    """Book what arrived; it fills the destination's backorders first-in first-out, as a
    receipt does."""
    state, version = await _load_transfer(uow, transfer_id)
    decision = transfer.decide_receive(state, lines, receipt_id)
    skus = LoadedSkus()
    await skus.ensure(uow, decision.skus)
    await _apply(uow, transfer_id, version, decision, skus)
    for sku in decision.skus:
        await serve_backorders(uow, sku, skus)


async def write_off_transfer(
    uow: UnitOfWork, transfer_id: str, lines: Sequence[SkuQuantity] | None, reason: str
) -> None:
    state, version = await _load_transfer(uow, transfer_id)
    decision = transfer.decide_write_off(state, lines, reason)
    skus = LoadedSkus()
    await skus.ensure(uow, decision.skus)
    await _apply(uow, transfer_id, version, decision, skus)


async def cancel_transfer(uow: UnitOfWork, transfer_id: str, reason: str) -> None:
    state, version = await _load_transfer(uow, transfer_id)
    await uow.record(TRANSFER, transfer_id, version, transfer.decide_cancel(state, reason))


# -- adjustments -------------------------------------------------------------------------------


async def adjust_stock(
    uow: UnitOfWork, warehouse: str, sku: str, delta: int, reason: AdjustmentReason, note: str
) -> None:
    await _require_warehouse(uow, warehouse)
    # The order's timeline shows why its stock was revoked; a long note is cut short there.
    said = note if len(note) <= NOTE_ON_TIMELINE else note[: NOTE_ON_TIMELINE - 1] + "…"
    why = f"stock adjusted at {warehouse}: {reason} ({delta:+d})" + (f", {said}" if said else "")
    await _adjust(uow, LoadedSkus(), warehouse, sku, delta, reason, note, why)


async def _adjust(
    uow: UnitOfWork,
    skus: LoadedSkus,
    warehouse: str,
    sku: str,
    delta: int,
    reason: AdjustmentReason,
    note: str,
    why: str,
    count_id: str | None = None,
) -> None:
    """Book the adjustment; revoke what no longer fits and plan those orders again; serve
    the backorders that stock found (or freed by an order that became short) can fill."""
    stocks = await skus.ensure(uow, [sku])
    events = adjustment.decide_adjustment(
        stocks[sku], sku, warehouse, delta, reason, note, uow.context.actor, count_id
    )
    await skus.record(uow, sku, events)
    freed = {sku}
    revoked = adjustment.revocations(skus.states[sku], warehouse)
    if revoked:
        await skus.record(uow, sku, adjustment.release_revoked(skus.states[sku], revoked))
    for revocation in reversed(revoked):  # the oldest of them is planned first
        freed |= await _replan(uow, skus, revocation, why)
    for freed_sku in sorted(freed):
        await serve_backorders(uow, freed_sku, skus)


async def _replan(uow: UnitOfWork, skus: LoadedSkus, revocation: adjustment.Revocation, why: str) -> set[str]:
    """Reserve again for an order that lost stock, and its shipments follow (cancelled where
    the stock is gone, created where it is now); the SKUs it let go of if it became short."""
    reservation, version = await uow.load(RESERVATION, revocation.order_id)
    stocks = await skus.ensure(uow, adjustment.wanted_by(reservation).keys() | {revocation.sku})
    preferred = await _preferred(uow, reservation.region)
    decision = adjustment.decide_replan(
        reservation, revocation.order_id, [revocation], why, stocks, preferred
    )
    for sku, events in decision.skus.items():
        await skus.record(uow, sku, events)
    await uow.record(RESERVATION, revocation.order_id, version, decision.reservation)
    await shipments.follow_allocation(uow, revocation.order_id, why)
    short = any(isinstance(event, StockShortage) for event in decision.reservation)
    return set(decision.skus) if short else set()


# -- stock counts ------------------------------------------------------------------------------


async def start_count(uow: UnitOfWork, count_id: str, warehouse: str, skus: Sequence[str] | None) -> None:
    """Snapshot what the books expect on hand: of the SKUs given, else of every SKU the
    warehouse has ever held."""
    await _require_warehouse(uow, warehouse)
    listed = (
        list(dict.fromkeys(skus))
        if skus is not None
        else await warehouse_ops_queries.skus_in(uow.conn, warehouse)
    )
    stock_count.check_size(warehouse, len(listed))
    await uow.preload(SKU, listed)
    expected = {sku: (await uow.load(SKU, sku))[0].on_hand.get(warehouse, 0) for sku in listed}
    events = stock_count.decide_start(count_id, warehouse, expected, whole_warehouse=skus is None)
    await uow.record(STOCK_COUNT, count_id, 0, events)


async def _load_count(uow: UnitOfWork, count_id: str) -> tuple[StockCount, int]:
    state, version = await uow.load(STOCK_COUNT, count_id)
    if state.status == "new":
        raise NotFound("unknown_stock_count", f"no stock count {count_id!r}")
    return state, version


async def count_sku(uow: UnitOfWork, count_id: str, sku: str, counted: int) -> None:
    state, version = await _load_count(uow, count_id)
    stock, _ = await uow.load(SKU, sku)
    book = stock.on_hand.get(state.warehouse, 0)
    await uow.record(STOCK_COUNT, count_id, version, stock_count.decide_count(state, sku, counted, book))


async def post_count(uow: UnitOfWork, count_id: str) -> None:
    """Book every variance as an adjustment (reason `count`, the poster as approver)."""
    state, version = await _load_count(uow, count_id)
    events = stock_count.decide_post(state, uow.context.actor)
    if not events:
        return  # posted before
    skus = LoadedSkus()
    why = f"stock count {count_id} at {state.warehouse}"
    for sku, delta in state.variances().items():
        await _adjust(uow, skus, state.warehouse, sku, delta, "count", "", why, count_id=count_id)
    await uow.record(STOCK_COUNT, count_id, version, events)


# -- reorder points ----------------------------------------------------------------------------


async def set_reorder_point(uow: UnitOfWork, sku: str, warehouse: str, minimum: int, maximum: int) -> bool:
    """Whether anything changed. A low-stock alert opens at once if stock already is at or below
    the new `min` (and closes if it is now above it)."""
    await _require_warehouse(uow, warehouse)
    skus = LoadedSkus()
    stocks = await skus.ensure(uow, [sku])
    events = reorder.decide_reorder_point(stocks[sku], sku, warehouse, minimum, maximum)
    await skus.record(uow, sku, events)
    return bool(events)
