"""A customer's credit account: the limit finance set, and the credit each on-account order
holds until it is paid or voided.

The account's stream version is what keeps two concurrent orders from overspending the
limit together: both load the same version, only one can append after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from libs.domain import AggregateKind, InvalidRequest
from libs.events.base import DomainEvent
from libs.events.billing import CreditCharged, CreditLimitOverridden, CreditLimitSet, CreditReleased
from services.billing.domain.money import cents

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class CustomerAccount:
    customer_id: str = ""
    # None until finance sets one: the policy's default limit applies.
    credit_limit: Decimal | None = None
    charged: Mapping[str, Decimal] = field(default_factory=dict)  # order id -> amount
    released: Mapping[str, Decimal] = field(default_factory=dict)  # order id -> amount

    @property
    def open_balance(self) -> Decimal:
        return sum(self.charged.values(), ZERO) - sum(self.released.values(), ZERO)

    def credit_limit_or(self, default: Decimal) -> Decimal:
        return default if self.credit_limit is None else self.credit_limit

    def held_by(self, order_id: str) -> Decimal:
        """Credit the order still holds: charged and not yet released."""
        return self.charged.get(order_id, ZERO) - self.released.get(order_id, ZERO)


def _add(amounts: Mapping[str, Decimal], order_id: str, amount: Decimal) -> dict[str, Decimal]:
    return {**amounts, order_id: amounts.get(order_id, ZERO) + amount}


def evolve(state: CustomerAccount, event: DomainEvent) -> CustomerAccount:
    if isinstance(event, CreditLimitSet):
        return replace(state, customer_id=event.customer_id, credit_limit=event.credit_limit)
    if isinstance(event, CreditCharged):
        return replace(
            state,
            customer_id=event.customer_id,
            charged=_add(state.charged, event.order_id, event.amount),
        )
    if isinstance(event, CreditReleased):
        return replace(state, released=_add(state.released, event.order_id, event.amount))
    return state


ACCOUNT = AggregateKind[CustomerAccount]("customer_account", CustomerAccount, evolve)


def decide_credit_limit(
    account: CustomerAccount, customer_id: str, credit_limit: Decimal
) -> list[DomainEvent]:
    if credit_limit < 0 or cents(credit_limit) != credit_limit:
        raise InvalidRequest("invalid_credit_limit", "a credit limit must be zero or more, in whole cents")
    if account.credit_limit == credit_limit:
        return []  # the same limit again: nothing changes
    return [CreditLimitSet(customer_id=customer_id, credit_limit=credit_limit)]


def decide_charge(
    account: CustomerAccount,
    customer_id: str,
    order_id: str,
    amount: Decimal,
    credit_limit: Decimal,
    overridden_by: str | None = None,
) -> list[DomainEvent] | None:
    """Charge an on-account order's amount to the customer's credit: None (refused) when it
    would take the open balance over the limit, unless finance overrode the limit for this
    order; then the override is recorded beside the charge, with the figures it overrode."""
    over_limit = account.open_balance + amount > credit_limit
    if over_limit and overridden_by is None:
        return None
    charge: list[DomainEvent] = [CreditCharged(customer_id=customer_id, order_id=order_id, amount=amount)]
    if not over_limit or overridden_by is None:
        return charge
    override = CreditLimitOverridden(
        customer_id=customer_id,
        order_id=order_id,
        amount=amount,
        open_balance=account.open_balance,
        credit_limit=credit_limit,
        approved_by=overridden_by,
    )
    return [override, *charge]


def decide_release(
    account: CustomerAccount, customer_id: str, order_id: str, amount: Decimal
) -> list[DomainEvent]:
    """Give back up to `amount` of the order's credit, never more than it still holds (so a
    prepaid order, which holds none, releases nothing)."""
    releasable = min(amount, account.held_by(order_id))
    if releasable <= 0:
        return []
    return [CreditReleased(customer_id=customer_id, order_id=order_id, amount=releasable)]


def decide_transferred_charge(customer_id: str, order_id: str, amount: Decimal) -> list[DomainEvent]:
    """A split or merged order's credit, charged without a limit check: it is what the same
    customer's orders held before the move (released from them in the same decision)."""
    if amount <= 0:
        return []
    return [CreditCharged(customer_id=customer_id, order_id=order_id, amount=amount)]
