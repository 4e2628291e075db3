"""GET /saga shows the fulfilment saga as it runs: its steps, their parallel group, whether groups
run at once here, and the compensations."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Oms

pytestmark = pytest.mark.integration


async def test_the_saga_table_shows_which_steps_run_at_once(oms: Oms) -> None:
    response = await oms.order.get("/saga")
    assert response.status_code == 200
    table = response.json()
    groups = {step["step"]: step["group"] for step in table["steps"]}
    assert groups["reserve_stock"] == groups["invoice"] == "reserve_and_invoice"
    assert [name for name, group in groups.items() if group == "reserve_and_invoice"] == [
        "reserve_stock",
        "invoice",
    ]
    assert table["parallel_steps"] is True  # the default the platform runs with
