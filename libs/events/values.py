"""Value types shared by the contracts, and the limits every message is held to.

Every string has a maximum length, every list a maximum size and every number a range, and
the models check them where a message enters (an HTTP body, the intake topic, a command), so
an accepted message can never grow near the broker's 1 MB message limit, an amount never
overflows a numeric(14,2) column and a quantity never overflows a bigint one. The largest
valid order is encoded in tests/unit/test_input_bounds.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# Units of one SKU: on one order line, summed over an order's lines, in one receipt.
MAX_QUANTITY = 1_000_000
MAX_LINES_PER_ORDER = 500
# An order's subtotal. Far below what Money holds, so tax and shipping on top still fit.
MAX_ORDER_VALUE = Decimal("1000000000.00")

# Money travels as a decimal string ("199.90") so no consumer meets binary floating point.
# 14 digits, 2 after the point: what the numeric(14,2) columns hold.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]
UnitPrice = Annotated[Money, Field(le=MAX_ORDER_VALUE)]
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
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


# An order's lines: at least one, at most MAX_LINES_PER_ORDER, within the limits per SKU and
# per order value. The order service prices and reserves them without meeting a model limit.
OrderLines = Annotated[
    tuple[OrderLine, ...],
    Field(min_length=1, max_length=MAX_LINES_PER_ORDER),
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
    Field(min_length=1, max_length=MAX_LINES_PER_ORDER),
    AfterValidator(_within_quantity_limit),
]
