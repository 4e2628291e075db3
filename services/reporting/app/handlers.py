"""The reporting consumer's one use case: an event from a public topic changes the read
models (no aggregate, no decision, nothing published)."""

from __future__ import annotations

from libs.events import Decoded
from libs.runtime.uow import UnitOfWork
from services.reporting.adapters.projections import project
from services.reporting.adapters.read_models import read_model_writes


async def apply_event(uow: UnitOfWork, decoded: Decoded) -> None:
    project(await read_model_writes(uow), decoded.envelope, decoded.message)
