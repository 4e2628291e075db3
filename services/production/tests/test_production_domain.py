"""The production domain: BOMs (cycles, explosion), the production order's life (components,
tasks, progress, quality checks, completion, cancellation) and the scheduler.

Written like the saga tests: `given(...)` a production order's history, act once, then
`expect(...)` the events it records.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from libs.domain import DomainError
from libs.events.base import DomainEvent
from libs.events.inventory import ConsumeStock, ReceiveStock, ReleaseStock, ReserveStock
from libs.events.production import (
    BomComponent,
    BomDefined,
    BomOperation,
    ProductionCancelled,
    ProductionCompleted,
    ProductionReleased,
    ProductionScheduled,
    QualityCheckFailed,
    WorkCalendar,
)
from libs.events.values import Allocation, SkuQuantity
from services.production.domain import bom as bom_domain
from services.production.domain import production_order as po
from services.production.domain.bom import BOM, Bom, explode, find_cycle
from services.production.domain.production_order import PRODUCTION_ORDER, ProductionOrder
from services.production.domain.saga import AFTER_COMPLETION, request_for
from services.production.domain.schedule import behind, schedule
from services.production.domain.work_center import WorkCenter

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PO_ID = "PO-1"


def bom(
    sku: str = "TABLE",
    components: tuple[tuple[str, str], ...] = (("LEG", "4"), ("TOP", "1")),
    operations: tuple[tuple[str, str, int, str, bool], ...] = (
        ("cut", "SAW", 10, "2", False),
        ("assemble", "BENCH", 5, "3", False),
    ),
    output_quantity: int = 1,
    scrap_rate: str = "0",
) -> Bom:
    defined = BomDefined(
        sku=sku,
        components=tuple(BomComponent(sku=s, quantity=Decimal(q)) for s, q in components),
        output_quantity=output_quantity,
        scrap_rate=Decimal(scrap_rate),
        operations=tuple(
            BomOperation(
                name=n, work_center=w, setup_minutes=Decimal(s), minutes_per_unit=Decimal(m), inspection=i
            )
            for n, w, s, m, i in operations
        ),
    )
    return BOM.replay([defined])


def given(*decisions: list[DomainEvent]) -> ProductionOrder:
    return PRODUCTION_ORDER.replay([event for events in decisions for event in events])


def created(quantity: int = 10, product: Bom | None = None, due: datetime | None = None) -> list[DomainEvent]:
    return po.decide_create(
        ProductionOrder(),
        PO_ID,
        product or bom(),
        quantity,
        "NORTH",
        due or NOW + timedelta(days=7),
        "manual",
    )


def released(state: ProductionOrder) -> list[DomainEvent]:
    return po.decide_components_reserved(
        state,
        (
            Allocation(sku="LEG", warehouse="NORTH", quantity=40),
            Allocation(sku="TOP", warehouse="NORTH", quantity=10),
        ),
    )


def released_order(quantity: int = 10, product: Bom | None = None) -> ProductionOrder:
    state = given(created(quantity, product))
    return given(created(quantity, product), released(state))


def run(state: ProductionOrder, events: list[DomainEvent]) -> ProductionOrder:
    for event in events:
        state = po.evolve(state, event)
    return state


def types(events: list[DomainEvent]) -> list[str]:
    return [e.message_type for e in events]


# -- BOMs ---------------------------------------------------------------------------------------


def test_a_bom_containing_itself_through_its_components_is_refused_naming_the_cycle() -> None:
    others = {"TOP": ["BOARD"], "BOARD": ["TABLE"]}
    with pytest.raises(DomainError) as refused:
        bom_domain.decide_define(
            Bom(), "TABLE", [BomComponent(sku="TOP", quantity=Decimal(1))], 1, Decimal(0),
            [BomOperation(name="cut", work_center="SAW")], others, {"SAW"},
        )  # fmt: skip
    assert refused.value.code == "bom_cycle"
    assert "TABLE -> TOP -> BOARD -> TABLE" in refused.value.message


def test_find_cycle_ignores_shared_components_that_are_not_cycles() -> None:
    others = {"A": ["C"], "B": ["C"], "C": ["D"]}
    assert find_cycle("TOP", ["A", "B"], others) is None
    assert find_cycle("D", ["A"], others) == ["D", "A", "C", "D"]


def test_a_bom_naming_an_unknown_work_center_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        bom_domain.decide_define(
            Bom(), "TABLE", [], 1, Decimal(0), [BomOperation(name="cut", work_center="LASER")], {}, {"SAW"}
        )
    assert refused.value.code == "unknown_work_center"


def test_a_bom_must_agree_with_the_catalogue_where_it_knows_the_product() -> None:
    operations = [BomOperation(name="pack", work_center="SAW")]
    with pytest.raises(DomainError) as refused:
        bom_domain.decide_define(Bom(), "TEA", [], 1, Decimal(0), operations, {}, {"SAW"}, False)
    assert refused.value.code == "not_manufactured"
    assert bom_domain.decide_define(Bom(), "TEA", [], 1, Decimal(0), operations, {}, {"SAW"}, True)
    assert bom_domain.decide_define(Bom(), "TEA", [], 1, Decimal(0), operations, {}, {"SAW"}, None)


def test_exploded_tree_totals_leaf_needs_per_unit_over_levels() -> None:
    boms = {
        "TABLE": bom("TABLE", (("LEG", "4"), ("TOP", "1"))),
        "LEG": bom("LEG", (("WOOD", "1"), ("SCREW", "2")), output_quantity=2),
        "TOP": bom("TOP", (("WOOD", "3"),)),
    }
    tree = explode("TABLE", boms)
    assert tree["manufactured"] is True
    leg = tree["components"][0]
    assert (leg["sku"], leg["quantity_per_unit"], leg["manufactured"]) == ("LEG", "4", True)
    assert {c["sku"]: c["quantity_per_unit"] for c in leg["components"]} == {"WOOD": "2", "SCREW": "4"}
    assert tree["total_needs_per_unit"] == [
        {"sku": "SCREW", "quantity": "4"},
        {"sku": "WOOD", "quantity": "5"},
    ]


def test_components_for_a_quantity_include_the_scrap_rate_rounded_up() -> None:
    product = bom(components=(("LEG", "4"),), scrap_rate="0.1")
    assert bom_domain.components_for(product, 3) == (SkuQuantity(sku="LEG", quantity=14),)  # 13.2 -> 14


# -- components ---------------------------------------------------------------------------------


def test_a_new_production_order_is_planned_with_one_task_per_operation() -> None:
    state = given(created())
    assert state.status == "planned"
    assert [t.task_id for t in state.tasks] == ["PO-1.1", "PO-1.2"]
    assert state.components == (SkuQuantity(sku="LEG", quantity=40), SkuQuantity(sku="TOP", quantity=10))
    assert state.tasks[-1].inspected  # the completion is always checked


def test_short_components_wait_then_reserved_components_release_the_order() -> None:
    state = given(created())
    waiting = po.decide_components_short(state, (SkuQuantity(sku="LEG", quantity=5),))
    assert types(waiting) == ["ProductionAwaitingComponents"]
    state = run(state, waiting)
    assert state.status == "awaiting_components"
    assert types(released(state)) == ["ProductionReleased"]
    assert po.decide_components_short(run(state, released(state)), ()) == []


def test_a_product_without_components_is_released_at_once() -> None:
    events = created(product=bom(components=()))
    assert [type(e) for e in events] == [events[0].__class__, ProductionReleased]


def test_tasks_cannot_start_before_the_components_are_reserved() -> None:
    with pytest.raises(DomainError) as refused:
        po.decide_start(given(created()), "PO-1.1")
    assert refused.value.code == "not_released"


# -- progress and quality ----------------------------------------------------------------------


def test_progress_is_cumulative_and_never_above_the_quantity_or_what_was_handed_on() -> None:
    state = released_order(10)
    state = run(state, po.decide_start(state, "PO-1.1"))
    assert state.status == "in_progress"
    state = run(state, po.decide_progress(state, "PO-1.1", 4))
    assert po.decide_progress(state, "PO-1.1", 4) == []  # the same total again: nothing new
    with pytest.raises(DomainError) as above:
        po.decide_progress(state, "PO-1.1", 11)
    assert above.value.code == "above_quantity"
    with pytest.raises(DomainError) as backwards:
        po.decide_progress(state, "PO-1.1", 3)
    assert backwards.value.code == "progress_backwards"
    state = run(state, po.decide_start(state, "PO-1.2"))
    with pytest.raises(DomainError) as ahead:
        po.decide_progress(state, "PO-1.2", 5)  # only 4 came from cutting
    assert ahead.value.code == "above_available"


def finish_all(state: ProductionOrder, quantity: int) -> ProductionOrder:
    for task in state.tasks:
        state = run(state, po.decide_start(state, task.task_id))
        state = run(state, po.decide_progress(state, task.task_id, quantity))
        state = run(state, po.decide_complete_task(state, task.task_id))
    return state


def test_rework_sends_failed_units_back_through_the_operation_then_completion_adds_up() -> None:
    state = finish_all(released_order(10), 10)
    assert state.status == "in_progress"  # done, but not checked yet
    check = po.decide_quality_check(
        state, "qc-1", None, 8, 2, "rework", {"flatness": Decimal("0.2")}, "wobbly"
    )
    assert types(check) == ["QualityCheckFailed"]
    failed = check[0]
    assert isinstance(failed, QualityCheckFailed) and failed.reason == "wobbly"
    state = run(state, check)
    last = state.tasks[-1]
    assert (last.status, last.done, last.passed) == ("in_progress", 8, 8)
    state = run(state, po.decide_progress(state, "PO-1.2", 10))
    state = run(state, po.decide_complete_task(state, "PO-1.2"))
    passed = po.decide_quality_check(state, "qc-2", None, 2, 0, None, {}, "")
    assert types(passed) == ["QualityCheckPassed", "ProductionCompleted"]
    completed = passed[1]
    assert isinstance(completed, ProductionCompleted)
    assert (completed.passed, completed.scrapped, completed.quantity) == (10, 0, 10)
    assert completed.receipt_id == "production:PO-1"


def test_scrap_records_the_loss_and_passed_plus_scrapped_is_the_quantity() -> None:
    state = finish_all(released_order(10), 10)
    events = po.decide_quality_check(state, "qc-1", None, 7, 3, "scrap", {}, "cracked")
    assert types(events) == ["QualityCheckFailed", "ProductionCompleted"]
    completed = events[1]
    assert isinstance(completed, ProductionCompleted)
    assert (completed.passed, completed.scrapped) == (7, 3)


def test_scrap_at_an_inspected_operation_shrinks_what_later_operations_make() -> None:
    product = bom(operations=(("cut", "SAW", 0, "1", True), ("assemble", "BENCH", 0, "1", False)))
    state = released_order(10, product)
    state = run(state, po.decide_start(state, "PO-1.1"))
    state = run(state, po.decide_progress(state, "PO-1.1", 10))
    state = run(state, po.decide_quality_check(state, "qc-1", "cut", 9, 1, "scrap", {}, "split"))
    state = run(state, po.decide_complete_task(state, "PO-1.1"))
    state = run(state, po.decide_start(state, "PO-1.2"))
    state = run(state, po.decide_progress(state, "PO-1.2", 9))
    state = run(state, po.decide_complete_task(state, "PO-1.2"))
    events = po.decide_quality_check(state, "qc-2", None, 9, 0, None, {}, "")
    completed = events[-1]
    assert isinstance(completed, ProductionCompleted)
    assert (completed.passed, completed.scrapped, completed.quantity) == (9, 1, 10)


def test_a_check_cannot_count_more_than_the_unchecked_units_nor_fail_without_disposition() -> None:
    state = released_order(10)
    state = run(state, po.decide_start(state, "PO-1.1"))
    state = run(state, po.decide_progress(state, "PO-1.1", 5))
    state = run(state, po.decide_start(state, "PO-1.2"))
    state = run(state, po.decide_progress(state, "PO-1.2", 3))
    with pytest.raises(DomainError) as too_many:
        po.decide_quality_check(state, "qc", None, 4, 0, None, {}, "")
    assert too_many.value.code == "more_than_unchecked"
    with pytest.raises(DomainError) as no_disposition:
        po.decide_quality_check(state, "qc", None, 1, 1, None, {}, "")
    assert no_disposition.value.code == "disposition_required"
    with pytest.raises(DomainError) as not_inspected:
        po.decide_quality_check(state, "qc", "cut", 1, 0, None, {}, "")
    assert not_inspected.value.code == "not_inspected"


def test_a_task_is_completed_only_when_all_its_units_are_done() -> None:
    state = released_order(10)
    state = run(state, po.decide_start(state, "PO-1.1"))
    state = run(state, po.decide_progress(state, "PO-1.1", 9))
    with pytest.raises(DomainError) as unfinished:
        po.decide_complete_task(state, "PO-1.1")
    assert unfinished.value.code == "task_unfinished"
    state = run(state, po.decide_progress(state, "PO-1.1", 10))
    assert types(po.decide_complete_task(state, "PO-1.1")) == ["ProductionTaskCompleted"]


# -- cancellation -------------------------------------------------------------------------------


def test_cancelling_an_unstarted_order_releases_its_components_an_order_in_progress_continues() -> None:
    state = released_order(10)
    cancelled = po.decide_cancel(state, "sales order cancelled")
    assert isinstance(cancelled[0], ProductionCancelled) and cancelled[0].components_released
    started = run(state, po.decide_start(state, "PO-1.1"))
    assert po.decide_cancel(started, "sales order cancelled") == []
    assert types(po.decide_cancel(started, "stop it", stop_in_progress=True)) == ["ProductionCancelled"]
    assert po.decide_cancel(run(state, cancelled), "again") == []


# -- scheduling ---------------------------------------------------------------------------------


def centres(capacity: int = 480) -> dict[str, WorkCenter]:
    return {
        code: WorkCenter(code, code, capacity, WorkCalendar(day_start="08:00")) for code in ("SAW", "BENCH")
    }


def test_operations_are_planned_in_sequence_within_daily_capacity() -> None:
    state = released_order(10)  # cut 10 + 2*10 = 30 min, assemble 5 + 3*10 = 35 min
    plan = schedule([state], centres(), NOW)[PO_ID]
    cut, assemble = plan.operations
    assert (cut.planned_start, cut.planned_finish) == (NOW, NOW + timedelta(minutes=30))
    assert (assemble.planned_start, assemble.planned_finish) == (
        cut.planned_finish,
        NOW + timedelta(minutes=65),
    )
    assert plan.expected_finish == NOW + timedelta(minutes=65)


def test_earliest_due_date_goes_first_and_a_short_capacity_makes_an_order_late() -> None:
    product = bom(operations=(("cut", "SAW", 0, "10", False),))
    later = given(
        po.decide_create(ProductionOrder(), "PO-A", product, 6, "NORTH", NOW + timedelta(days=5), "manual")
    )
    sooner = given(
        po.decide_create(ProductionOrder(), "PO-B", product, 6, "NORTH", NOW + timedelta(hours=2), "manual")
    )
    later, sooner = (run(o, po.decide_components_reserved(o, ())) for o in (later, sooner))
    plans = schedule([later, sooner], centres(capacity=60), NOW)
    # B (due first) takes today's hour; A starts at tomorrow's shift.
    assert plans["PO-B"].operations[0].planned_start == NOW
    assert plans["PO-B"].expected_finish == NOW + timedelta(hours=1)
    assert plans["PO-A"].operations[0].planned_start == NOW + timedelta(days=1)
    assert not po.decide_schedule(sooner, plans["PO-B"].operations, plans["PO-B"].expected_finish)[0].late  # type: ignore[attr-defined]


def test_an_order_that_cannot_finish_by_its_due_date_is_late_with_its_expected_finish() -> None:
    product = bom(operations=(("cut", "SAW", 0, "10", False),))
    order = given(
        po.decide_create(ProductionOrder(), "PO-L", product, 12, "NORTH", NOW + timedelta(hours=3), "manual")
    )
    order = run(order, po.decide_components_reserved(order, ()))
    plan = schedule([order], centres(capacity=60), NOW)["PO-L"]
    assert plan.expected_finish == NOW + timedelta(days=1, hours=1)  # 60 min today, 60 tomorrow
    events = po.decide_schedule(order, plan.operations, plan.expected_finish)
    assert isinstance(events[0], ProductionScheduled)
    assert events[0].late and events[0].expected_finish == NOW + timedelta(days=1, hours=1)


def test_closed_days_and_weekdays_off_are_skipped() -> None:
    product = bom(operations=(("cut", "SAW", 0, "1", False),))
    order = given(
        po.decide_create(ProductionOrder(), "PO-C", product, 30, "NORTH", NOW + timedelta(days=9), "manual")
    )
    order = run(order, po.decide_components_reserved(order, ()))
    calendar = WorkCalendar(working_days=("mon", "tue"), day_start="08:00", closed=(date(2026, 11, 24),))
    saw = {"SAW": WorkCenter("SAW", "saw", 20, calendar)}
    plan = schedule([order], saw, NOW)["PO-C"]  # NOW is a Monday
    assert plan.expected_finish == datetime(2026, 11, 30, 8, 10, tzinfo=UTC)  # Tuesday closed: next Monday


def test_an_order_whose_planned_finish_passed_is_behind() -> None:
    state = released_order(10)
    plan = schedule([state], centres(), NOW)[PO_ID]
    state = run(state, po.decide_schedule(state, plan.operations, plan.expected_finish))
    assert not behind(state, NOW)
    assert behind(state, NOW + timedelta(hours=2))
    assert po.decide_schedule(state, plan.operations, plan.expected_finish) == []  # unchanged plan: nothing


# -- the production saga's table ----------------------------------------------------------------


def test_the_saga_table_names_each_steps_command_for_an_order() -> None:
    state = released_order(10)
    reserve = request_for("reserve_components", state)
    assert reserve is not None
    command, key = reserve
    assert isinstance(command, ReserveStock) and key == PO_ID and command.backorder
    assert request_for("make", state) is None  # people do it, through the API
    assert request_for("receive_goods", state) is None  # nothing passed yet
    state = run(
        finish_all(state, 10),
        po.decide_quality_check(finish_all(state, 10), "qc", None, 9, 1, "scrap", {}, ""),
    )
    consume, receive = (request_for(step, state) for step in AFTER_COMPLETION)
    assert consume is not None and isinstance(consume[0], ConsumeStock)
    assert receive is not None and isinstance(receive[0], ReceiveStock)
    assert (receive[0].quantity, receive[0].receipt_id, receive[1]) == (9, "production:PO-1", "TABLE")
    release = request_for("release_components", given(created()))
    assert release is not None and isinstance(release[0], ReleaseStock)
    assert request_for("reserve_components", given(created(product=bom(components=())))) is None
