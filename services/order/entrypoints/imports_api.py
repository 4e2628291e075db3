"""Order file imports over HTTP (docs/imports.md): upload a CSV or XLSX file of order lines,
follow its progress, download the rejected rows, download the template."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from libs.domain import InvalidRequest, NotFound
from libs.events.order_imports import ImportFormat, RejectedRow
from libs.runtime.auth import Forbidden, context_for, requires
from libs.runtime.http import runtime_of
from libs.runtime.openapi import problems
from libs.runtime.uow import MessageContext, unit_of_work
from libs.security.principal import Principal
from services.order.adapters import import_files
from services.order.app.imports import OrderImports
from services.order.domain.imports import (
    DEFAULT_CHANNEL,
    ORDER_IMPORT,
    ImportStatus,
    OrderImport,
    header_problems,
)

router = APIRouter()
IMPORTER = "orders:import"
MEDIA_TYPES: dict[ImportFormat, str] = {
    "csv": import_files.CSV_MEDIA_TYPE,
    "xlsx": import_files.XLSX_MEDIA_TYPE,
}
_FILES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": {media.split(";")[0]: {} for media in MEDIA_TYPES.values()}}
}
ImportId = Annotated[str, Path(max_length=64)]
FormatParameter = Annotated[Literal["csv", "xlsx"], Query(alias="format", description="csv or xlsx")]


class ImportFileRefused(InvalidRequest):
    """422 naming each problem of an uploaded file (`errors`: field, message)."""

    def __init__(self, code: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(code, "; ".join(f"{field}: {message}" for field, message in problems))
        self.details = {"errors": [{"field": field, "message": message} for field, message in problems]}


class ImportAccepted(BaseModel):
    import_id: str = Field(description="Follow it at GET /imports/{import_id}")
    status: ImportStatus


class ImportProgress(BaseModel):
    import_id: str
    status: ImportStatus = Field(description="queued, running, completed or failed (`failure` says why)")
    file_name: str
    file_format: ImportFormat
    file_digest: str
    rows_read: int | None = Field(description="Order line rows in the file (null until it was read)")
    orders_found: int | None = Field(description="Orders the rows make (null until the file was read)")
    orders_done: int = Field(description="Orders behind the import so far, placed or rejected")
    rows_done: int
    orders_accepted: int = Field(description="Orders this import placed")
    orders_already_imported: int = Field(
        description="Orders placed before with the same reference and content (an earlier upload): not again"
    )
    orders_rejected: int
    rows_rejected: int = Field(description="Rows that did not go in, each listed in `rejected`")
    rejected: list[RejectedRow] = Field(description="Every rejected row, with its column and why, by row")
    failure: str | None = None


def _imports(request: Request) -> OrderImports:
    imports: OrderImports = request.app.state.imports
    return imports


@router.post(
    "/imports/orders",
    status_code=202,
    tags=["imports"],
    responses=problems(422, on_422="Not an order file: `errors` names each problem (a missing column, say)"),
)
async def import_orders(
    request: Request,
    response: Response,
    principal: Annotated[Principal, requires(IMPORTER)],
    file: Annotated[UploadFile, File(description="CSV (UTF-8) or XLSX, one row per order line")],
    channel: Annotated[
        str | None,
        Form(max_length=40, description=f"Channel of rows that name none (default {DEFAULT_CHANNEL})"),
    ] = None,
) -> ImportAccepted:
    """Import the orders of a file, in the background. 202 with the import's id: follow it at
    the Location. Rows are grouped into orders by `external_reference`; valid orders go in
    even when others are rejected. The same file uploaded again places nothing again."""
    if principal.channel is not None and channel not in (None, principal.channel):
        raise Forbidden(
            f"this API key imports for channel {principal.channel}, not {channel}", field="channel"
        )
    default_channel = principal.channel or channel or DEFAULT_CHANNEL
    content = await file.read()
    file_name = file.filename or "upload"
    fmt = _checked_format(file_name, content)
    header = await asyncio.to_thread(_header, content, fmt)
    found = header_problems(header)
    if found:
        raise ImportFileRefused("invalid_order_file", [(f"file.{p.column}", p.message) for p in found])
    import_id = str(uuid4())
    await runtime_of(request).execute(
        context_for(principal, f"import:{import_id}"),
        lambda uow: _imports(request).start(
            uow, import_id, file_name, fmt, content, default_channel, principal.channel is not None
        ),
    )
    response.headers["Location"] = f"/imports/{import_id}"
    return ImportAccepted(import_id=import_id, status="queued")


def _checked_format(file_name: str, content: bytes) -> ImportFormat:
    if not content:
        raise ImportFileRefused("invalid_order_file", [("file", "the file is empty")])
    try:
        return import_files.file_format(file_name, content)
    except import_files.UnreadableFile as error:
        raise ImportFileRefused("invalid_order_file", [("file", str(error))]) from None


def _header(content: bytes, fmt: ImportFormat) -> list[str]:
    try:
        header, _ = import_files.read_file(content, fmt)
    except import_files.UnreadableFile as error:
        raise ImportFileRefused("invalid_order_file", [("file", str(error))]) from None
    return header


@router.get("/imports/orders/template", tags=["imports"], response_class=Response, responses=_FILES)
async def import_template(
    _: Annotated[Principal, requires(IMPORTER)], fmt: FormatParameter = "csv"
) -> Response:
    """The order file template: the header row and an example order of two lines. The columns
    are described in docs/imports.md."""
    return _download(import_files.template(fmt), fmt, f"orders-template.{fmt}")


async def _load(request: Request, import_id: str, principal: Principal) -> OrderImport:
    # Read from the store, not the process's aggregate cache: the import loop moves the
    # stream on while people watch it, and a read has nothing to retry.
    async with unit_of_work(runtime_of(request).engine, MessageContext(import_id, principal.actor)) as uow:
        state, _ = await uow.load(ORDER_IMPORT, import_id)
    # Another channel's import is answered as unknown, as its orders are.
    if state.started is None or (
        principal.channel is not None and state.started.channel != principal.channel
    ):
        raise NotFound("unknown_import", f"import {import_id} does not exist")
    return state


@router.get("/imports/{import_id}", tags=["imports"], responses=problems(404))
async def get_import(
    import_id: ImportId,
    request: Request,
    principal: Annotated[Principal, requires(IMPORTER)],
) -> ImportProgress:
    """How far the import got, and every row it rejected (row number, column, message)."""
    state = await _load(request, import_id, principal)
    started = state.started
    if started is None:  # _load answers 404 for those
        raise NotFound("unknown_import", f"import {import_id} does not exist")
    return ImportProgress(
        import_id=import_id,
        status=state.status,
        file_name=started.file_name,
        file_format=started.file_format,
        file_digest=started.file_digest,
        rows_read=state.rows_read,
        orders_found=state.orders_found,
        orders_done=state.orders_done,
        rows_done=state.rows_done,
        orders_accepted=state.orders_accepted,
        orders_already_imported=state.orders_already_imported,
        orders_rejected=state.orders_rejected,
        rows_rejected=state.rows_rejected,
        rejected=sorted(state.rejected, key=lambda r: r.row),
        failure=state.failure,
    )


@router.get(
    "/imports/{import_id}/report",
    tags=["imports"],
    response_class=Response,
    responses={**_FILES, **problems(404)},
)
async def import_report(
    import_id: ImportId,
    request: Request,
    principal: Annotated[Principal, requires(IMPORTER)],
    fmt: FormatParameter = "csv",
) -> Response:
    """The rejected rows as a file: row, column, message, external_reference (so far, while
    the import runs)."""
    state = await _load(request, import_id, principal)
    rejected = sorted(state.rejected, key=lambda r: r.row)
    return _download(import_files.report(rejected, fmt), fmt, f"import-{import_id}-rejected.{fmt}")


def _download(content: bytes, fmt: ImportFormat, file_name: str) -> Response:
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )
