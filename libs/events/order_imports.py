"""Order file imports (order service): the desk uploads a CSV or XLSX file of order lines and
the order service places its orders in the background (docs/imports.md).

All private: an import's progress is the order service's own bookkeeping, kept in the
`order_import` streams of its event store. The orders an import places are told to the rest
of the system as every order is (OrderPlaced, OrderStatusChanged).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.events.base import DomainEvent
from libs.events.registry import registry
from libs.events.topics import ORDER_EVENTS

ImportFormat = Literal["csv", "xlsx"]


class RejectedRow(BaseModel):
    """One row of the file that did not become (part of) an order, and why. `row` counts as a
    spreadsheet does: the header is row 1, the first order line row 2."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int = Field(ge=1)
    column: str | None = Field(default=None, max_length=100, description="The column at fault, if one is")
    message: str = Field(max_length=500)
    external_reference: str | None = Field(default=None, max_length=200)


class OrderImportEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "order_import"
    topic: ClassVar[str] = ORDER_EVENTS
    published: ClassVar[bool] = False

    import_id: str


@registry.register
class OrderImportStarted(OrderImportEvent):
    """A file was uploaded; its bytes are kept beside the event until the import is done."""

    message_type: ClassVar[str] = "OrderImportStarted"
    file_name: str = Field(max_length=255)
    file_format: ImportFormat
    file_digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file's bytes")
    file_size: int = Field(ge=0)
    channel: str = Field(max_length=40, description="Channel of rows that name none")
    uploaded_by: str = Field(max_length=200, description="Who uploaded it: its orders are placed as theirs")
    channel_only: bool = Field(
        default=False, description="Rows of any other channel are refused (a channel's API key uploaded it)"
    )


@registry.register
class OrderImportRead(OrderImportEvent):
    """The file was read: its order line rows and the orders they group into. Rows that
    belong to no order (no external reference, say) are rejected here."""

    message_type: ClassVar[str] = "OrderImportRead"
    rows_read: int = Field(ge=0)
    orders_found: int = Field(ge=0)
    rejected: tuple[RejectedRow, ...] = ()


@registry.register
class OrderImportProgressed(OrderImportEvent):
    """A batch of the file's orders was submitted, in the same transaction as the orders it
    placed: `orders_done` is how many of the file's orders (in the order they first appear)
    are behind the import now."""

    message_type: ClassVar[str] = "OrderImportProgressed"
    orders_done: int = Field(ge=0)
    rows_done: int = Field(ge=0)
    orders_accepted: int = Field(ge=0, description="New orders placed by this batch")
    orders_already_imported: int = Field(
        ge=0, description="Orders placed before under the same reference with the same content"
    )
    orders_rejected: int = Field(ge=0)
    rejected: tuple[RejectedRow, ...] = ()


@registry.register
class OrderImportCompleted(OrderImportEvent):
    message_type: ClassVar[str] = "OrderImportCompleted"


@registry.register
class OrderImportFailed(OrderImportEvent):
    """The file could not be read at all (not a spreadsheet, a missing column): nothing of
    it was imported."""

    message_type: ClassVar[str] = "OrderImportFailed"
    reason: str = Field(max_length=1000)
