"""A clean start and stop log no ERROR: an operator reads ERROR as "something is wrong", so a
start that prints them every time (the Kafka client meeting topics it just created, or a
group coordinator still loading) teaches people to ignore them."""

from __future__ import annotations

import re
from uuid import uuid4

import pytest

from libs.runtime.settings import RuntimeSettings
from tests.conftest import RUN_ID
from tests.integration.conftest import Oms, order_body, platform_settings, running_platform
from tools.intake import send_and_wait, submission_message
from tools.processes import Platform

pytestmark = pytest.mark.integration

LEVEL = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")


async def an_order_goes_through(platform: Platform, settings: RuntimeSettings) -> None:
    """Every consumer group has joined and fetched its offsets (where start-up errors were
    logged) once an order has gone through all three services and the intake has answered."""
    oms = Oms(platform)
    try:
        sku = f"SKU-{uuid4().hex[:10]}"
        await oms.receive(sku, 1)
        order_id = await oms.place(order_body(sku))
        await oms.wait_status(order_id, "awaiting_payment", timeout=60)
    finally:
        await oms.close()
    answer = await send_and_wait(settings, submission_message(order_body(sku, external_id="clean-1")), 60)
    assert answer.result is not None and answer.result.outcome == "accepted", answer


async def test_a_clean_start_and_stop_of_the_platform_log_no_error() -> None:
    suffix = uuid4().hex[:6]
    # New topics, consumer groups and databases, as on a first start.
    settings = platform_settings(f"omclean_{RUN_ID}_{suffix}", f"clean{RUN_ID}{suffix}.")
    async with running_platform(f"clean-{suffix}", settings, {}) as platform:
        await an_order_goes_through(platform, settings)

    for name in platform.ports:
        log = platform.log_path(name).read_text()
        assert f"{name} started" in log, f"{name} did not start: {platform.log_path(name)}"
        errors = [line for line in log.splitlines() if LEVEL.match(line)]
        assert errors == [], f"{name} logged at ERROR on a clean start or stop:\n" + "\n".join(errors)
