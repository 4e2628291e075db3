"""The order desk's changes to reservations: amendments, splits and merges. Only the difference
moves: units of lines that did not change keep their allocation and their place in a queue.

An amendment (AdjustReservation) gives an order its whole new list of lines. A reserved order
gives back just the units it no longer wants (a StockDeallocated of those units) and takes just
the extra ones (respecting the orders that wait for the SKU, as a new reservation would); if any
extra unit is not there, the amendment is refused whole and nothing changes. A waiting
(backordered) order keeps its place in the queue of every SKU it still wants, leaves the queues
of the SKUs it dropped, queues at the end for new short ones, and is allocated at once if its
whole new list can be.

A move (MoveReservations: a split, or a merge) takes units from existing orders (the sources)
to a new one (the target), as they are held: allocated units with their warehouses, queued
units with their place in the queue (BackorderMoved). The target is then reserved when all it
got is allocated (or can be, from available stock); otherwise it waits like every backordered
order: holding nothing, queued (in the sources' places, or at the end) for what is short, and
retried whole when stock arrives. Units it got allocated go back to stock then, where the
orders already waiting come first. Each source answers what it has left: nothing (released),
its remaining allocation, or, if it was waiting, an allocation of what it still wants if that
is now available (the "ship the in-stock part now" split), else it waits on.

An order's shipments that have not left the warehouse are cancelled whenever its allocation
changes: the order asks for new ones (CreateShipments). Every decision is one transaction; the
same amendment or move id again changes nothing and is answered again.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from libs.events.base import DomainEvent
from libs.events.inventory import (
    BackorderDequeued,
    BackorderMoved,
    BackorderQueued,
    BackorderResized,
    ReservationAdjusted,
    ReservationAdjustmentRefused,
    ReservationEvent,
    ReservationRequested,
    ShipmentCancelled,
    StockAllocated,
    StockDeallocated,
    StockReserved,
    StockShortage,
)
from libs.events.values import Allocation, SkuQuantity
from services.inventory.domain.adjustment import wanted_by
from services.inventory.domain.reservation import Reservation, allocation_events, merge_lines, try_allocate
from services.inventory.domain.shipment import NOT_LEFT, Shipment
from services.inventory.domain.stock import FIFO, BackorderPolicy, SkuStock, plan_allocation
from services.inventory.domain.stock import evolve as evolve_stock


@dataclass(frozen=True)
class DeskDecision:
    """Events to append, per aggregate, and what the handler does after appending them."""

    reservations: dict[str, list[DomainEvent]] = field(default_factory=dict)  # by order id
    skus: dict[str, list[DomainEvent]] = field(default_factory=dict)
    shipments: dict[str, list[DomainEvent]] = field(default_factory=dict)  # by shipment id
    # SKUs that got stock back or whose queue changed: the orders waiting may be served now
    to_serve: frozenset[str] = frozenset()
    # a repeated command: the answers given the first time, sent again (nothing is recorded)
    repeated: tuple[ReservationEvent, ...] = ()


@dataclass(frozen=True)
class Source:
    """One order a move takes units from, with what the decision needs to know about it."""

    order_id: str
    reservation: Reservation
    lines: Mapping[str, int]  # the units to move, per SKU
    preferred: Sequence[str] = ()  # its region's warehouses: if it waits, where to allocate first
    shipments: Sequence[Shipment] = ()


class _Stocks:
    """The SKUs as the decision's events leave them, and those events."""

    def __init__(self, stocks: Mapping[str, SkuStock]) -> None:
        self.states = dict(stocks)
        self.events: dict[str, list[DomainEvent]] = {}

    def __getitem__(self, sku: str) -> SkuStock:
        return self.states[sku]

    def add(self, sku: str, *events: DomainEvent) -> None:
        for event in events:
            self.states[sku] = evolve_stock(self.states[sku], event)
        self.events.setdefault(sku, []).extend(events)

    def held(self, order_id: str, sku: str) -> dict[str, int]:
        return dict(self.states[sku].allocations.get(order_id, {}))

    def allocations(self, order_id: str, skus: Iterable[str]) -> tuple[Allocation, ...]:
        return tuple(
            Allocation(sku=sku, warehouse=warehouse, quantity=quantity)
            for sku in sorted(set(skus))
            for warehouse, quantity in sorted(self.held(order_id, sku).items())
        )

    def to_serve(self, before: Mapping[str, SkuStock]) -> frozenset[str]:
        """The SKUs whose waiting orders may get through now: stock came back, or the queue
        changed (an order that left it, or shrank, may have been what held the next back)."""
        return frozenset(
            sku
            for sku, after in self.states.items()
            if sku in self.events
            and (_reserved(after) < _reserved(before[sku]) or after.backorders != before[sku].backorders)
        )


def _reserved(stock: SkuStock) -> int:
    return sum(sum(by_wh.values()) for by_wh in stock.allocations.values())


def given_up(held: Mapping[str, int], quantity: int) -> dict[str, int] | None:
    """Which of an order's units of a SKU go when it gives up `quantity` of them: the smallest
    holdings first (then by warehouse code), so what it keeps is in as few warehouses as
    possible. None if it holds fewer (the rest left the warehouse)."""
    if sum(held.values()) < quantity:
        return None
    taken: dict[str, int] = {}
    remaining = quantity
    for warehouse, units in sorted(held.items(), key=lambda item: (item[1], item[0])):
        take = min(units, remaining)
        if take:
            taken[warehouse] = take
            remaining -= take
    return taken


def _lines(wanted: Mapping[str, int]) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=quantity) for sku, quantity in wanted.items() if quantity > 0)


def _difference(old: Mapping[str, int], new: Mapping[str, int]) -> tuple[tuple[SkuQuantity, ...], ...]:
    """(added, released): the units per SKU the new lines want more of, and fewer of."""
    skus = sorted(old.keys() | new.keys())
    added = {sku: new.get(sku, 0) - old.get(sku, 0) for sku in skus}
    released = {sku: old.get(sku, 0) - new.get(sku, 0) for sku in skus}
    return _lines(added), _lines(released)


def _short(
    order_id: str, wanted: Mapping[str, int], stocks: _Stocks, policy: BackorderPolicy
) -> list[SkuQuantity]:
    """What is missing for `wanted`, as a new reservation counts it: the SKUs whose available
    stock does not cover it, or that the order may not take yet (others wait before it)."""
    return [
        SkuQuantity(sku=sku, quantity=max(quantity - stocks[sku].total_available(), 0) or quantity)
        for sku, quantity in wanted.items()
        if stocks[sku].total_available() < quantity or not stocks[sku].may_take(order_id, policy)
    ]


def _wait(
    order_id: str, wanted: Mapping[str, int], stocks: _Stocks, policy: BackorderPolicy
) -> tuple[SkuQuantity, ...]:
    """The order waits for `wanted`: a SKU it already waits for keeps its place (at the
    quantity it now wants), a short one it does not wait for yet queues at the end. What is
    missing."""
    missing = _short(order_id, wanted, stocks, policy)
    for sku, quantity in wanted.items():
        queued = dict(stocks[sku].backorders).get(order_id)
        if queued is not None and queued != quantity:
            stocks.add(sku, BackorderResized(sku=sku, order_id=order_id, quantity=quantity))
    for item in missing:
        if not stocks[item.sku].is_queued(order_id):
            stocks.add(item.sku, BackorderQueued(sku=item.sku, order_id=order_id, quantity=wanted[item.sku]))
    return tuple(missing)


def _allocate_all(
    order_id: str,
    wanted: Mapping[str, int],
    stocks: _Stocks,
    preferred: Sequence[str],
    policy: BackorderPolicy,
) -> bool:
    """Allocate an order that holds nothing its whole `wanted`, as a waiting order is served."""
    plans = try_allocate(order_id, wanted, stocks.states, preferred, policy)
    if plans is None:
        return False
    for sku, events in allocation_events(order_id, plans, stocks.states).skus.items():
        stocks.add(sku, *events)
    return True


def _cancelled(shipments: Sequence[Shipment], order_id: str, reason: str) -> dict[str, list[DomainEvent]]:
    return {
        s.shipment_id: [ShipmentCancelled(shipment_id=s.shipment_id, order_id=order_id, reason=reason)]
        for s in sorted(shipments, key=lambda s: s.shipment_id)
        if s.status in NOT_LEFT
    }


def _allocation_changed(order_id: str, before: Mapping[str, SkuStock], after: _Stocks) -> bool:
    return any(
        before[sku].allocations.get(order_id, {}) != after.states[sku].allocations.get(order_id, {})
        for sku in after.events
    )


# -- amendments ---------------------------------------------------------------------------------


def decide_adjust(
    reservation: Reservation,
    order_id: str,
    amendment_id: str,
    lines: Sequence[SkuQuantity],
    backorder: bool,
    stocks: Mapping[str, SkuStock],
    preferred: Sequence[str],
    policy: BackorderPolicy = FIFO,
    shipments: Sequence[Shipment] = (),
    cancel_shipments: bool = False,
) -> DeskDecision:
    """The order now wants `lines`. `stocks` holds every SKU of its old and new lines.
    `backorder` false: an amendment that would leave a waiting order still waiting is refused.
    `cancel_shipments`: its shipments that have not left are cancelled even if its allocation
    stays (the delivery changed)."""
    if amendment_id in reservation.answers:
        return DeskDecision(repeated=(reservation.answers[amendment_id],))

    def refused(reason: str, missing: Sequence[SkuQuantity] = ()) -> DeskDecision:
        answer = ReservationAdjustmentRefused(
            order_id=order_id, amendment_id=amendment_id, missing=tuple(missing), reason=reason
        )
        return DeskDecision(reservations={order_id: [answer]})

    if reservation.status not in ("reserved", "backordered"):
        return refused(f"order {order_id} has no reservation to amend: it is {reservation.status}")
    old, new = wanted_by(reservation), merge_lines(lines)
    work = _Stocks(stocks)
    waiting = False
    missing: tuple[SkuQuantity, ...] = ()
    if reservation.status == "reserved":
        refusal = _reallocate(order_id, old, new, work, preferred, policy)
        if refusal is not None:
            return refused(*refusal)
    else:
        for sku in old.keys() - new.keys():
            if work[sku].is_queued(order_id):
                work.add(sku, BackorderDequeued(sku=sku, order_id=order_id))
        if not _allocate_all(order_id, new, work, preferred, policy):
            if not backorder:
                reason = f"order {order_id} would still wait for stock, and this amendment may not wait"
                return refused(reason, _short(order_id, new, work, policy))
            waiting, missing = True, _wait(order_id, new, work, policy)
    cancelled = (
        _cancelled(shipments, order_id, f"order amended ({amendment_id})")
        if cancel_shipments or _allocation_changed(order_id, stocks, work)
        else {}
    )
    added, released = _difference(old, new)
    answer = ReservationAdjusted(
        order_id=order_id,
        amendment_id=amendment_id,
        lines=tuple(lines),
        allocations=work.allocations(order_id, old.keys() | new.keys()),
        released=released,
        added=added,
        waiting=waiting,
        missing=missing,
        shipments_cancelled=tuple(cancelled),
    )
    return DeskDecision({order_id: [answer]}, work.events, cancelled, work.to_serve(stocks))


def _reallocate(
    order_id: str,
    old: Mapping[str, int],
    new: Mapping[str, int],
    stocks: _Stocks,
    preferred: Sequence[str],
    policy: BackorderPolicy,
) -> tuple[str, tuple[SkuQuantity, ...]] | None:
    """A reserved order's allocation follows its new lines, SKU by SKU: fewer units give back
    just those, more take just the extra (from the warehouses it already holds the SKU in
    first, then its region's); a SKU that did not change is not touched. Returns why it
    cannot (and what is missing), having changed nothing, or None once done."""
    given: dict[str, dict[str, int]] = {}
    plans: dict[str, dict[str, int]] = {}
    missing: list[SkuQuantity] = []
    for sku in sorted(old.keys() | new.keys()):
        change = new.get(sku, 0) - old.get(sku, 0)
        held = stocks.held(order_id, sku)
        if change < 0:
            give = given_up(held, -change)
            if give is None:
                reason = (
                    f"order {order_id} holds {sum(held.values())} of {sku} in the warehouse (the rest"
                    f" has left): it cannot give back {-change}"
                )
                return reason, ()
            given[sku] = give
        elif change > 0:
            stock = stocks[sku]
            nearest = [w for w, _ in sorted(held.items(), key=lambda i: (-i[1], i[0]))] + list(preferred)
            plan = plan_allocation(stock, change, nearest) if stock.may_take(order_id, policy) else None
            if plan is None:
                short = max(change - stock.total_available(), 0) or change
                missing.append(SkuQuantity(sku=sku, quantity=short))
            else:
                plans[sku] = plan
    if missing:
        return f"not enough stock for the extra units of order {order_id}", tuple(missing)
    for sku, give in given.items():
        stocks.add(sku, StockDeallocated(sku=sku, order_id=order_id, warehouses=give))
    for sku, plan in plans.items():
        held = stocks.held(order_id, sku)
        if held:
            # An allocation is made whole: what it held goes back and comes again with the extra.
            merged = {w: held.get(w, 0) + plan.get(w, 0) for w in sorted(held.keys() | plan.keys())}
            stocks.add(
                sku,
                StockDeallocated(sku=sku, order_id=order_id, warehouses=held),
                StockAllocated(sku=sku, order_id=order_id, warehouses=merged),
            )
        else:
            stocks.add(sku, StockAllocated(sku=sku, order_id=order_id, warehouses=plan))
    return None


# -- splits and merges --------------------------------------------------------------------------


def decide_move(
    target: Reservation,
    target_id: str,
    move_id: str,
    sources: Sequence[Source],
    region: str | None,
    backorder: bool,
    stocks: Mapping[str, SkuStock],
    preferred: Sequence[str],
    policy: BackorderPolicy = FIFO,
) -> DeskDecision:
    """Move each source's `lines` to the new order `target_id`. `stocks` holds every SKU the
    sources ask for. `backorder` false: a move that would leave the new order waiting is
    refused. Refused whole (the answer on the target's reservation) when a source does not
    hold the units."""
    if move_id in target.answers:  # refused before
        return DeskDecision(repeated=(target.answers[move_id],))
    earlier = sources[0].reservation.answers.get(move_id) if sources else None
    if isinstance(earlier, ReservationAdjusted) and earlier.moved_to == target_id and target.first_answer:
        answers = [s.reservation.answers[move_id] for s in sources if move_id in s.reservation.answers]
        return DeskDecision(repeated=(*answers, target.first_answer))
    refusal = _move_refused(target, target_id, sources, stocks)
    if refusal is not None:
        return _move_refusal(target_id, move_id, sources, refusal[0], refusal[1])

    work = _Stocks(stocks)
    got: dict[str, int] = {}
    got_allocated: dict[str, dict[str, int]] = {}
    for source in sources:
        for sku, quantity in source.lines.items():
            got[sku] = got.get(sku, 0) + quantity
            if source.reservation.status == "reserved":
                give = given_up(work.held(source.order_id, sku), quantity) or {}
                work.add(sku, StockDeallocated(sku=sku, order_id=source.order_id, warehouses=give))
                into = got_allocated.setdefault(sku, {})
                for warehouse, units in give.items():
                    into[warehouse] = into.get(warehouse, 0) + units
            elif work[sku].is_queued(source.order_id):
                moved = BackorderMoved(
                    sku=sku, from_order_id=source.order_id, to_order_id=target_id, quantity=quantity
                )
                work.add(sku, moved)

    requested = ReservationRequested(
        order_id=target_id, lines=_lines(got), region=region, backorder=backorder
    )
    answer = _target_answer(target_id, got, got_allocated, requested, work, preferred, policy)
    if answer is None:
        reason = f"the units moved to order {target_id} are not all in stock, and it may not wait for them"
        return _move_refusal(target_id, move_id, sources, reason, tuple(_short(target_id, got, work, policy)))
    reservations: dict[str, list[DomainEvent]] = {target_id: [requested, answer]}
    shipments: dict[str, list[DomainEvent]] = {}
    for source in sources:
        left = _source_left(source, work, policy)
        cancelled = (
            _cancelled(source.shipments, source.order_id, f"order split or merged ({move_id})")
            if _allocation_changed(source.order_id, stocks, work)
            else {}
        )
        shipments.update(cancelled)
        reservations[source.order_id] = [
            ReservationAdjusted(
                order_id=source.order_id,
                amendment_id=move_id,
                lines=_lines(left.wanted),
                allocations=work.allocations(source.order_id, wanted_by(source.reservation)),
                waiting=left.waiting,
                missing=left.missing,
                moved_to=target_id,
                shipments_cancelled=tuple(cancelled),
            )
        ]
    return DeskDecision(reservations, work.events, shipments, work.to_serve(stocks))


def _move_refusal(
    target_id: str, move_id: str, sources: Sequence[Source], reason: str, missing: tuple[SkuQuantity, ...]
) -> DeskDecision:
    """The move refused whole: the answer on the new order's reservation, and the same on each
    source that has one, so the source orders' changes end too (nothing moved)."""
    told = [
        target_id,
        *(s.order_id for s in sources if s.reservation.status != "new" and s.order_id != target_id),
    ]
    answers: dict[str, list[DomainEvent]] = {
        order_id: [
            ReservationAdjustmentRefused(
                order_id=order_id, amendment_id=move_id, missing=missing, reason=reason
            )
        ]
        for order_id in told
    }
    return DeskDecision(reservations=answers)


def _move_refused(
    target: Reservation, target_id: str, sources: Sequence[Source], stocks: Mapping[str, SkuStock]
) -> tuple[str, tuple[SkuQuantity, ...]] | None:
    """Why the move cannot be made (and what a source lacks), or None."""
    if target.status != "new":
        return f"order {target_id} already has a reservation ({target.status}): a move makes a new one", ()
    ids = [source.order_id for source in sources]
    if len(set(ids)) != len(ids) or target_id in ids:
        return f"each order may be a source of the move to {target_id} once, and not {target_id} itself", ()
    for source in sources:
        status = source.reservation.status
        if status not in ("reserved", "backordered"):
            return f"order {source.order_id} has no reservation to move units from: it is {status}", ()
        wanted = wanted_by(source.reservation)
        lacking = tuple(
            SkuQuantity(sku=sku, quantity=quantity - wanted.get(sku, 0))
            for sku, quantity in source.lines.items()
            if wanted.get(sku, 0) < quantity
        )
        if lacking:
            named = ", ".join(f"{item.quantity} x {item.sku}" for item in lacking)
            return (
                f"order {source.order_id} does not hold the units to move: {named} more than it has",
                lacking,
            )
        for sku, quantity in source.lines.items():
            held = sum(stocks[sku].allocations.get(source.order_id, {}).values())
            if status == "reserved" and held < quantity:
                return (
                    f"order {source.order_id} holds {held} of {sku} in the warehouse (the rest has left)",
                    (),
                )
    return None


@dataclass(frozen=True)
class _Left:
    wanted: dict[str, int]
    waiting: bool = False
    missing: tuple[SkuQuantity, ...] = ()


def _target_answer(
    target_id: str,
    got: Mapping[str, int],
    got_allocated: Mapping[str, Mapping[str, int]],
    requested: ReservationRequested,
    work: _Stocks,
    preferred: Sequence[str],
    policy: BackorderPolicy,
) -> StockReserved | StockShortage | None:
    """Reserved when what the target got allocated and what it can take now of the rest cover
    all it got; else it waits, holding nothing (None if it may not wait)."""
    rest = {sku: quantity - sum(got_allocated.get(sku, {}).values()) for sku, quantity in got.items()}
    rest = {sku: quantity for sku, quantity in rest.items() if quantity > 0}
    plans = try_allocate(target_id, rest, work.states, preferred, policy)
    if plans is not None:
        for sku in got:
            plan = dict(got_allocated.get(sku, {}))
            for warehouse, units in plans.get(sku, {}).items():
                plan[warehouse] = plan.get(warehouse, 0) + units
            events: list[DomainEvent] = [StockAllocated(sku=sku, order_id=target_id, warehouses=plan)]
            if work[sku].is_queued(target_id):
                events.append(BackorderDequeued(sku=sku, order_id=target_id))
            work.add(sku, *events)
        return StockReserved(order_id=target_id, allocations=work.allocations(target_id, got))
    if not requested.backorder:
        return None
    missing = _wait(target_id, got, work, policy)
    return StockShortage(
        order_id=target_id, lines=requested.lines, region=requested.region, missing=missing, backordered=True
    )


def _source_left(source: Source, work: _Stocks, policy: BackorderPolicy) -> _Left:
    """What a source has left after the move, and whether it still waits."""
    wanted = wanted_by(source.reservation)
    left = {sku: quantity - source.lines.get(sku, 0) for sku, quantity in wanted.items()}
    left = {sku: quantity for sku, quantity in left.items() if quantity > 0}
    if not left:  # released: nothing of it stays anywhere
        for sku in wanted:
            held = work.held(source.order_id, sku)
            if held:
                work.add(sku, StockDeallocated(sku=sku, order_id=source.order_id, warehouses=held))
            if work[sku].is_queued(source.order_id):
                work.add(sku, BackorderDequeued(sku=sku, order_id=source.order_id))
        return _Left(left)
    if source.reservation.status == "reserved":
        return _Left(left)
    if _allocate_all(source.order_id, left, work, source.preferred, policy):
        return _Left(left)
    return _Left(left, waiting=True, missing=_wait(source.order_id, left, work, policy))
