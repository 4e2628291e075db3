"""Production end to end: the order, inventory, billing and production services as real
processes on the real broker and database, driven through their HTTP APIs.

One platform for the module (production is started beside the three core services); each test
uses SKUs and work centres of its own, so the tests do not see each other's orders.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from libs.security.dev_issuer import bearer
from tests.conftest import RUN_ID
from tests.integration.accounts import ACCOUNT_CHANNEL, account_customer
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tests.integration.openapi_conformance import conformance_hooks
from tools import invariants
from tools.chaos import lag
from tools.processes import CORE_SERVICES, Platform, consumer_groups, eventually_value

pytestmark = pytest.mark.integration

SETTINGS = platform_settings(f"omprod_{RUN_ID}", f"tp{RUN_ID}.")


@pytest.fixture(scope="module")
async def production_platform() -> AsyncIterator[Platform]:
    # The schedule is checked for operations that fell behind every second, not every 30.
    env = {"OM_PRODUCTION_RESCHEDULE_SECONDS": "1"}
    async with running_platform(
        "production", SETTINGS, env, services=(*CORE_SERVICES, "production")
    ) as running:
        yield running


@pytest.fixture
async def oms(production_platform: Platform) -> AsyncIterator[Oms]:
    client = Oms(production_platform)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def production(production_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=production_platform.url("production"),
        timeout=30,
        headers=bearer("production", subject="test-planner"),
        event_hooks=conformance_hooks(),
    ) as client:
        yield client


@pytest.fixture
def uid() -> str:
    return uuid4().hex[:8]


# -- helpers ---------------------------------------------------------------------------------------


async def work_center(production: httpx.AsyncClient, code: str, capacity: int = 1440) -> None:
    response = await production.post(
        "/work-centers", json={"code": code, "name": f"{code} line", "capacity_minutes_per_day": capacity}
    )
    assert response.status_code == 201, response.text


def operation(
    name: str, centre: str, minutes_per_unit: str = "1", inspection: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "work_center": centre,
        "setup_minutes": "5",
        "minutes_per_unit": minutes_per_unit,
        "inspection": inspection,
    }


async def define_bom(
    production: httpx.AsyncClient,
    sku: str,
    components: list[tuple[str, int]],
    operations: list[dict[str, Any]],
) -> httpx.Response:
    return await production.put(
        f"/boms/{sku}",
        json={
            "components": [{"sku": s, "quantity": str(q)} for s, q in components],
            "output_quantity": 1,
            "operations": operations,
        },
    )


async def detail(production: httpx.AsyncClient, production_order_id: str) -> dict[str, Any]:
    response = await production.get(f"/production-orders/{production_order_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_production(
    production: httpx.AsyncClient, production_order_id: str, *statuses: str, timeout: float = 30
) -> dict[str, Any]:
    return dict(
        await eventually_value(
            lambda: detail(production, production_order_id), lambda d: d["status"] in statuses, timeout
        )
    )


async def production_orders(production: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await production.get("/production-orders", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


async def made_for(production: httpx.AsyncClient, count: int = 1, **params: str) -> list[dict[str, Any]]:
    return list(
        await eventually_value(
            lambda: production_orders(production, **params), lambda found: len(found) >= count
        )
    )


async def post(
    production: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await production.post(path, json=body) if body is not None else await production.post(path)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def make(production: httpx.AsyncClient, production_order_id: str, quantity: int) -> None:
    """Every operation started, done in full and completed, in order."""
    for task in (await detail(production, production_order_id))["operations"]:
        await post(production, f"/tasks/{task['task_id']}/assign", {"assignee": "kim"})
        await post(production, f"/tasks/{task['task_id']}/start")
        await post(production, f"/tasks/{task['task_id']}/progress", {"quantity_done": quantity})
        await post(production, f"/tasks/{task['task_id']}/complete")


async def check(production: httpx.AsyncClient, production_order_id: str, **body: Any) -> dict[str, Any]:
    return await post(production, f"/production-orders/{production_order_id}/quality-checks", body)


async def stock_once_received(oms: Oms, sku: str, on_hand: int) -> dict[str, Any]:
    """The SKU's stock once `on_hand` units are there (404 until its first receipt)."""

    async def fetch() -> dict[str, Any]:
        response = await oms.inventory.get(f"/stock/{sku}")
        return dict(response.json()) if response.status_code == 200 else {}

    return dict(await eventually_value(fetch, lambda s: s.get("on_hand") == on_hand))


async def shipments_of(oms: Oms, order_id: str) -> list[dict[str, Any]]:
    response = await oms.inventory.get("/shipments", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return list(response.json())


async def on_account_order(oms: Oms, sku: str, quantity: int) -> str:
    customer = await account_customer(oms)
    return await oms.place(
        order_body(sku, quantity=quantity, terms="on_account", channel=ACCOUNT_CHANNEL, customer=customer)
    )


# -- make-to-order ------------------------------------------------------------------------------------


async def test_a_shortage_of_a_manufactured_sku_is_made_checked_reworked_and_the_order_confirmed(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    bench, chair, leg = f"BENCH-{uid}", f"CHAIR-{uid}", f"LEG-{uid}"
    await work_center(production, bench)
    defined = await define_bom(
        production, chair, [(leg, 4)], [operation("assemble", bench), operation("finish", bench)]
    )
    assert defined.status_code == 200, defined.text
    await oms.receive(leg, 20)

    order_id = await on_account_order(oms, chair, 3)
    await oms.wait_status(order_id, "awaiting_stock")
    (made,) = await made_for(production, order_id=order_id)
    assert (made["sku"], made["quantity"], made["origin"], made["warehouse"]) == (
        chair,
        3,
        "make_to_order",
        "NORTH",
    )
    planned = await eventually_value(
        lambda: oms.get_order(order_id),
        lambda o: any(e["type"] == "OrderProductionPlanned" for e in o["timeline"]),
    )
    assert planned["status"] == "awaiting_stock"
    named = [e["details"] for e in planned["timeline"] if e["type"] == "OrderProductionPlanned"]
    assert named[0]["production_order_id"] == made["production_order_id"]

    production_order_id = made["production_order_id"]
    released = await wait_production(production, production_order_id, "released")
    assert released["components"]["reserved"] == [{"sku": leg, "warehouse": "NORTH", "quantity": 12}]
    assert released["sales_orders"] == [order_id]
    await make(production, production_order_id, 3)

    reworked = await check(
        production, production_order_id, passed=2, failed=1, disposition="rework", note="scratched seat"
    )
    last = reworked["operations"][-1]
    assert (reworked["status"], last["status"], last["quantity_done"]) == ("in_progress", "in_progress", 2)
    await post(production, f"/tasks/{last['task_id']}/progress", {"quantity_done": 3})
    await post(production, f"/tasks/{last['task_id']}/complete")
    done = await check(
        production, production_order_id, passed=1, failed=0, measurements={"height_cm": "45.5"}
    )
    assert (done["status"], done["passed"], done["scrapped"]) == ("completed", 3, 0)

    confirmed = await oms.wait_status(order_id, "confirmed")
    assert "OrderStockAllocated" in [e["type"] for e in confirmed["timeline"]]
    chairs = await oms.stock(chair)
    assert (chairs["on_hand"], chairs["reserved"]) == (3, 3)
    # And it ships: the customer collects the chairs production made.
    (shipment,) = await eventually_value(lambda: shipments_of(oms, order_id), lambda found: len(found) == 1)
    for action in ("pick", "pack", "ready-for-pickup", "collect"):
        await post(oms.inventory, f"/shipments/{shipment['shipment_id']}/{action}", {})
    await oms.wait_status(order_id, "delivered")
    assert (await oms.stock(chair))["on_hand"] == 0
    legs = await stock_once_received(oms, leg, 8)
    assert legs["reserved"] == 0  # 12 legs went into the chairs, once
    finished = await eventually_value(
        lambda: detail(production, production_order_id),
        lambda d: d["goods_received"] and d["components"]["consumed"],
    )
    history = [e["type"] for e in finished["history"]]
    assert history.count("QualityCheckFailed") == 1 and history.count("ProductionCompleted") == 1
    assert [c["failed"] for c in finished["quality_checks"]] == [1, 0]


async def test_a_short_manufactured_component_gets_its_own_production_order_visible_from_both_ends(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    mill = f"MILL-{uid}"
    table, top, board, screw = f"TABLE-{uid}", f"TOP-{uid}", f"BOARD-{uid}", f"SCREW-{uid}"
    await work_center(production, mill)
    for sku, components in ((top, [(board, 2)]), (table, [(top, 1), (screw, 8)])):
        response = await define_bom(production, sku, components, [operation("make", mill)])
        assert response.status_code == 200, response.text
    tree = (await production.get(f"/boms/{table}")).json()["tree"]
    assert tree["total_needs_per_unit"] == [{"sku": board, "quantity": "2"}, {"sku": screw, "quantity": "8"}]
    await oms.receive(board, 10)
    await oms.receive(screw, 40)

    order_id = await on_account_order(oms, table, 2)
    (table_order,) = await made_for(production, order_id=order_id, sku=table)
    waiting = await wait_production(production, table_order["production_order_id"], "awaiting_components")
    assert waiting["components"]["missing"] == [{"sku": top, "quantity": 2}]
    (top_order,) = await made_for(production, order_id=order_id, sku=top)
    assert top_order["parent_production_order_id"] == table_order["production_order_id"]
    assert top_order["quantity"] == 2
    chain = await eventually_value(
        lambda: detail(production, table_order["production_order_id"]), lambda d: d["component_orders"]
    )
    assert [c["production_order_id"] for c in chain["component_orders"]] == [top_order["production_order_id"]]

    await wait_production(production, top_order["production_order_id"], "released")
    await make(production, top_order["production_order_id"], 2)
    await check(production, top_order["production_order_id"], passed=2)
    # The tops go into stock and fill the table order's waiting reservation by themselves.
    await wait_production(production, table_order["production_order_id"], "released")
    await make(production, table_order["production_order_id"], 2)
    await check(production, table_order["production_order_id"], passed=2)
    await oms.wait_status(order_id, "confirmed")
    assert (await oms.stock(top))["on_hand"] == 0


async def test_a_scrapped_shortfall_gets_a_new_production_order_so_the_sales_order_is_not_forgotten(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    press, lamp = f"PRESS-{uid}", f"LAMP-{uid}"
    await work_center(production, press)
    assert (await define_bom(production, lamp, [], [operation("press", press)])).status_code == 200
    order_id = await on_account_order(oms, lamp, 4)
    (first,) = await made_for(production, order_id=order_id)
    await wait_production(production, first["production_order_id"], "released")
    await make(production, first["production_order_id"], 4)
    scrapped = await check(production, first["production_order_id"], passed=3, failed=1, disposition="scrap")
    assert (scrapped["status"], scrapped["passed"], scrapped["scrapped"]) == ("completed", 3, 1)
    second = next(o for o in await made_for(production, 2, order_id=order_id) if o["replaces"])
    assert (second["quantity"], second["replaces"]) == (1, first["production_order_id"])
    await make(production, second["production_order_id"], 1)
    await check(production, second["production_order_id"], passed=1)
    await oms.wait_status(order_id, "confirmed")


# -- make-to-stock -------------------------------------------------------------------------------


async def test_a_low_stock_alert_of_a_manufactured_sku_creates_one_production_order_per_episode(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    oven, bread = f"OVEN-{uid}", f"BREAD-{uid}"
    await work_center(production, oven)
    assert (await define_bom(production, bread, [], [operation("bake", oven)])).status_code == 200
    await oms.receive(bread, 3)
    point = await oms.inventory.put(f"/stock/{bread}/reorder-points/NORTH", json={"min": 5, "max": 20})
    assert point.status_code == 200, point.text  # available 3 <= 5: an alert at once

    (to_stock,) = await made_for(production, sku=bread)
    assert (to_stock["origin"], to_stock["quantity"], to_stock["warehouse"]) == ("make_to_stock", 17, "NORTH")
    # Back above the reorder point (the alert clears), then below it again: a new alert, but
    # the production order of the first is still open, so no second one.
    await oms.receive(bread, 10)
    damaged = await oms.inventory.post(
        "/stock/adjustments", json={"warehouse": "NORTH", "sku": bread, "delta": -10, "reason": "damage"}
    )
    assert damaged.status_code == 201, damaged.text

    async def alerted() -> bool:
        alerts = (await oms.inventory.get("/stock/alerts")).json()
        return any(a["sku"] == bread for a in alerts)

    await eventually_value(alerted, bool)
    groups = [g for g in consumer_groups(SETTINGS) if g.service == "production"]
    await eventually_value(lambda: lag(SETTINGS, groups), lambda lags: not any(lags.values()))
    assert len(await production_orders(production, sku=bread)) == 1


# -- BOM cycles ----------------------------------------------------------------------------------


async def test_a_bom_that_would_contain_itself_is_refused_naming_the_cycle(
    production: httpx.AsyncClient, uid: str
) -> None:
    lathe, axle, wheel, cart = f"LATHE-{uid}", f"AXLE-{uid}", f"WHEEL-{uid}", f"CART-{uid}"
    await work_center(production, lathe)
    assert (await define_bom(production, cart, [(wheel, 4)], [operation("build", lathe)])).status_code == 200
    assert (await define_bom(production, wheel, [(axle, 1)], [operation("turn", lathe)])).status_code == 200
    refused = await define_bom(production, axle, [(cart, 1)], [operation("cut", lathe)])
    assert refused.status_code == 422, refused.text
    assert f"{axle} -> {cart} -> {wheel} -> {axle}" in refused.json()["detail"]
    assert (await production.get(f"/boms/{axle}")).status_code == 404


async def test_a_bom_is_refused_for_a_product_the_catalogue_says_is_not_manufactured(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    bench, tea = f"PACK-{uid}", f"TEA-{uid}"
    await work_center(production, bench)
    product = {"name": "Tea", "category": "food", "unit": "tin", "weight_kg": "0.2", "manufactured": False}
    assert (await oms.inventory.put(f"/products/{tea}", json=product)).status_code in (200, 201)
    refused = await eventually_value(
        lambda: define_bom(production, tea, [], [operation("pack", bench)]), lambda r: r.status_code == 422
    )
    assert "not manufactured" in refused.json()["detail"]
    manufactured = await oms.inventory.put(f"/products/{tea}", json={**product, "manufactured": True})
    assert manufactured.status_code in (200, 201), manufactured.text
    await eventually_value(
        lambda: define_bom(production, tea, [], [operation("pack", bench)]), lambda r: r.status_code == 200
    )


# -- cancellation --------------------------------------------------------------------------------


async def test_cancelling_the_sales_order_cancels_a_production_order_waiting_for_components(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    loom, rug, wool = f"LOOM-{uid}", f"RUG-{uid}", f"WOOL-{uid}"
    await work_center(production, loom)
    assert (await define_bom(production, rug, [(wool, 3)], [operation("weave", loom)])).status_code == 200
    await oms.receive(wool, 2)  # not enough for 2 rugs (6)
    order_id = await on_account_order(oms, rug, 2)
    (made,) = await made_for(production, order_id=order_id)
    await wait_production(production, made["production_order_id"], "awaiting_components")

    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "customer changed mind"})
    assert cancelled.status_code in (200, 202), cancelled.text
    gone = await wait_production(production, made["production_order_id"], "cancelled")
    assert gone["cancel_reason"] == f"sales order {order_id} cancelled"

    async def reservation() -> dict[str, Any]:
        return dict((await oms.inventory.get(f"/reservations/{made['production_order_id']}")).json())

    await eventually_value(reservation, lambda r: r.get("status") == "released")
    wool_stock = await oms.stock(wool)
    assert (wool_stock["on_hand"], wool_stock["reserved"], wool_stock["backorders"]) == (2, 0, [])


async def test_a_production_order_in_progress_goes_on_into_stock_when_its_sales_order_is_cancelled(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    kiln, vase, clay = f"KILN-{uid}", f"VASE-{uid}", f"CLAY-{uid}"
    await work_center(production, kiln)
    assert (await define_bom(production, vase, [(clay, 1)], [operation("fire", kiln)])).status_code == 200
    await oms.receive(clay, 5)
    order_id = await on_account_order(oms, vase, 2)
    (made,) = await made_for(production, order_id=order_id)
    production_order_id = made["production_order_id"]
    await wait_production(production, production_order_id, "released")
    task_id = (await detail(production, production_order_id))["operations"][0]["task_id"]
    await post(production, f"/tasks/{task_id}/start")

    cancelled = await oms.order.post(f"/orders/{order_id}/cancel", json={"reason": "no longer needed"})
    assert cancelled.status_code in (200, 202), cancelled.text
    await oms.wait_status(order_id, "cancelled")
    await post(production, f"/tasks/{task_id}/progress", {"quantity_done": 2})
    await post(production, f"/tasks/{task_id}/complete")
    completed = await check(production, production_order_id, passed=2)
    assert completed["status"] == "completed"
    vases = await stock_once_received(oms, vase, 2)
    assert vases["available"] == 2  # the cancelled order does not hold them
    assert (await oms.stock(clay))["on_hand"] == 3


# -- scheduling ----------------------------------------------------------------------------------


async def test_scheduling_by_due_date_marks_an_order_late_when_capacity_is_short(
    production: httpx.AsyncClient, uid: str
) -> None:
    press, part = f"SLOW-{uid}", f"BRACKET-{uid}"
    await work_center(production, press, capacity=60)
    assert (await define_bom(production, part, [], [operation("stamp", press, "10")])).status_code == 200
    now = datetime.now(UTC)

    async def create(quantity: int, due: datetime) -> httpx.Response:
        body = {"sku": part, "quantity": quantity, "warehouse": "NORTH", "due": due.isoformat()}
        # 201 once production has heard of inventory's warehouses (422 unknown_warehouse before)
        response: httpx.Response = await eventually_value(
            lambda: production.post("/production-orders", json=body), lambda r: r.status_code == 201
        )
        return response

    relaxed = (await create(1, now + timedelta(days=30))).json()
    urgent = (await create(12, now + timedelta(hours=2))).json()  # 5 + 120 minutes at 60 a day
    late = await detail(production, urgent["production_order_id"])
    assert late["late"] is True
    assert datetime.fromisoformat(late["expected_finish"]) > now + timedelta(hours=2)
    on_time = await detail(production, relaxed["production_order_id"])
    assert on_time["late"] is False
    # Earliest due date first: the urgent order goes before the one created before it.
    assert on_time["operations"][0]["planned_start"] >= late["operations"][0]["planned_finish"]

    schedule = (await production.get("/schedule", params={"work_center": press})).json()
    (centre,) = schedule["work_centers"]
    bars = [bar["production_order_id"] for bar in centre["operations"]]
    assert bars == [urgent["production_order_id"], relaxed["production_order_id"]]
    assert urgent["production_order_id"] in schedule["late"]


async def test_an_order_that_falls_behind_its_plan_is_planned_again(
    production: httpx.AsyncClient, uid: str
) -> None:
    bench, peg = f"QUICK-{uid}", f"PEG-{uid}"
    await work_center(production, bench)
    instant = {"name": "glue", "work_center": bench, "setup_minutes": "0", "minutes_per_unit": "0"}
    assert (await define_bom(production, peg, [], [instant])).status_code == 200
    body = {
        "sku": peg,
        "quantity": 1,
        "warehouse": "NORTH",
        "due": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }
    created = await eventually_value(
        lambda: production.post("/production-orders", json=body), lambda r: r.status_code == 201
    )
    production_order_id = created.json()["production_order_id"]
    first_plan = created.json()["operations"][0]["planned_finish"]

    # Planned to be done at once, and nobody started it: behind a moment later, so planned again.
    replanned = await eventually_value(
        lambda: detail(production, production_order_id),
        lambda d: [e["type"] for e in d["history"]].count("ProductionScheduled") >= 2,
    )
    assert replanned["operations"][0]["planned_finish"] > first_plan
    await make(production, production_order_id, 1)
    await check(production, production_order_id, passed=1)


# -- invariants ----------------------------------------------------------------------------------


async def test_the_invariant_checker_finds_production_and_its_stock_adding_up(
    oms: Oms, production: httpx.AsyncClient, uid: str
) -> None:
    lathe, spindle, rod = f"SPIN-{uid}", f"SPINDLE-{uid}", f"ROD-{uid}"
    await work_center(production, lathe)
    assert (await define_bom(production, spindle, [(rod, 2)], [operation("turn", lathe)])).status_code == 200
    await oms.receive(rod, 10)
    order_id = await on_account_order(oms, spindle, 3)
    (made,) = await made_for(production, order_id=order_id)
    await wait_production(production, made["production_order_id"], "released")
    await make(production, made["production_order_id"], 3)
    await check(production, made["production_order_id"], passed=2, failed=1, disposition="scrap")
    await eventually_value(
        lambda: detail(production, made["production_order_id"]),
        lambda d: d["goods_received"] and d["components"]["consumed"],
    )

    report = await invariants.check(SETTINGS, stuck_after=3600)
    assert [v for v in report.violations if v.startswith(("production:", "inventory:"))] == []
    assert report.counts["production_completed"] >= 1
    assert report.counts.get("components_consumed_twice", 0) == 0
