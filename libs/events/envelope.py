"""The envelope every message on Kafka travels in (ARCHITECTURE.md section 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(description="Unique id of this message; consumers deduplicate on it.")
    event_type: str = Field(description="Stable name of the message type, e.g. OrderPlaced.")
    event_version: int = Field(ge=1, description="Schema version of the payload.")
    aggregate_type: str
    aggregate_id: str = Field(description="Kafka key: all messages of one aggregate keep order.")
    aggregate_version: int = Field(ge=0, description="Position in the aggregate's stream (0 for commands).")
    occurred_at: datetime
    correlation_id: str = Field(description="The order or request this message belongs to.")
    causation_id: str | None = Field(default=None, description="The message that caused it.")
    actor: str = Field(description="Who or what did it: user:<id>, channel:<name>, service:<name>.")
    payload: dict[str, Any]
