"""What finance decides (tax rates, which channels' prices include tax, shipping fee rules,
default credit per currency) and how an order is priced under it. Pure: the settings are
turned into a BillingPolicy at the edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from libs.events.billing import InvoiceLine, IssueInvoice, MoveInvoiceLines
from libs.events.values import STANDARD_TAX_CATEGORY, OrderLine, ShippingMethod
from services.billing.domain.shipping import ShippingRules, shipping_fee
from services.billing.domain.tax import TaxRates, split

MAX_RULE_TEXT = 1000


@dataclass(frozen=True)
class BillingPolicy:
    tax: TaxRates
    shipping: ShippingRules
    # The credit of a customer finance has not granted a limit to, in an invoice's currency:
    # the currency's own default, else `default_credit_limit`.
    default_credit_limit: Decimal
    default_credit_limit_by_currency: Mapping[str, Decimal] = field(default_factory=dict)
    # Channels whose unit prices (and so shipping fees) are what the customer pays, tax included.
    prices_include_tax_channels: frozenset[str] = frozenset()

    def default_credit_limit_in(self, currency: str) -> Decimal:
        return self.default_credit_limit_by_currency.get(currency, self.default_credit_limit)


@dataclass(frozen=True)
class Charges:
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal  # the lines' net amounts
    shipping_fee: Decimal  # net
    shipping_rule: str
    shipping_tax: Decimal
    tax: Decimal  # the lines' tax and the shipping's
    tax_rule: str
    prices_include_tax: bool
    total: Decimal


class Priced(Protocol):
    """What an order's charges are worked out from: IssueInvoice's fields, also an amendment's
    (AdjustInvoice) and a merge's (MoveInvoiceLines)."""

    @property
    def lines(self) -> Sequence[OrderLine]: ...
    @property
    def shipping_method(self) -> ShippingMethod: ...
    @property
    def destination_country(self) -> str | None: ...
    @property
    def destination_region(self) -> str | None: ...
    @property
    def weight_kg(self) -> Decimal | None: ...
    @property
    def channel(self) -> str | None: ...


def price(command: IssueInvoice | MoveInvoiceLines, policy: BillingPolicy) -> Charges:
    return price_in(command, command.currency, policy)


def price_in(command: Priced, currency: str, policy: BillingPolicy) -> Charges:
    """Tax is worked out per line, rounded to the currency's smallest unit, so the lines add
    up to the invoice's tax; shipping is taxed at the destination's standard rate."""
    country, region = command.destination_country, command.destination_region
    includes_tax = command.channel is not None and command.channel in policy.prices_include_tax_channels
    lines: list[InvoiceLine] = []
    applied_rates: dict[str, None] = {}  # in order of first use, each once
    for line in command.lines:
        applied = policy.tax.rate(country, region, line.tax_category)
        applied_rates[str(applied)] = None
        taxed = split(line.quantity * line.unit_price, applied.rate, currency, includes_tax=includes_tax)
        lines.append(
            InvoiceLine(
                **line.model_dump(), tax_rate=applied.rate, net=taxed.net, tax=taxed.tax, gross=taxed.gross
            )
        )
    # The free-shipping threshold is compared with the goods' value as the channel priced them.
    goods_value = sum((line.quantity * line.unit_price for line in command.lines), Decimal(0))
    shipping = shipping_fee(
        policy.shipping,
        command.shipping_method,
        currency,
        goods_value,
        country=country,
        region=region,
        weight_kg=command.weight_kg,
    )
    shipping_rate = policy.tax.rate(country, region, STANDARD_TAX_CATEGORY)
    shipping_taxed = split(shipping.amount, shipping_rate.rate, currency, includes_tax=includes_tax)
    subtotal = sum((line.net or Decimal(0) for line in lines), Decimal("0.00"))
    tax = sum((line.tax or Decimal(0) for line in lines), shipping_taxed.tax)
    prices = "prices include tax" if includes_tax else "prices exclude tax"
    tax_rule = f"{prices}; goods: {', '.join(applied_rates)}; shipping: {shipping_rate}"
    return Charges(
        lines=tuple(lines),
        subtotal=subtotal,
        shipping_fee=shipping_taxed.net,
        shipping_rule=shipping.rule,
        shipping_tax=shipping_taxed.tax,
        tax=tax,
        tax_rule=_cut(tax_rule),
        prices_include_tax=includes_tax,
        total=subtotal + shipping_taxed.net + tax,
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_RULE_TEXT else text[: MAX_RULE_TEXT - 1] + "…"
