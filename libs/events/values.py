"""Value types shared by the contracts: money as a decimal string, positive quantities."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

# Money travels as a decimal string ("199.90") so no consumer meets binary floating point.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json"),
]
Quantity = Annotated[int, Field(gt=0, le=1_000_000)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
PaymentTerms = Literal["prepaid", "on_account"]
ShippingMethod = Literal["standard", "express", "pickup"]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Address(Value):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def is_complete(self) -> bool:
        return all((self.line1, self.city, self.postal_code, self.country))


class CustomerSnapshot(Value):
    id: str | None = None
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    region: str | None = Field(default=None, max_length=40)


class OrderLine(Value):
    sku: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    unit_price: Money


class Shipping(Value):
    method: ShippingMethod
    address: Address | None = None


class SkuQuantity(Value):
    sku: str
    quantity: Quantity


class Allocation(Value):
    sku: str
    warehouse: str
    quantity: Quantity
