"""The reporting tables' writes of one unit of work: queued while a consumed batch is applied,
written in layers just before it commits (libs/runtime/writes.py), so a batch of hundreds of
events costs a few statements (a fact table's rows one statement: adapters/fact_rows.py)."""

from __future__ import annotations

from libs.runtime.uow import UnitOfWork
from libs.runtime.writes import WriteBatch
from services.reporting.adapters import fact_rows

_WRITES = "reporting:read-model-writes"


async def read_model_writes(uow: UnitOfWork) -> WriteBatch:
    """The unit of work's batch of reporting writes, flushed once before it commits."""

    async def new_batch() -> WriteBatch:
        batch = WriteBatch()

        async def flush() -> None:
            await fact_rows.flush(batch, await uow.db())

        uow.before_flush(_WRITES, flush)
        return batch

    return await uow.memo(_WRITES, new_batch)
