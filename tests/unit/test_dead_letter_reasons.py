"""A dead letter says why without repeating the message's personal data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.events.values import CustomerSnapshot
from libs.runtime.consumer import _detail, _reason


def test_a_validation_failure_is_reported_by_field_without_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        CustomerSnapshot.model_validate({"name": "Grace Hopper", "phone": "+1 555 0100 " * 10})
    reason, detail = _reason(caught.value), _detail(caught.value)
    assert "phone" in reason and "at most 40 characters" in reason
    assert "555" not in reason + detail and "Grace" not in reason + detail


def test_other_failures_keep_their_message_and_traceback() -> None:
    error = RuntimeError("database said no")
    assert _reason(error) == "RuntimeError: database said no"
    assert "RuntimeError" in _detail(error)
