"""`ordermesh import-orders FILE`: import a CSV or XLSX file of orders from the terminal
(docs/imports.md). Uploads it to POST /imports/orders, shows a progress bar (standard error)
while the order service places the orders, then prints the outcome and every rejected row.

Credentials: $OM_TOKEN (a person's token, which needs orders:import), else $OM_ADMIN_TOKEN,
else a development admin token (the local platform's issuer). Exit status: 0 when every row
went in, 1 when some rows were rejected, 2 when the file was refused or the import failed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tools import apikeys
from tools.progress import console

ProgressCallback = Callable[[dict[str, Any]], None]


class ImportRefused(Exception):
    """The service refused the upload (not an order file, no permission, ...)."""


def credentials() -> dict[str, str]:
    token = os.environ.get("OM_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else apikeys.admin_headers()


async def import_file(
    file_name: str,
    content: bytes,
    order_url: str,
    headers: dict[str, str],
    channel: str | None = None,
    poll_seconds: float = 0.5,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Upload the file, follow the import until it is done, and return its final state
    (GET /imports/{id})."""
    async with httpx.AsyncClient(base_url=order_url, headers=headers, timeout=60) as client:
        response = await client.post(
            "/imports/orders",
            files={"file": (file_name, content)},
            data={"channel": channel} if channel else {},
        )
        if response.status_code != 202:
            raise ImportRefused(_problem(response))
        import_id = response.json()["import_id"]
        while True:
            answer = await client.get(f"/imports/{import_id}")
            if answer.status_code != 200:
                raise ImportRefused(_problem(answer))
            state: dict[str, Any] = answer.json()
            if on_progress is not None:
                on_progress(state)
            if state["status"] in ("completed", "failed"):
                return state
            await asyncio.sleep(poll_seconds)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text[:300]}"
    errors = body.get("errors") or []
    named = "".join(f"\n  {e.get('field')}: {e.get('message')}" for e in errors)
    return f"{response.status_code} {body.get('title', '')}: {body.get('detail', '')}{named}"


def report_lines(state: dict[str, Any]) -> list[str]:
    """The outcome of an import as lines for a person."""
    lines = [
        f"import {state['import_id']} ({state['file_name']}): {state['status']}",
        f"rows read: {state['rows_read']}  orders found: {state['orders_found']}",
        f"orders accepted: {state['orders_accepted']}  already imported: {state['orders_already_imported']}"
        f"  rejected: {state['orders_rejected']}  rows rejected: {state['rows_rejected']}",
    ]
    if state.get("failure"):
        lines.append(f"failed: {state['failure']}")
    if state["rejected"]:
        lines.append("rejected rows (row, column, message):")
        lines += [f"  {r['row']:>6}  {r['column'] or '-':<20}  {r['message']}" for r in state["rejected"]]
    return lines


def command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a CSV (UTF-8) or XLSX file")],
    order_url: Annotated[str, typer.Option(help="the order service")] = apikeys.order_url(),
    channel: Annotated[str | None, typer.Option(help="channel of rows that name none")] = None,
) -> None:
    """Import a CSV or XLSX file of orders (one row per order line), with a progress bar, and
    print the report of every rejected row."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"importing {file.name}", total=None)

        def show(state: dict[str, Any]) -> None:
            progress.update(
                task,
                total=state["orders_found"],
                completed=state["orders_done"],
                description=f"importing {file.name}: {state['status']}",
            )

        try:
            state = asyncio.run(
                import_file(file.name, file.read_bytes(), order_url, credentials(), channel, on_progress=show)
            )
        except ImportRefused as refused:
            progress.stop()
            typer.echo(f"refused: {refused}", err=True)
            raise typer.Exit(2) from None
    for line in report_lines(state):
        typer.echo(line)
    if state["status"] != "completed":
        raise typer.Exit(2)
    if state["rows_rejected"]:
        raise typer.Exit(1)
