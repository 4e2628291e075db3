"""Saga outcomes are logged at INFO, one line each with order id, status and reason, and never
with a person's free-text reason (it may name anyone: it stays on the order's timeline)."""

from __future__ import annotations

import logging

import pytest

from libs.events.order import OrderCancelled, OrderPaymentFailed, OrderRejected, OrderShipped
from services.order.app.handlers import _report_outcome


def saga_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    return [
        (r.levelno, r.getMessage(), getattr(r, "status", ""))
        for r in caplog.records
        if r.name == "ordermesh.saga"
    ]


def test_a_cancellation_by_the_rules_is_one_info_line_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ordermesh.saga")

    _report_outcome(
        "o-1", OrderCancelled(order_id="o-1", reason="payment deadline passed", cancelled_by="rules")
    )

    assert saga_lines(caplog) == [(logging.INFO, "order o-1 cancelled: payment deadline passed", "cancelled")]


def test_a_declined_payment_is_logged_with_its_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ordermesh.saga")

    _report_outcome("o-1", OrderPaymentFailed(order_id="o-1", reference="pay-1", attempt=1, max_attempts=3))

    assert saga_lines(caplog) == [
        (
            logging.INFO,
            "order o-1 awaiting_payment: payment pay-1 declined (attempt 1 of 3)",
            "awaiting_payment",
        )
    ]


def test_a_persons_reason_stays_out_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ordermesh.saga")

    _report_outcome(
        "o-1", OrderRejected(order_id="o-1", reason="Jane Doe of 1 Main St called", rejected_by="user:fiona")
    )

    ((_, message, status),) = saga_lines(caplog)
    assert status == "rejected"
    assert "Jane" not in message and "fiona" not in message


def test_a_step_that_is_no_outcome_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ordermesh.saga")

    _report_outcome("o-1", OrderShipped(order_id="o-1"))

    assert saga_lines(caplog) == []
