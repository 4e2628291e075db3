"""The Kafka intake answers: every message a channel publishes to the intake topic gets one
result on the results topic, keyed `<channel>:<external_id>` (tools/intake.py sends them as
a channel would). A refused message is dead-lettered, answered with the reason, and logged on
one line that names where it lay and never what it held."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from libs.events.intake import OrderIntakeResult
from libs.events.topics import dead_letter_topic
from libs.runtime.settings import RuntimeSettings
from tests.conftest import eventually
from tests.integration.conftest import Oms, order_body
from tests.integration.test_nothing_stalls import read_topic
from tools.intake import Answer, raw_message, send_and_wait, submission_message
from tools.processes import Platform

pytestmark = pytest.mark.integration


async def answered(settings: RuntimeSettings, sent: Any) -> tuple[Answer, OrderIntakeResult]:
    # Generous: an earlier test may have restarted the order service, whose group may rebalance.
    answer = await send_and_wait(settings, sent, timeout=90)
    assert answer.result is not None, "no answer on the results topic"
    return answer, answer.result


async def test_an_intake_order_is_answered_with_its_order_id_and_status_and_a_repeat_with_the_same_order(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings
) -> None:
    await oms.receive(sku, 5)
    reference = f"web-{uuid4().hex[:8]}"
    payload = order_body(sku, external_id=reference)

    answer, first = await answered(e2e_settings, submission_message(payload))

    assert answer.key == f"web:{reference}".encode()
    assert (first.outcome, first.channel, first.external_id, first.duplicate) == (
        "accepted",
        "web",
        reference,
        False,
    )
    assert first.order_id is not None
    order = await oms.get_order(first.order_id)
    assert order["external_id"] == reference
    assert first.status == "approved"  # what review decided when it was placed

    # The channel sends it again (a new envelope, the same order): the same order, said so.
    _, repeat = await answered(e2e_settings, submission_message(payload))
    assert (repeat.outcome, repeat.order_id, repeat.duplicate) == ("accepted", first.order_id, True)


async def test_refused_intake_messages_are_answered_with_the_reason_dead_lettered_and_logged_once(
    oms: Oms, sku: str, e2e_settings: RuntimeSettings, platform: Platform
) -> None:
    email = f"{uuid4().hex[:8]}@example.com"
    customer = {"name": "Refused Person", "email": email}

    # A line that breaks two rules, and a price that is not a number.
    invalid_reference = f"web-{uuid4().hex[:8]}"
    envelope = json.loads(submission_message(order_body(sku, external_id=invalid_reference)).value)
    envelope["payload"]["customer"] = customer
    envelope["payload"]["lines"][0].update(quantity=0, unit_price="cheap")
    _, invalid = await answered(e2e_settings, raw_message(json.dumps(envelope).encode()))

    assert (invalid.outcome, invalid.reason, invalid.external_id) == ("refused", "invalid", invalid_reference)
    assert {error.field for error in invalid.errors} == {
        "payload.lines[0].quantity",
        "payload.lines[0].unit_price",
    }

    # Cut off in the middle (a broken producer): not JSON, but who sent it can still be read.
    cut_reference = f"web-{uuid4().hex[:8]}"
    whole = submission_message({**order_body(sku, external_id=cut_reference), "customer": customer}).value
    cut = whole[: whole.index(b'"lines"')]
    cut_answer, cut_off = await answered(e2e_settings, raw_message(cut))

    assert cut_answer.key == f"web:{cut_reference}".encode()
    assert (cut_off.outcome, cut_off.reason) == ("refused", "undecodable")
    assert str(cut_off.intake_event_id) == json.loads(whole)["event_id"]

    # The same external id for a different order: the business rule's own code.
    await oms.receive(sku, 5)
    reused = f"web-{uuid4().hex[:8]}"
    _, accepted = await answered(e2e_settings, submission_message(order_body(sku, external_id=reused)))
    conflict_answer, conflict = await answered(
        e2e_settings, submission_message(order_body(sku, quantity=2, external_id=reused))
    )
    assert accepted.outcome == "accepted"
    assert (conflict.outcome, conflict.reason, conflict.order_id) == ("refused", "idempotency_conflict", None)

    # Each refused message is in the intake's dead-letter topic...
    group = e2e_settings.topic("order-intake")
    dead = await read_topic(e2e_settings, dead_letter_topic(group))
    sources = {dict(record.headers)["dlq.source"].decode() for record in dead}
    refused_at = [
        f"{answer.sent.topic}/{answer.sent.partition}@{answer.sent.offset}"
        for answer in (cut_answer, conflict_answer)
    ]
    assert set(refused_at) <= sources

    # ...and logged once, on one line naming the consumer, where it lay and why; never its bytes.
    log = Path(platform.log_path("order"))

    def dead_letter_lines() -> list[str]:
        return [line for line in log.read_text().splitlines() if "dead letter:" in line and group in line]

    lines = await eventually(lambda: _lines_naming(dead_letter_lines, refused_at))
    assert len(lines[refused_at[0]]) == 1 and len(lines[refused_at[1]]) == 1, lines
    assert "undecodable" in lines[refused_at[0]][0]
    assert "idempotency" in lines[refused_at[1]][0]
    assert not [line for line in dead_letter_lines() if email in line or "Refused Person" in line]


async def _lines_naming(read: Any, sources: list[str]) -> dict[str, list[str]] | None:
    lines = read()
    found = {source: [line for line in lines if f" {source} " in line] for source in sources}
    return found if all(found.values()) else None
