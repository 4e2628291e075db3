"""What the reporting API answers in JSON. Money and rates are decimal strings ("12.50"),
never floats; every money figure comes with its currency."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

Amount = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json")]
Rate = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.4f}", return_type=str, when_used="json")]
Seconds = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.3f}", return_type=str, when_used="json")]


class OrdersRow(BaseModel):
    key: dict[str, str | None] = Field(
        description='The value of each group_by dimension, e.g. {"region": "DE", "month": "2026-11"}'
    )
    currency: str
    orders: int
    units: int
    net_amount: Amount
    tax_amount: Amount
    gross_amount: Amount


class OrdersReport(BaseModel):
    report: str = "orders"
    group_by: list[str]
    rows: list[OrdersRow]


class RankingRow(BaseModel):
    rank: int
    key: str
    currency: str
    orders: int
    units: int
    revenue: Amount = Field(description="Net of tax")


class RankingReport(BaseModel):
    report: str = "sales-ranking"
    by: str
    rows: list[RankingRow]


class PaymentsRow(BaseModel):
    currency: str
    invoiced: Amount
    collected: Amount
    refunded: Amount
    outstanding: Amount
    not_due: Amount
    overdue_0_30: Amount
    overdue_31_60: Amount
    overdue_61_90: Amount
    overdue_over_90: Amount
    credited: Amount = Field(
        description="Returns' credit notes issued in the period, at what the returned lines were invoiced at"
        " (the part paid back is in refunded too; the rest is no longer outstanding)"
    )


class PaymentsReport(BaseModel):
    report: str = "payments"
    as_of: datetime = Field(description="The moment overdue invoices are aged at")
    rows: list[PaymentsRow]


class ReceivableRow(BaseModel):
    customer_id: str
    invoice_id: str
    order_id: str
    currency: str
    total: Amount
    amount_paid: Amount
    outstanding: Amount
    issued_at: datetime
    due_at: datetime
    days_past_due: int = Field(description="Negative: not due yet")
    bucket: str = Field(description="not_due, 0-30, 31-60, 61-90 or over_90")
    credited: Amount = Field(description="Credited by returns' credit notes; outstanding already counts it")


class ReceivablesReport(BaseModel):
    report: str = "receivables"
    as_of: datetime
    rows: list[ReceivableRow]


class InventoryRow(BaseModel):
    sku: str
    warehouse: str | None = Field(
        description="None: backorders, which wait for stock in no particular warehouse"
    )
    on_hand: int
    reserved: int
    available: int
    in_transit: int = Field(description="On its way to this warehouse")
    backordered: int
    stock_outs: int = Field(description="Times in the period available stock fell to zero or below")
    dispatched: int = Field(description="Units dispatched in the period")
    turnover: Rate | None = Field(description="dispatched / on hand at as_of")


class InventoryReport(BaseModel):
    report: str = "inventory"
    as_of: datetime | None = Field(description="The levels are those at this moment (None: now)")
    rows: list[InventoryRow]


class FunnelRow(BaseModel):
    stage: str
    orders: int
    conversion_from_previous: Rate | None
    conversion_from_placed: Rate | None


class EndedRow(BaseModel):
    reason: str
    orders: int
    rate: Rate | None = Field(description="Of the orders placed in the period")


class Timing(BaseModel):
    p50_seconds: Seconds | None
    p95_seconds: Seconds | None


class FulfilmentReport(BaseModel):
    report: str = "fulfilment"
    rows: list[FunnelRow] = Field(description="The funnel: placed, confirmed, shipped, delivered, completed")
    cancellations: list[EndedRow]
    rejections: list[EndedRow]
    time_to_confirmation: Timing
    time_to_delivery: Timing
    needs_attention: int


class ProductionRow(BaseModel):
    sku: str
    production_orders: int
    planned_quantity: int
    completed_quantity: int
    lead_time_p50_seconds: Seconds | None
    quality_pass_rate: Rate | None
    late_orders: int


class ProductionReport(BaseModel):
    report: str = "production"
    rows: list[ProductionRow]


class SourceView(BaseModel):
    topic: str
    messages_behind: int
    lag_seconds: float | None = Field(description="0: caught up; None: nothing applied yet")
    events_applied: int
    last_event_at: datetime | None
    last_applied_at: datetime | None


class FreshnessReport(BaseModel):
    sources: list[SourceView]
    lag_seconds: float | None = Field(description="The largest of the sources'")
