"""Order file imports: the columns of an order file, how its rows become order submissions, and
an import's progress as an aggregate. Pure: the file's bytes are read by
services/order/adapters/import_files.py, the orders placed by services/order/app/imports.py.

One row is one order line; rows that share an external reference are one order, in the order
the references first appear. The order's own fields (customer, currency, terms, shipping) are
repeated on each of its rows and must agree. A row with a problem rejects its whole order
(half an order is not placed), and each of that order's rows is reported; every other order
goes in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from libs.domain import AggregateKind
from libs.events.base import DomainEvent
from libs.events.order import SubmitOrder
from libs.events.order_imports import (
    OrderImportCompleted,
    OrderImportFailed,
    OrderImportProgressed,
    OrderImportRead,
    OrderImportStarted,
    RejectedRow,
)

Cell = str | None
# A file with more order line rows than this is refused whole (rows, not orders).
MAX_ROWS = 100_000


@dataclass(frozen=True)
class Column:
    name: str
    required: bool
    description: str
    example: str
    # Where the value goes in POST /orders' body; a line's columns are under lines[n].
    path: tuple[str, ...]


COLUMNS: tuple[Column, ...] = (
    Column(
        "external_reference",
        True,
        "Your order number: rows with the same one are one order",
        "WEB-1001",
        ("external_id",),
    ),  # noqa: E501
    Column("channel", False, "Sales channel (default: the upload's, `import`)", "phone", ("channel",)),
    Column("customer_id", False, "Customer id, if the customer is registered", "", ("customer", "id")),
    Column("customer_name", True, "Customer name", "Ada Lovelace", ("customer", "name")),
    Column("customer_email", False, "Customer email", "ada@example.com", ("customer", "email")),
    Column("customer_phone", False, "Customer phone", "+44 20 7946 0958", ("customer", "phone")),
    Column("customer_region", False, "Sales region", "north", ("customer", "region")),
    Column("currency", True, "ISO 4217 code", "EUR", ("currency",)),
    Column("payment_terms", True, "prepaid or on_account", "prepaid", ("payment_terms",)),
    Column("shipping_method", True, "standard, express or pickup", "standard", ("shipping", "method")),
    Column(
        "address_line1",
        False,
        "Delivery address, first line",
        "12 Analytical Row",
        ("shipping", "address", "line1"),
    ),  # noqa: E501
    Column("address_line2", False, "Delivery address, second line", "", ("shipping", "address", "line2")),
    Column("city", False, "Delivery city", "London", ("shipping", "address", "city")),
    Column("postal_code", False, "Delivery postal code", "EC1A 1BB", ("shipping", "address", "postal_code")),
    Column(
        "country", False, "Delivery country (ISO 3166-1 alpha-2)", "GB", ("shipping", "address", "country")
    ),
    Column("sku", True, "The line's product", "CHAIR-OAK", ("sku",)),
    Column("quantity", True, "Units, a whole number above 0", "2", ("quantity",)),
    Column(
        "unit_price",
        True,
        "Price of one unit in the currency, a point before the decimals",
        "149.90",
        ("unit_price",),
    ),  # noqa: E501
    Column("tax_category", False, "standard (default), reduced, zero, ...", "standard", ("tax_category",)),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
_BY_NAME = {c.name: c for c in COLUMNS}
LINE_COLUMNS = ("sku", "quantity", "unit_price", "tax_category")
ORDER_COLUMNS = tuple(name for name in COLUMN_NAMES if name not in LINE_COLUMNS)
# A second example line of the template's order: same order fields, another product.
EXAMPLE_SECOND_LINE = {"sku": "TABLE-OAK", "quantity": "1", "unit_price": "499.00", "tax_category": ""}
DEFAULT_CHANNEL = "import"
_COLUMN_AT = {c.path: c.name for c in COLUMNS if c.name not in LINE_COLUMNS}


def column_key(title: object) -> str:
    """A header cell as a column name: case, spaces and dashes do not matter."""
    return str(title or "").strip().lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class HeaderProblem:
    column: str
    message: str


def header_problems(header: Sequence[str]) -> list[HeaderProblem]:
    """What is wrong with a file's header row (column keys): missing required columns,
    unknown or repeated ones. A typo'd optional column would otherwise be ignored silently."""
    problems = [
        HeaderProblem(c.name, "required column missing")
        for c in COLUMNS
        if c.required and c.name not in header
    ]
    seen: set[str] = set()
    for name in header:
        if not name:
            continue
        if name not in _BY_NAME:
            problems.append(
                HeaderProblem(name, f"unknown column (the columns are: {', '.join(COLUMN_NAMES)})")
            )
        elif name in seen:
            problems.append(HeaderProblem(name, "column appears twice"))
        seen.add(name)
    return problems


def import_key(file_digest: str, channel: str, reference: str) -> str:
    """The idempotency key of one order of a file: the same file uploaded again submits the
    same keys, and its orders are found, not placed again."""
    return "import:" + hashlib.sha256(f"{file_digest}:{channel}:{reference}".encode()).hexdigest()


@dataclass(frozen=True)
class OrderDraft:
    """One order of the file: its rows, and the submission they make (None when rejected)."""

    reference: str
    rows: tuple[int, ...]
    submission: SubmitOrder | None
    rejected: tuple[RejectedRow, ...] = ()


@dataclass(frozen=True)
class ReadFile:
    rows_read: int
    orders: tuple[OrderDraft, ...]
    # Rows that belong to no order (no external reference).
    ungrouped: tuple[RejectedRow, ...] = ()


@dataclass
class _Group:
    reference: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def read_orders(
    header: Sequence[str],
    rows: Iterable[tuple[int, Sequence[Cell]]],
    *,
    file_digest: str,
    channel: str = DEFAULT_CHANNEL,
    channel_only: bool = False,
) -> ReadFile:
    """Group a file's rows (row number, cells under `header`) into order submissions."""
    groups: dict[str, _Group] = {}
    ungrouped: list[RejectedRow] = []
    rows_read = 0
    for number, cells in rows:
        values = {name: value for name, value in zip(header, cells, strict=False) if name and value}
        if not values:
            continue  # a blank row (spreadsheets keep some at the end)
        rows_read += 1
        reference = values.get("external_reference")
        if reference is None:
            ungrouped.append(
                RejectedRow(
                    row=number,
                    column="external_reference",
                    message="missing: the reference that groups the rows of one order",
                )
            )
            continue
        groups.setdefault(reference, _Group(reference)).rows.append((number, values))
    orders = tuple(
        _draft(group, file_digest=file_digest, channel=channel, channel_only=channel_only)
        for group in groups.values()
    )
    return ReadFile(rows_read, orders, tuple(ungrouped))


def _draft(group: _Group, *, file_digest: str, channel: str, channel_only: bool) -> OrderDraft:
    numbers = tuple(number for number, _ in group.rows)
    first_number, first = group.rows[0]
    reference = group.reference
    rejected: list[RejectedRow] = []

    def reject(row: int, column: str | None, message: str) -> None:
        rejected.append(
            RejectedRow(row=row, column=column, message=message[:500], external_reference=reference[:200])
        )

    for number, values in group.rows:
        for name, value in values.items():
            if "\x00" in value:
                reject(number, name, "contains a NUL character")
        for name in ORDER_COLUMNS:
            if number != first_number and values.get(name) != first.get(name):
                reject(
                    number,
                    name,
                    f"differs from row {first_number}, the order's first row: every row of an order"
                    f" repeats its {name}",
                )
    order_channel = first.get("channel") or channel
    if channel_only and order_channel != channel:
        reject(first_number, "channel", f"this API key imports orders of channel {channel} only")
    body = _order_body(first, [values for _, values in group.rows], order_channel)
    submission: SubmitOrder | None = None
    try:  # even when a row was rejected already: a person fixes the file once, not per upload
        submission = SubmitOrder.model_validate(
            {**body, "idempotency_key": import_key(file_digest, order_channel, reference)}
        )
    except ValidationError as error:
        for item in error.errors():
            row, column = _where(tuple(item["loc"]), numbers)
            reject(row, column, _message(item))
    if rejected:
        return OrderDraft(reference, numbers, None, _with_the_rest_of_the_order(rejected, numbers, reference))
    return OrderDraft(reference, numbers, submission)


def _order_body(first: dict[str, str], lines: list[dict[str, str]], channel: str) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel, "lines": []}
    for column in COLUMNS:
        if column.name in LINE_COLUMNS or column.name == "channel":
            continue
        value = first.get(column.name)
        if value is None:
            continue
        target = body
        for step in column.path[:-1]:
            target = target.setdefault(step, {})
        target[column.path[-1]] = value
    shipping = body.setdefault("shipping", {})
    if "method" not in shipping:
        shipping["method"] = None  # reported as the missing shipping_method, not as `shipping`
    if "customer" not in body:
        body["customer"] = {"name": None}
    for values in lines:
        body["lines"].append({name: values[name] for name in LINE_COLUMNS if name in values})
    return body


def _where(location: tuple[Any, ...], rows: tuple[int, ...]) -> tuple[int, str | None]:
    """The row and column an error of the submission's validation is about."""
    if len(location) >= 3 and location[0] == "lines" and isinstance(location[1], int):
        return rows[location[1]], str(location[2])
    if len(location) >= 2 and location[0] == "lines" and isinstance(location[1], int):
        return rows[location[1]], None
    for length in range(len(location), 0, -1):
        name = _COLUMN_AT.get(tuple(str(step) for step in location[:length]))
        if name is not None:
            return rows[0], name
    return rows[0], None


def _message(item: Any) -> str:
    message = str(item["msg"])
    # The input itself is never echoed: it may be a customer's personal data.
    if item.get("type") == "missing" or (
        message.startswith("Input should be") and item.get("input", 0) is None
    ):
        return "required: the cell is empty"
    return message.removeprefix("Value error, ")


def _with_the_rest_of_the_order(
    rejected: list[RejectedRow], rows: tuple[int, ...], reference: str
) -> tuple[RejectedRow, ...]:
    """Every row of a rejected order is reported: the bad ones with their problems, the
    others as not imported because of them."""
    bad = sorted({r.row for r in rejected})
    where = ("rows " if len(bad) > 1 else "row ") + ", ".join(str(row) for row in bad)
    others = [
        RejectedRow(
            row=row,
            column=None,
            message=f"not imported: its order {reference} has errors in {where}",
            external_reference=reference[:200],
        )
        for row in rows
        if row not in bad
    ]
    return tuple(sorted([*rejected, *others], key=lambda r: r.row))


# -- the import as an aggregate -----------------------------------------------------------------

ImportStatus = Literal["queued", "running", "completed", "failed"]


@dataclass(frozen=True)
class OrderImport:
    import_id: str = ""
    started: OrderImportStarted | None = None
    rows_read: int | None = None  # None until the file was read
    orders_found: int | None = None
    orders_done: int = 0
    rows_done: int = 0
    orders_accepted: int = 0
    orders_already_imported: int = 0
    orders_rejected: int = 0
    rejected: tuple[RejectedRow, ...] = ()
    status: ImportStatus = "queued"
    failure: str | None = None

    @property
    def exists(self) -> bool:
        return self.started is not None

    @property
    def rows_rejected(self) -> int:
        return len({r.row for r in self.rejected})

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


def evolve(state: OrderImport, event: DomainEvent) -> OrderImport:
    match event:
        case OrderImportStarted():
            return replace(state, import_id=event.import_id, started=event, status="queued")
        case OrderImportRead():
            return replace(
                state,
                rows_read=event.rows_read,
                orders_found=event.orders_found,
                rejected=state.rejected + event.rejected,
                status="running",
            )
        case OrderImportProgressed():
            return replace(
                state,
                orders_done=event.orders_done,
                rows_done=event.rows_done,
                orders_accepted=state.orders_accepted + event.orders_accepted,
                orders_already_imported=state.orders_already_imported + event.orders_already_imported,
                orders_rejected=state.orders_rejected + event.orders_rejected,
                rejected=state.rejected + event.rejected,
            )
        case OrderImportCompleted():
            return replace(state, status="completed")
        case OrderImportFailed():
            return replace(state, status="failed", failure=event.reason)
    return state


ORDER_IMPORT = AggregateKind[OrderImport]("order_import", OrderImport, evolve)
