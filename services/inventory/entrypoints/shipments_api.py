"""Inventory HTTP API: shipments through the warehouse, carrier reports, pick lists.

Every step answers the shipment as it now is: 200 when it moved, and 200 when it already was
where the step takes it (nothing changes); 409 naming both statuses when the step does not
follow from where it is.

Staff scoped to some warehouses read only their warehouses' shipments (another warehouse's
answers 404 as if unknown) and are refused, with 403 naming the warehouse, when they act on
another's shipment or its carrier reports, or ask for its pick list.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.domain import NotFound
from libs.events.inventory import CarrierStatus, WeightKg
from libs.events.values import OrderId, Reference
from libs.runtime.auth import context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import answers, problems
from libs.security.principal import Principal
from services.inventory.adapters import queries, shipment_queries
from services.inventory.app import shipments
from services.inventory.app.shipments import Step
from services.inventory.domain import shipment as shipment_domain
from services.inventory.domain.shipment import CarrierReport, MissingFields
from services.inventory.entrypoints.views import PickList, ShipmentView
from services.inventory.entrypoints.warehouse_scope import in_scope, require_warehouse

router = APIRouter(tags=["shipments"])

Reader = Annotated[Principal, requires("shipments:read")]
_STEP_REFUSALS = problems(404, 409, on_409="The step does not follow from where the shipment is (both named)")
Handler = Annotated[Principal, requires("shipments:handle")]


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


@router.get("/shipments", response_model=list[ShipmentView])
async def shipments_of_order(
    request: Request, principal: Reader, order_id: Annotated[OrderId, Query()]
) -> list[dict[str, Any]]:
    async with runtime_of(request).engine.connect() as conn:
        return in_scope(principal, await shipment_queries.shipments_of_order(conn, order_id))


@router.get("/shipments/{shipment_id}", response_model=ShipmentView, responses=problems(404))
async def get_shipment(shipment_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    return await _shipment_seen_by(principal, shipment_id, request)


async def _shipment_seen_by(principal: Principal, shipment_id: str, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        found = await shipment_queries.shipment(conn, shipment_id)
    if found is None or not principal.sees_warehouse(found["warehouse"]):
        raise NotFound("unknown_shipment", f"no shipment {shipment_id!r}")
    return found


async def _require_shipment_in_scope(principal: Principal, shipment_id: str, request: Request) -> None:
    """403 when the shipment is another warehouse's. An unknown one is left to the step, which
    answers 404. A shipment never changes warehouse, so checking before the step is enough."""
    if principal.warehouses is None:
        return
    async with runtime_of(request).engine.connect() as conn:
        found = await shipment_queries.shipment(conn, shipment_id)
    if found is not None:
        require_warehouse(principal, found["warehouse"], "handle shipments of")


async def _step(request: Request, shipment_id: str, principal: Principal, step: Step) -> dict[str, Any]:
    await _require_shipment_in_scope(principal, shipment_id, request)
    await runtime_of(request).execute(
        context_for(principal, f"shipment:{shipment_id}"),
        lambda uow: shipments.advance(uow, shipment_id, step),
    )
    return await _shipment_seen_by(principal, shipment_id, request)


@router.post("/shipments/{shipment_id}/pick", response_model=ShipmentView, responses=_STEP_REFUSALS)
async def pick(shipment_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    return await _step(request, shipment_id, principal, shipment_domain.decide_pick)


@router.post("/shipments/{shipment_id}/pack", response_model=ShipmentView, responses=_STEP_REFUSALS)
async def pack(
    shipment_id: str,
    request: Request,
    principal: Handler,
    body: Annotated[PackIn | None, Body()] = None,
) -> dict[str, Any]:
    packed = body or PackIn()
    return await _step(
        request,
        shipment_id,
        principal,
        lambda shipment: shipment_domain.decide_pack(shipment, packed.weight_kg, packed.parcels),
    )


@router.post("/shipments/{shipment_id}/dispatch", response_model=ShipmentView, responses=_STEP_REFUSALS)
async def dispatch(
    shipment_id: str,
    request: Request,
    principal: Handler,
    body: Annotated[DispatchIn | None, Body()] = None,
) -> dict[str, Any]:
    """The goods leave: on hand and reserved fall together (StockDispatched)."""
    said = body or DispatchIn()
    await _require_shipment_in_scope(principal, shipment_id, request)
    try:
        await runtime_of(request).execute(
            context_for(principal, f"shipment:{shipment_id}"),
            lambda uow: shipments.dispatch(uow, shipment_id, said.carrier, said.tracking_number),
        )
    except MissingFields as missing:
        raise RequestValidationError(
            [{"loc": ("body", name), "msg": missing.message, "type": "missing"} for name in missing.fields]
        ) from missing
    return await _shipment_seen_by(principal, shipment_id, request)


@router.post(
    "/shipments/{shipment_id}/ready-for-pickup", response_model=ShipmentView, responses=_STEP_REFUSALS
)
async def ready_for_pickup(shipment_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    return await _step(request, shipment_id, principal, shipment_domain.decide_ready_for_pickup)


@router.post("/shipments/{shipment_id}/collect", response_model=ShipmentView, responses=_STEP_REFUSALS)
async def collect(shipment_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    """The customer took the goods: on hand and reserved fall together (StockDispatched)."""
    return await _step(request, shipment_id, principal, shipment_domain.decide_collect)


@router.post("/shipments/{shipment_id}/deliver", response_model=ShipmentView, responses=_STEP_REFUSALS)
async def deliver(shipment_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    return await _step(request, shipment_id, principal, shipment_domain.decide_deliver)


@router.post(
    "/carrier-events",
    status_code=201,
    response_model=ShipmentView,
    responses={
        **answers(200, ShipmentView, "This report was applied before"),
        **problems(404, 409, on_404="No shipment was dispatched under this tracking number"),
    },
)
async def carrier_event(
    body: CarrierEventIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires("carrier:report")],
) -> dict[str, Any]:
    """201: the report joined the shipment's history (`delivered` also delivers it). 200: the
    same report was applied before. 404: no shipment was dispatched under that number."""
    runtime = runtime_of(request)
    if principal.warehouses is not None:
        async with runtime.engine.connect() as conn:
            tracked = await shipment_queries.shipment_tracked_as(conn, body.tracking_number)
        if tracked is not None:
            await _require_shipment_in_scope(principal, tracked, request)
    report = CarrierReport(body.status, body.location, body.occurred_at)
    shipment_id, applied = await runtime.execute(
        context_for(principal, f"tracking:{body.tracking_number}"),
        lambda uow: shipments.track(uow, body.tracking_number, report),
    )
    if not applied:
        response.status_code = 200
    return await _shipment_seen_by(principal, shipment_id, request)


@router.get("/warehouses/{code}/pick-list", response_model=PickList, responses=problems(404))
async def pick_list(code: str, request: Request, principal: Reader) -> dict[str, Any]:
    """What to pick at the warehouse now (shipments pending or picking), per SKU, with the
    shipments each serves."""
    require_warehouse(principal, code, "read the pick list of")
    async with runtime_of(request).engine.connect() as conn:
        if not await queries.warehouse_exists(conn, code):
            raise NotFound("unknown_warehouse", f"warehouse {code!r} is not registered")
        items = await shipment_queries.pick_list(conn, code)
    return {"warehouse": code, "items": items}
