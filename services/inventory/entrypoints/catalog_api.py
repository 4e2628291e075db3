"""Inventory HTTP API: the product catalogue."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.domain import InvalidRequest, NotFound
from libs.events.inventory import ProductText, WeightKg
from libs.events.values import Currency, Money
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.inventory.adapters import catalog_queries
from services.inventory.app import catalog
from services.inventory.domain.product import ProductSpec
from services.inventory.entrypoints.views import ProductPage, ProductView

router = APIRouter(tags=["catalogue"])

SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[!-~]+$")]
CatalogueReader = Annotated[Principal, requires("products:read")]


class ProductIn(BaseModel):
    """The whole product: a PUT replaces what it says (list prices left out mean none)."""

    model_config = ConfigDict(extra="forbid")
    name: ProductText
    category: ProductText
    unit: Annotated[str, Field(min_length=1, max_length=20)]
    weight_kg: WeightKg
    manufactured: bool
    list_prices: dict[Currency, Money] = Field(default_factory=dict, max_length=50)

    def spec(self) -> ProductSpec:
        return ProductSpec(
            name=self.name,
            category=self.category,
            unit=self.unit,
            weight_kg=self.weight_kg,
            manufactured=self.manufactured,
            list_prices=dict(self.list_prices),
        )


@router.put(
    "/products/{sku}",
    status_code=201,
    response_model=ProductView,
    responses={
        **answers(200, ProductView, "Changed, or already exactly this"),
        **problems(409),
    },
)
async def put_product(
    sku: SkuPath,
    body: ProductIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("products:write")],
) -> dict[str, Any]:
    """201: a new product. 200: a change (ProductUpdated naming the changed fields), or the
    product as it already is (nothing recorded)."""
    runtime = runtime_of(request)
    outcome = await runtime.execute(
        context_for(principal, f"product:{sku}"),
        lambda uow: catalog.put_product(uow, sku, body.spec()),
    )
    if outcome != "registered":
        response.status_code = 200
    async with runtime.engine.connect() as conn:
        product = await catalog_queries.product(conn, sku)
    if product is None:  # the row is written in the same transaction as the product's event
        raise RuntimeError(f"product {sku} was registered but has no row")
    return product


@router.get("/products/{sku}", response_model=ProductView, responses=problems(404))
async def get_product(sku: str, request: Request, _: CatalogueReader) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        product = await catalog_queries.product(conn, sku)
    if product is None:
        raise NotFound("unknown_product", f"no product with SKU {sku!r} is in the catalogue")
    return product


@router.get("/products", response_model=ProductPage)
async def list_products(
    request: Request,
    _: CatalogueReader,
    category: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Products in SKU order, a page at a time: pass `next_cursor` back as `cursor` for the
    next page; it is null on the last one."""
    async with runtime_of(request).engine.connect() as conn:
        items, last = await catalog_queries.products_page(conn, category or None, _after(cursor), limit)
    return {"items": items, "next_cursor": _cursor(last) if last is not None else None}


def _cursor(sku: str) -> str:
    return base64.urlsafe_b64encode(sku.encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError) as error:
        raise InvalidRequest(
            "invalid_cursor", "cursor is not one this API gave out; start without it"
        ) from error
