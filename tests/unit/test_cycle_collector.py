"""OM_GC_YOUNG_THRESHOLD: a started service runs Python's cycle collector less often and no
longer walks what was alive at its start; left at 0, Python's defaults stay."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from libs.runtime.service import relax_cycle_collector
from libs.runtime.settings import RuntimeSettings


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_the_setting_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_GC_YOUNG_THRESHOLD", "50000")
    assert RuntimeSettings().gc_young_threshold == 50_000


def test_a_threshold_freezes_the_started_heap_and_spaces_young_collections(collector_restored: None) -> None:
    older = gc.get_threshold()[1:]
    relax_cycle_collector(50_000)
    assert gc.get_threshold() == (50_000, *older)
    assert gc.get_freeze_count() > 0  # the modules and objects alive now are out of its view
    # Cycles made afterwards are still found and freed.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_zero_leaves_pythons_collector_as_it_is(collector_restored: None) -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    relax_cycle_collector(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
