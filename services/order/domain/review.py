"""Automatic review of a placed order: approve, hold for a person, or reject."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from libs.events.order import OrderPlaced


@dataclass(frozen=True)
class ReviewFacts:
    """What the review needs to know beyond the order itself, gathered by the app layer."""

    customer_blocked: bool = False
    possible_duplicate_of: str | None = None


@dataclass(frozen=True)
class ReviewPolicy:
    amount_limit: Decimal = Decimal("5000.00")


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["approve", "hold", "reject"]
    reasons: tuple[str, ...] = ()


def review(order: OrderPlaced, facts: ReviewFacts, policy: ReviewPolicy) -> Verdict:
    if facts.customer_blocked:
        return Verdict("reject", ("customer is blocked",))
    reasons: list[str] = []
    if order.subtotal > policy.amount_limit:
        reasons.append(
            f"order value {order.subtotal:.2f} {order.currency} is over the review limit"
            f" of {policy.amount_limit:.2f}"
        )
    if order.shipping.method != "pickup":
        address = order.shipping.address
        if address is None or not address.is_complete():
            missing = [
                name
                for name in ("line1", "city", "postal_code", "country")
                if address is None or not getattr(address, name)
            ]
            reasons.append(f"delivery address is incomplete (missing {', '.join(missing)})")
    if facts.possible_duplicate_of:
        reasons.append(f"possible duplicate of order {facts.possible_duplicate_of}")
    return Verdict("hold", tuple(reasons)) if reasons else Verdict("approve")
