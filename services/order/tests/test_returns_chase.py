"""A received return's requests to inventory (restock) and billing (credit) are asked again
when unanswered by their deadline, and a person is told after the last attempt: a return never
waits forever (services/order/domain/returns.py chase)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.events.base import DomainEvent
from libs.events.billing import IssueReturnCredit
from libs.events.inventory import ReceiveReturnedGoods
from libs.events.order import (
    ReceivedLine,
    ReturnApproved,
    ReturnLine,
    ReturnNeedsAttention,
    ReturnReceived,
    ReturnRequested,
    ReturnRestocked,
    ReturnStepResent,
)
from services.order.domain.order import Order
from services.order.domain.returns import RETURN, Return, ReturnDecision, ReturnPolicy, chase, evolve

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
POLICY = ReturnPolicy(reply_after=timedelta(minutes=2), max_attempts=3)
IDS = {"return_id": "RET-1", "order_id": "o-1"}


def received(*more: DomainEvent) -> Return:
    return RETURN.replay(
        [
            ReturnRequested(
                **IDS,
                lines=(ReturnLine(sku="SKU-A", quantity=2, reason="broken"),),
                resolution="refund",
                requested_by="desk",
            ),
            ReturnApproved(**IDS, approved_by="desk"),
            ReturnReceived(
                **IDS,
                lines=(ReceivedLine(sku="SKU-A", quantity=2, condition="resellable", warehouse="NORTH"),),
                received_by="wh",
                reply_by=NOW,
            ),
            *more,
        ]
    )


def fold(state: Return, decision: ReturnDecision) -> Return:
    for event in decision.returns:
        state = evolve(state, event)
    return state


def test_an_unanswered_receipt_asks_inventory_and_billing_again_as_new_messages() -> None:
    decision = chase(received(), Order(), NOW, POLICY)
    (resent,) = decision.returns
    assert isinstance(resent, ReturnStepResent) and resent.steps == ("restock", "credit")
    assert resent.reply_by == NOW + POLICY.reply_after
    commands = {type(o.command): o.dedupe_key for o in decision.commands}
    assert commands == {
        ReceiveReturnedGoods: "return:RET-1:restock:2",
        IssueReturnCredit: "return:RET-1:credit:2",
    }


def test_only_what_is_unanswered_is_asked_again() -> None:
    restocked = received(ReturnRestocked(**IDS, restocked=(), written_off=()))
    decision = chase(restocked, Order(), NOW, POLICY)
    assert [type(o.command) for o in decision.commands] == [IssueReturnCredit]


def test_after_the_last_attempt_a_person_is_told_and_nothing_more_is_sent() -> None:
    state = received()
    state = fold(state, chase(state, Order(), NOW, POLICY))
    state = fold(state, chase(state, Order(), NOW, POLICY))
    last = chase(state, Order(), NOW, POLICY)
    (attention,) = last.returns
    assert isinstance(attention, ReturnNeedsAttention) and not last.commands
    assert "billing and inventory did not answer return RET-1 (restock, credit) after 3" in attention.reason
    assert chase(fold(state, last), Order(), NOW, POLICY).returns == []


def test_a_return_whose_answers_came_is_not_chased() -> None:
    done = received(ReturnRestocked(**IDS, restocked=(), written_off=()))
    done = RETURN.evolve(done, ReturnNeedsAttention(**IDS, reason="x"))
    assert chase(done, Order(), NOW, POLICY).returns == []
