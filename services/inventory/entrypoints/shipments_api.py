"""Inventory HTTP API: shipments through the warehouse, carrier reports, pick lists.

Every step answers the shipment as it now is: 200 when it moved, and 200 when it already was
where the step takes it (nothing changes); 409 naming both statuses when the step does not
follow from where it is.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.inventory import CarrierStatus, WeightKg
from libs.events.values import OrderId, Reference
from libs.runtime.http import request_context, runtime_of
from services.inventory.adapters import queries, shipment_queries
from services.inventory.app import shipments
from services.inventory.app.shipments import Step
from services.inventory.domain import shipment as shipment_domain
from services.inventory.domain.shipment import CarrierReport, MissingFields

router = APIRouter(tags=["shipments"])

Actor = Annotated[str | None, Header(max_length=100)]


class PackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight_kg: WeightKg | None = Field(default=None, description="Weighed at packing; else the catalogue's")
    parcels: int = Field(default=1, ge=1, le=1000)


class DispatchIn(BaseModel):
    """Both required for standard and express shipments (422 naming each one missing)."""

    model_config = ConfigDict(extra="forbid")
    carrier: Reference | None = None
    tracking_number: Reference | None = None


class CarrierEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_number: Reference
    status: CarrierStatus
    location: str = Field(default="", max_length=200)
    occurred_at: AwareDatetime


@router.get("/shipments")
async def shipments_of_order(request: Request, order_id: Annotated[OrderId, Query()]) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return await shipment_queries.shipments_of_order(conn, order_id)


@router.get("/shipments/{shipment_id}")
async def get_shipment(shipment_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await shipment_queries.shipment(conn, shipment_id)
    if found is None:
        raise NotFound("unknown_shipment", f"no shipment {shipment_id!r}")
    return found


async def _step(request: Request, shipment_id: str, actor: str | None, step: Step) -> dict[str, Any]:
    runtime = runtime_of(request)
    await runtime.execute(
        request_context(actor, f"shipment:{shipment_id}", "inventory"),
        lambda uow: shipments.advance(uow, shipment_id, step),
    )
    return await get_shipment(shipment_id, request)


@router.post("/shipments/{shipment_id}/pick")
async def pick(shipment_id: str, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    return await _step(request, shipment_id, x_actor, shipment_domain.decide_pick)


@router.post("/shipments/{shipment_id}/pack")
async def pack(
    shipment_id: str,
    request: Request,
    body: Annotated[PackIn | None, Body()] = None,
    x_actor: Actor = None,
) -> dict[str, Any]:
    packed = body or PackIn()
    return await _step(
        request,
        shipment_id,
        x_actor,
        lambda shipment: shipment_domain.decide_pack(shipment, packed.weight_kg, packed.parcels),
    )


@router.post("/shipments/{shipment_id}/dispatch")
async def dispatch(
    shipment_id: str,
    request: Request,
    body: Annotated[DispatchIn | None, Body()] = None,
    x_actor: Actor = None,
) -> dict[str, Any]:
    """The goods leave: on hand and reserved fall together (StockDispatched)."""
    said = body or DispatchIn()
    runtime = runtime_of(request)
    try:
        await runtime.execute(
            request_context(x_actor, f"shipment:{shipment_id}", "inventory"),
            lambda uow: shipments.dispatch(uow, shipment_id, said.carrier, said.tracking_number),
        )
    except MissingFields as missing:
        raise RequestValidationError(
            [{"loc": ("body", name), "msg": missing.message, "type": "missing"} for name in missing.fields]
        ) from missing
    return await get_shipment(shipment_id, request)


@router.post("/shipments/{shipment_id}/ready-for-pickup")
async def ready_for_pickup(shipment_id: str, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    return await _step(request, shipment_id, x_actor, shipment_domain.decide_ready_for_pickup)


@router.post("/shipments/{shipment_id}/collect")
async def collect(shipment_id: str, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    """The customer took the goods: on hand and reserved fall together (StockDispatched)."""
    return await _step(request, shipment_id, x_actor, shipment_domain.decide_collect)


@router.post("/shipments/{shipment_id}/deliver")
async def deliver(shipment_id: str, request: Request, x_actor: Actor = None) -> dict[str, Any]:
    return await _step(request, shipment_id, x_actor, shipment_domain.decide_deliver)


@router.post("/carrier-events", status_code=201)
async def carrier_event(
    body: CarrierEventIn, request: Request, response: Response, x_actor: Actor = None
) -> dict[str, Any]:
    """201: the report joined the shipment's history (`delivered` also delivers it). 200: the
    same report was applied before. 404: no shipment was dispatched under that number."""
    report = CarrierReport(body.status, body.location, body.occurred_at)
    shipment_id, applied = await runtime_of(request).execute(
        request_context(x_actor, f"tracking:{body.tracking_number}", "inventory"),
        lambda uow: shipments.track(uow, body.tracking_number, report),
    )
    if not applied:
        response.status_code = 200
    return await get_shipment(shipment_id, request)


@router.get("/warehouses/{code}/pick-list")
async def pick_list(code: str, request: Request) -> dict[str, Any]:
    """What to pick at the warehouse now (shipments pending or picking), per SKU, with the
    shipments each serves."""
    async with runtime_of(request).engine.connect() as conn:
        if not await queries.warehouse_exists(conn, code):
            raise NotFound("unknown_warehouse", f"warehouse {code!r} is not registered")
        items = await shipment_queries.pick_list(conn, code)
    return {"warehouse": code, "items": items}
