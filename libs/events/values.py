"""Value types shared by the contracts, and the limits every message is held to.

Every string has a maximum length, every list a maximum size and every number a range, and
the models check them where a message enters (an HTTP body, the intake topic, a command), so
an accepted message can never grow near the broker's 1 MB message limit, an amount never
overflows a numeric(14,2) column and a quantity never overflows a bigint one. Money is never
NaN or infinite, and where a message names its currency its amounts are held to that
currency's smallest unit (`require_minor_units`). The largest valid order is encoded in
tests/unit/test_input_bounds.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from iso4217 import Currency as Iso4217
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Units of one SKU: on one order line, summed over an order's lines, in one receipt.
MAX_QUANTITY = 1_000_000
MAX_LINES_PER_ORDER = 500
# An order's subtotal. Far below what Money holds, so tax and shipping on top still fit.
MAX_ORDER_VALUE = Decimal("1000000000.00")

# Money travels as a decimal string ("199.90") so no consumer meets binary floating point.
# 14 digits, 2 after the point: what the numeric(14,2) columns hold; never NaN or infinite.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]
UnitPrice = Annotated[Money, Field(le=MAX_ORDER_VALUE)]
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
# A product's tax category: which of a destination's rates applies (billing's tax rate table,
# docs/money-and-tax.md). Lower case, so "Reduced" and "reduced" cannot name two categories.
TaxCategory = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9_-]+$",
        description="Which of the destination's tax rates applies, e.g. standard, reduced, zero",
    ),
]
STANDARD_TAX_CATEGORY = "standard"


# Money holds at most two decimals (its numeric(14,2) columns), which stays the tighter limit
# for the three-decimal currencies (KWD, BHD, ...): their amounts are whole hundredths.
def minor_units(currency: str) -> int | None:
    """Decimal places of the currency's smallest unit (ISO 4217, from the iso4217 package's
    table, which follows each amendment): 0 for JPY, 2 for EUR, 3 for KWD. None for a code
    that is not an ISO 4217 currency, or is one without a minor unit (gold, special drawing
    rights): nothing can be priced in either."""
    try:
        exponent = Iso4217(currency).exponent
    except ValueError:
        return None
    return exponent


def require_minor_units(
    model: str, currency: str, amounts: Iterable[tuple[tuple[str | int, ...], Decimal]]
) -> None:
    """Refuse amounts finer than the currency's smallest unit, each under its field path
    (the first of each pair: `("lines", 0, "unit_price")`).

    The value counts, not how it is written: "1500.00" is a whole number of yen (and is how
    Money serialises it), "1500.5" is not.
    """
    places = minor_units(currency)
    if places is None:
        raise ValidationError.from_exception_data(
            model,
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "currency_unknown",
                        "{currency} is not an ISO 4217 currency one can price in",
                        {"currency": currency},
                    ),
                    loc=("currency",),
                    input=currency,
                )
            ],
        )
    unit = Decimal(1).scaleb(-places)
    errors = [
        InitErrorDetails(
            type=PydanticCustomError(
                "currency_decimal_places",
                "at most {places} decimal places for {currency}",
                {"places": places, "currency": currency},
            ),
            loc=location,
            input=str(amount),
        )
        for location, amount in amounts
        if amount != amount.quantize(unit)
    ]
    if errors:
        raise ValidationError.from_exception_data(model, errors)


PaymentTerms = Literal["prepaid", "on_account"]
ShippingMethod = Literal["standard", "express", "pickup"]

Sku = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[!-~]+$", description="Printable ASCII, no spaces"),
]
WarehouseCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Region = Annotated[str, Field(max_length=40)]
OrderId = Annotated[str, Field(min_length=1, max_length=64)]
# A known customer's id, or a contact key derived from the email ("email:" + 320 characters).
CustomerId = Annotated[str, Field(min_length=1, max_length=400)]
# A caller's own reference: an idempotency key, a channel's order number, a receipt or
# payment reference.
Reference = Annotated[str, Field(min_length=1, max_length=200)]
PersonName = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320)]  # RFC 5321: 64 + @ + 255
Phone = Annotated[str, Field(max_length=40)]
Channel = Annotated[str, Field(min_length=1, max_length=40)]
PaymentMethod = Annotated[str, Field(min_length=1, max_length=40)]
# Why a command was sent, for people: a person's reason (500) with the saga's prefix.
Note = Annotated[str, Field(max_length=2000)]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Address(Value):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=60)

    def is_complete(self) -> bool:
        return all((self.line1, self.city, self.postal_code, self.country))


class CustomerSnapshot(Value):
    id: str | None = Field(default=None, max_length=100)
    name: PersonName
    email: Email | None = None
    phone: Phone | None = None
    region: Region | None = None


class OrderLine(Value):
    sku: Sku
    quantity: Quantity
    unit_price: UnitPrice
    tax_category: TaxCategory = Field(
        default=STANDARD_TAX_CATEGORY,
        description="The product's tax category, as the channel's catalogue has it (default standard)",
    )


def _over_max_quantity(lines: Sequence[OrderLine | SkuQuantity]) -> None:
    per_sku: dict[str, int] = {}
    for line in lines:
        per_sku[line.sku] = per_sku.get(line.sku, 0) + line.quantity
    over = [f"{sku} ({total:,})" for sku, total in per_sku.items() if total > MAX_QUANTITY]
    if over:
        raise ValueError(
            f"an order may ask for at most {MAX_QUANTITY:,} units of one SKU over all its lines;"
            f" this one asks for more of {', '.join(over)}"
        )


def _within_order_limits(lines: tuple[OrderLine, ...]) -> tuple[OrderLine, ...]:
    """What each line allows on its own but an order may not add up to."""
    _over_max_quantity(lines)
    value = subtotal(lines)
    if value > MAX_ORDER_VALUE:
        raise ValueError(f"the order value {value:,.2f} is over the limit of {MAX_ORDER_VALUE:,.2f}")
    return lines


def _within_quantity_limit(lines: tuple[SkuQuantity, ...]) -> tuple[SkuQuantity, ...]:
    _over_max_quantity(lines)
    return lines


def _line_count_within_limits(lines: Any) -> Any:
    """Counted before any line is validated, and in words a person submitting lines reads.
    Not a min_length/max_length constraint: pydantic checks those on a tuple against the items
    that validated, so one bad line in a one-line order also reported "at least 1 item"."""
    if isinstance(lines, list | tuple) and not lines:
        raise ValueError("at least one line")
    if isinstance(lines, list | tuple) and len(lines) > MAX_LINES_PER_ORDER:
        raise ValueError(f"at most {MAX_LINES_PER_ORDER} lines, not {len(lines)}")
    return lines


# The limits _line_count_within_limits checks, as the JSON schema states them.
_LINE_COUNT_LIMITS = Field(json_schema_extra={"minItems": 1, "maxItems": MAX_LINES_PER_ORDER})


# An order's lines: at least one, at most MAX_LINES_PER_ORDER, within the limits per SKU and
# per order value. The order service prices and reserves them without meeting a model limit.
OrderLines = Annotated[
    tuple[OrderLine, ...],
    _LINE_COUNT_LIMITS,
    BeforeValidator(_line_count_within_limits),
    AfterValidator(_within_order_limits),
]


def subtotal(lines: Sequence[OrderLine]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal("0"))


class Shipping(Value):
    method: ShippingMethod
    address: Address | None = None


class SkuQuantity(Value):
    sku: Sku
    quantity: Quantity


class Allocation(Value):
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity


# What an order asks the warehouses for, within the same limits as its lines.
SkuQuantities = Annotated[
    tuple[SkuQuantity, ...],
    _LINE_COUNT_LIMITS,
    BeforeValidator(_line_count_within_limits),
    AfterValidator(_within_quantity_limit),
]
