"""Product catalogue use cases."""

from __future__ import annotations

from typing import Literal

from libs.runtime.uow import UnitOfWork
from services.inventory.domain.product import PRODUCT, ProductSpec, decide_put

PutOutcome = Literal["registered", "updated", "unchanged"]


async def put_product(uow: UnitOfWork, sku: str, spec: ProductSpec) -> PutOutcome:
    product, version = await uow.load(PRODUCT, sku)
    events = decide_put(product, sku, spec)
    if not events:
        return "unchanged"
    await uow.record(PRODUCT, sku, version, events)
    return "updated" if product.exists else "registered"
