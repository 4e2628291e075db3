"""What names an intake message to its channel, read from bytes the order service could not
decode; the field paths of a refusal; the documented examples stay valid messages."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from pydantic import ValidationError

from libs.events import decode
from libs.events.intake import SubmissionIdentity, field_errors, recover_identity, result_key
from libs.events.order import SubmitOrder

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
EVENT_ID = "6f1c1f3e-5b7a-4f51-9a43-2f7d0f6f1a01"


def test_a_message_cut_off_mid_way_still_names_its_channel_external_id_and_event_id() -> None:
    whole = (EXAMPLES / "intake-envelope.json").read_bytes()
    cut = whole[: whole.index(b'"lines"')]

    identity = recover_identity(cut)

    assert (identity.channel, identity.external_id) == ("web", "WEB-1001")
    assert identity.intake_event_id == UUID(EVENT_ID)
    assert result_key(identity) == "web:WEB-1001"


def test_a_value_that_is_no_plausible_reference_is_left_out() -> None:
    document = {"event_id": "not-a-uuid", "payload": {"channel": 7, "external_id": "x" * 201}}

    identity = recover_identity(json.dumps(document).encode())

    assert identity == SubmissionIdentity()
    assert result_key(identity) is None  # nothing to answer to


def test_without_an_external_id_the_answer_is_keyed_by_the_intake_event_id() -> None:
    identity = recover_identity(json.dumps({"event_id": EVENT_ID, "payload": {"channel": "web"}}).encode())

    assert result_key(identity) == EVENT_ID


def test_a_refusal_names_each_bad_field_once_by_its_path() -> None:
    payload = json.loads((EXAMPLES / "intake-order.json").read_text())
    payload["lines"][0].update(quantity=0, unit_price="cheap")
    try:
        SubmitOrder.model_validate(payload)
    except ValidationError as error:
        errors = field_errors(error.errors(include_input=False), ("payload",))
    # not also "payload.lines: too short", which only echoes the bad line
    assert [e.field for e in errors] == ["payload.lines[0].quantity", "payload.lines[0].unit_price"]


def test_the_documented_examples_are_valid_intake_messages() -> None:
    decoded = decode((EXAMPLES / "intake-envelope.json").read_bytes())
    payload = SubmitOrder.model_validate(json.loads((EXAMPLES / "intake-order.json").read_text()))

    assert decoded.message == payload
