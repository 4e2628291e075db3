"""An order's shipments follow its allocation when its stock is re-planned (issue 9: nothing is
ever promised from stock that does not exist, and no order is left stuck).

The rule: an order whose shipments were asked for keeps shipments, among those whose goods have
not left, equal to what it holds and has not dispatched, per warehouse. A shipment that no
longer fits is cancelled; what the kept ones do not cover is shipped by a new shipment of the
warehouse's next generation. A shipment that left is never touched.

First the rule alone (pure), then through the real handlers and database: an adjustment
re-plans the order in one unit of work, a backorder filled later ships it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import DomainError
from libs.events import Decoded, make_envelope
from libs.events.inventory import (
    CreateShipments,
    InventoryCommand,
    ReserveStock,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentStatus,
)
from libs.events.values import Shipping, ShippingMethod, SkuQuantity
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import MessageContext, unit_of_work
from services.inventory.adapters import shipment_queries
from services.inventory.app import handlers, shipments, warehouse_ops
from services.inventory.bootstrap import project
from services.inventory.domain.shipment import (
    SHIPMENT,
    Shipment,
    decide_collect,
    decide_follow_allocation,
    decide_pack,
    decide_pick,
    decide_ready_for_pickup,
    shipment_id_for,
)
from services.inventory.domain.stock import SKU
from services.inventory.tests.database import inventory_database

ORDER = "order-1"
WHY = "stock adjusted at NORTH: damage (-3)"


def lines(quantities: dict[str, int]) -> tuple[SkuQuantity, ...]:
    return tuple(SkuQuantity(sku=sku, quantity=q) for sku, q in sorted(quantities.items()))


def shipment(
    warehouse: str,
    status: ShipmentStatus = "pending",
    generation: int = 0,
    method: ShippingMethod = "standard",
    **quantities: int,
) -> Shipment:
    return Shipment(
        shipment_id=shipment_id_for(ORDER, warehouse, generation),
        order_id=ORDER,
        warehouse=warehouse,
        method=method,
        lines=lines(quantities),
        status=status,
    )


def cancelled(s: Shipment) -> ShipmentCancelled:
    return ShipmentCancelled(shipment_id=s.shipment_id, order_id=ORDER, reason=WHY)


def created(
    warehouse: str, generation: int = 0, method: ShippingMethod = "standard", **quantities: int
) -> ShipmentCreated:
    return ShipmentCreated(
        shipment_id=shipment_id_for(ORDER, warehouse, generation),
        order_id=ORDER,
        warehouse=warehouse,
        method=method,
        lines=lines(quantities),
    )


def follow(*shipments: Shipment, **held: dict[str, int]) -> list[ShipmentCancelled | ShipmentCreated]:
    return decide_follow_allocation(ORDER, shipments, held, {}, WHY)


# -- the rule --------------------------------------------------------------------------------------


def test_stock_re_planned_to_another_warehouse_moves_the_shipment_there() -> None:
    north = shipment("NORTH", A=5)

    assert follow(north, A={"SOUTH": 5}) == [cancelled(north), created("SOUTH", A=5)]


def test_the_new_shipment_keeps_the_order_s_shipping_method() -> None:
    north = shipment("NORTH", method="pickup", A=1)

    assert follow(north, A={"SOUTH": 1}) == [cancelled(north), created("SOUTH", method="pickup", A=1)]


def test_a_warehouse_shipped_from_again_gets_a_new_shipment_id() -> None:
    north = shipment("NORTH", "cancelled", A=5)
    south = shipment("SOUTH", "picking", A=5)

    decided = follow(north, south, A={"NORTH": 5})

    assert decided == [cancelled(south), created("NORTH", generation=1, A=5)]
    assert len({north.shipment_id, south.shipment_id, decided[1].shipment_id}) == 3
    assert shipment_id_for(ORDER, "NORTH", 1) == shipment_id_for(ORDER, "NORTH", 1)  # deterministic


def test_a_shipment_that_left_is_never_touched_and_its_warehouse_ships_the_re_planned_rest() -> None:
    left = {status: shipment("NORTH", status, A=2) for status in ("dispatched", "delivered", "collected")}
    for gone in left.values():
        south = shipment("SOUTH", B=1)

        # B was re-planned from SOUTH to NORTH; the A that left is no longer held anywhere
        decided = follow(gone, south, B={"NORTH": 1})

        assert decided == [cancelled(south), created("NORTH", generation=1, B=1)]


def test_a_shipment_that_no_longer_fits_is_cancelled_and_a_smaller_one_takes_its_place() -> None:
    north = shipment("NORTH", "packed", A=3)

    assert follow(north, A={"NORTH": 2, "SOUTH": 1}) == [
        cancelled(north),
        created("NORTH", generation=1, A=2),
        created("SOUTH", A=1),
    ]


def test_a_shipment_that_still_fits_is_kept_and_the_rest_ships_beside_it() -> None:
    north = shipment("NORTH", "picking", A=1)

    assert follow(north, A={"NORTH": 2}, B={"SOUTH": 1}) == [
        created("NORTH", generation=1, A=1),
        created("SOUTH", B=1),
    ]


def test_of_two_shipments_that_do_not_both_fit_the_one_further_along_is_kept() -> None:
    first = shipment("NORTH", "pending", A=1)
    second = shipment("NORTH", "packed", 1, A=1)

    assert follow(first, second, A={"NORTH": 1}) == [cancelled(first)]


def test_an_order_that_holds_nothing_any_more_keeps_only_what_left() -> None:
    statuses: tuple[ShipmentStatus, ...] = ("pending", "picking", "packed")
    waiting = [shipment("NORTH", status, g, A=1) for g, status in enumerate(statuses)]
    pickup = shipment("SOUTH", "ready_for_pickup", method="pickup", A=1)
    gone = shipment("SOUTH", "collected", 1, method="pickup", A=1)

    decided = follow(*waiting, pickup, gone, A={})

    assert sorted(e.shipment_id for e in decided) == sorted(s.shipment_id for s in (*waiting, pickup))
    assert all(isinstance(e, ShipmentCancelled) and e.reason == WHY for e in decided)


def test_shipments_that_already_follow_the_allocation_change_nothing() -> None:
    north, south = shipment("NORTH", A=2), shipment("SOUTH", "packed", A=1, B=4)

    assert follow(north, south, A={"NORTH": 2, "SOUTH": 1}, B={"SOUTH": 4}) == []


def test_an_order_whose_shipments_were_not_asked_for_gets_none() -> None:
    assert follow(A={"NORTH": 2}) == []


def test_the_new_shipment_carries_the_catalogue_weight() -> None:
    north = shipment("NORTH", A=2)

    decided = decide_follow_allocation(ORDER, [north], {"A": {"SOUTH": 2}}, {"A": Decimal("1.5")}, WHY)

    assert isinstance(decided[1], ShipmentCreated)
    assert decided[1].weight_kg == Decimal("3.0")


# -- through the handlers, in one unit of work -----------------------------------------------------

CONTEXT = MessageContext(correlation_id="test", actor="user:test")


@pytest.fixture(scope="module")
async def engine(settings: RuntimeSettings) -> AsyncIterator[AsyncEngine]:
    async with inventory_database(settings, "inventoryreplan", ("NORTH", "SOUTH")) as engine:
        yield engine


def decoded(command: InventoryCommand) -> Decoded:
    envelope = make_envelope(
        command,
        event_id=uuid4(),
        aggregate_id=command.order_id,
        aggregate_version=0,
        occurred_at=datetime.now(UTC),
        correlation_id=command.order_id,
        causation_id=None,
        actor="service:order",
    )
    return Decoded(envelope, command)


async def confirmed_with_shipments(engine: AsyncEngine, order_id: str, sku: str, quantity: int) -> None:
    """Reserved for a northern customer, and its shipments asked for."""
    wanted = (SkuQuantity(sku=sku, quantity=quantity),)
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.reserve_stock(
            uow, decoded(ReserveStock(order_id=order_id, lines=wanted, region="north"))
        )
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        command = CreateShipments(order_id=order_id, shipping=Shipping(method="pickup"))
        await shipments.create_shipments(uow, decoded(command))


async def shipments_of(engine: AsyncEngine, order_id: str) -> list[tuple[str, str, str, list[object]]]:
    async with engine.connect() as conn:
        found = await shipment_queries.shipments_of_order(conn, order_id)
    return sorted((s["shipment_id"], s["warehouse"], s["status"], s["lines"]) for s in found)


async def transaction_of(engine: AsyncEngine, order_id: str, event_type: str) -> set[str]:
    """The types of the order's events recorded in the transaction that recorded `event_type`."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_type FROM events WHERE payload->>'order_id' = :o AND transaction_id ="
                " (SELECT transaction_id FROM events WHERE payload->>'order_id' = :o AND event_type = :t)"
            ),
            {"o": order_id, "t": event_type},
        )
        return {row.event_type for row in rows}


async def hand_over(engine: AsyncEngine, shipment_id: str) -> None:
    """Pick, pack and hand the pickup shipment over: its goods leave stock."""
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        for step in (decide_pick, decide_pack, decide_ready_for_pickup, decide_collect):
            await shipments.advance(uow, shipment_id, step)


@pytest.mark.integration
async def test_an_adjustment_moves_the_order_s_shipment_with_its_stock_in_the_same_transaction(
    engine: AsyncEngine,
) -> None:
    sku, order_id = f"SKU-{uuid4().hex[:8]}", f"o-{uuid4().hex[:8]}"
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 5, f"{sku}-n")
        await handlers.receive_stock(uow, sku, "SOUTH", 10, f"{sku}-s")
    await confirmed_with_shipments(engine, order_id, sku, 5)
    north, south = shipment_id_for(order_id, "NORTH"), shipment_id_for(order_id, "SOUTH")
    assert await shipments_of(engine, order_id) == [
        (north, "NORTH", "pending", [{"sku": sku, "quantity": 5}])
    ]

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await warehouse_ops.adjust_stock(uow, "NORTH", sku, -3, "damage", "forklift")

    assert sorted(await shipments_of(engine, order_id), key=lambda s: s[1]) == [
        (north, "NORTH", "cancelled", [{"sku": sku, "quantity": 5}]),
        (south, "SOUTH", "pending", [{"sku": sku, "quantity": 5}]),
    ]
    replanned = {"ReservationRevoked", "StockReserved", "ShipmentCancelled", "ShipmentCreated"}
    assert replanned <= await transaction_of(engine, order_id, "ShipmentCancelled")
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        with pytest.raises(DomainError) as refused:
            await shipments.advance(uow, north, decide_pick)
    assert refused.value.code == "shipment_transition_refused"

    await hand_over(engine, south)

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        stock, _ = await uow.load(SKU, sku)
        gone, _ = await uow.load(SHIPMENT, south)
    assert gone.status == "collected"
    assert (stock.on_hand, stock.reserved("NORTH"), stock.reserved("SOUTH")) == (
        {"NORTH": 2, "SOUTH": 5},
        0,
        0,
    )


@pytest.mark.integration
async def test_a_backordered_order_s_shipment_is_cancelled_and_created_again_when_stock_arrives(
    engine: AsyncEngine,
) -> None:
    sku, order_id = f"SKU-{uuid4().hex[:8]}", f"o-{uuid4().hex[:8]}"
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 2, f"{sku}-1")
    await confirmed_with_shipments(engine, order_id, sku, 2)
    first = shipment_id_for(order_id, "NORTH")

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await warehouse_ops.adjust_stock(uow, "NORTH", sku, -2, "loss", "")
    assert [s[2] for s in await shipments_of(engine, order_id)] == ["cancelled"]

    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        await handlers.receive_stock(uow, sku, "NORTH", 2, f"{sku}-2")  # fills the backorder

    again = shipment_id_for(order_id, "NORTH", 1)
    assert sorted(await shipments_of(engine, order_id)) == sorted(
        [
            (first, "NORTH", "cancelled", [{"sku": sku, "quantity": 2}]),
            (again, "NORTH", "pending", [{"sku": sku, "quantity": 2}]),
        ]
    )
    await hand_over(engine, again)
    async with unit_of_work(engine, CONTEXT, projector=project) as uow:
        stock, _ = await uow.load(SKU, sku)
    assert (stock.on_hand["NORTH"], stock.reserved("NORTH")) == (0, 0)
