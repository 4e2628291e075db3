"""The unit of work against the real database: a cached aggregate that another process moved
on never decides anything, and after-commit effects (metrics, log lines) happen once per
committed outcome, whatever was rolled back and run again on the way."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import ClassVar
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import AggregateKind, DomainError
from libs.events import registry
from libs.events.base import DomainEvent
from libs.runtime.db import ConcurrencyConflict, create_engine
from libs.runtime.group_commit import GroupCommitter
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import AggregateCache, MessageContext, UnitOfWork, retry_on_conflict, unit_of_work
from tests.conftest import RUN_ID, eventually

pytestmark = pytest.mark.integration


@registry.register
class LampSwitched(DomainEvent):
    message_type: ClassVar[str] = f"TestLampSwitched{RUN_ID}"
    aggregate_type: ClassVar[str] = "lamp"
    topic: ClassVar[str] = f"test.{RUN_ID}.lamp.events"
    lamp_id: str
    on: bool


@dataclass(frozen=True)
class Lamp:
    on: bool = False


LAMP = AggregateKind[Lamp]("lamp", Lamp, lambda _, e: Lamp(e.on))  # type: ignore[attr-defined]
CONTEXT = MessageContext(correlation_id="test", actor="test")


async def switch(uow: UnitOfWork, lamp_id: str, on: bool) -> None:
    """Switch only if needed: a decision that may emit nothing, the kind a stale cache breaks."""
    lamp, version = await uow.load(LAMP, lamp_id)
    if lamp.on != on:
        await uow.record(LAMP, lamp_id, version, [LampSwitched(lamp_id=lamp_id, on=on)])


async def state_of(engine: AsyncEngine, lamp_id: str) -> tuple[Lamp, int]:
    async with unit_of_work(engine, CONTEXT) as uow:
        return await uow.load(LAMP, lamp_id)


async def test_a_do_nothing_decision_on_a_stale_cached_state_is_retried_on_fresh_state(
    engine: AsyncEngine,
) -> None:
    lamp = f"lamp-{uuid4().hex[:8]}"
    replica_a, replica_b = AggregateCache(), AggregateCache()
    async with unit_of_work(engine, CONTEXT, cache=replica_a) as uow:
        await switch(uow, lamp, on=True)  # A caches: on, version 1
    async with unit_of_work(engine, CONTEXT, cache=replica_b) as uow:
        await switch(uow, lamp, on=False)  # B moves it on: off, version 2

    async def on_replica_a() -> None:
        async with unit_of_work(engine, CONTEXT, cache=replica_a) as uow:
            await switch(uow, lamp, on=True)  # A's copy says "already on": nothing to do?

    with pytest.raises(ConcurrencyConflict):
        await on_replica_a()
    await retry_on_conflict(on_replica_a)

    assert await state_of(engine, lamp) == (Lamp(on=True), 3)
    assert replica_a.get(f"lamp-{lamp}") == (Lamp(on=True), 3)


async def test_a_refusal_decided_on_a_stale_cached_state_is_retried_not_answered(engine: AsyncEngine) -> None:
    lamp = f"lamp-{uuid4().hex[:8]}"
    replica_a, replica_b = AggregateCache(), AggregateCache()
    async with unit_of_work(engine, CONTEXT, cache=replica_a) as uow:
        await switch(uow, lamp, on=True)
    async with unit_of_work(engine, CONTEXT, cache=replica_b) as uow:
        await switch(uow, lamp, on=False)

    async def turn_off_on_replica_a() -> str:
        async with unit_of_work(engine, CONTEXT, cache=replica_a) as uow:
            current, version = await uow.load(LAMP, lamp)
            if not current.on:
                raise DomainError("already_off", "the lamp is already off")
            await uow.record(LAMP, lamp, version, [LampSwitched(lamp_id=lamp, on=False)])
            return "switched off"

    # A's copy says "on", so A would switch it off; the store says it is off already. The
    # refusal a person gets must be the one the current state gives.
    with pytest.raises(DomainError, match="already off"):
        await retry_on_conflict(turn_off_on_replica_a)


@dataclass(frozen=True)
class Tally:
    switches: int = 0
    on: bool = False


class CountingTally:
    """A lamp that counts its switches, and counts how many events were folded to know it."""

    def __init__(self) -> None:
        self.folded = 0
        self.kind = AggregateKind[Tally]("lamp", Tally, self.evolve)

    def evolve(self, state: Tally, event: DomainEvent) -> Tally:
        self.folded += 1
        return Tally(state.switches + 1, event.on)  # type: ignore[attr-defined]


async def flip(uow: UnitOfWork, kind: AggregateKind[Tally], lamp_id: str) -> None:
    tally, version = await uow.load(kind, lamp_id)
    await uow.record(kind, lamp_id, version, [LampSwitched(lamp_id=lamp_id, on=not tally.on)])


@pytest.mark.parametrize("preloaded", [False, True], ids=["load", "preload"])
async def test_a_cached_state_that_fell_behind_reads_only_the_events_after_it(
    engine: AsyncEngine, preloaded: bool
) -> None:
    """A hot stream that another replica keeps writing must not be reloaded whole after each
    conflict: the retry would take longer as the stream grows, and lose again."""
    lamp = f"lamp-{uuid4().hex[:8]}"
    replica_a, replica_b = CountingTally(), CountingTally()
    cache_a, cache_b = AggregateCache(), AggregateCache()
    for _ in range(30):  # A knows the stream at version 30
        async with unit_of_work(engine, CONTEXT, cache=cache_a) as uow:
            await flip(uow, replica_a.kind, lamp)
    for _ in range(5):  # B moves it on by 5 (B reads all 30 once, then its own cache)
        async with unit_of_work(engine, CONTEXT, cache=cache_b) as uow:
            await flip(uow, replica_b.kind, lamp)

    async def flip_on_a() -> None:
        async with unit_of_work(engine, CONTEXT, cache=cache_a) as uow:
            if preloaded:
                await uow.preload(replica_a.kind, [lamp])
            await flip(uow, replica_a.kind, lamp)

    replica_a.folded = 0
    with pytest.raises(ConcurrencyConflict):
        await flip_on_a()
    await flip_on_a()

    # the conflicting attempt folded its own 1 event; the retry the 5 it missed and its 1
    assert replica_a.folded == 1 + 5 + 1
    assert cache_a.get(f"lamp-{lamp}") == (Tally(switches=36, on=False), 36)
    assert await state_of_tally(engine, lamp) == (Tally(switches=36, on=False), 36)


async def state_of_tally(engine: AsyncEngine, lamp_id: str) -> tuple[Tally, int]:
    async with unit_of_work(engine, CONTEXT) as uow:
        return await uow.load(CountingTally().kind, lamp_id)


async def test_after_commit_effects_run_once_per_committed_command_in_a_group(engine: AsyncEngine) -> None:
    effects: list[str] = []
    group = GroupCommitter(lambda context: unit_of_work(engine, context))
    lamps = [f"lamp-{uuid4().hex[:8]}" for _ in range(5)]

    async def command(uow: UnitOfWork, lamp_id: str) -> None:
        await switch(uow, lamp_id, on=True)
        uow.after_commit(partial(effects.append, lamp_id))
        if lamp_id == lamps[2]:
            raise ValueError("refused")  # fails the group: the others run again

    outcomes = await asyncio.gather(
        *(group.execute(CONTEXT, partial(command, lamp_id=lamp_id)) for lamp_id in lamps),
        return_exceptions=True,
    )

    assert isinstance(outcomes[2], ValueError)
    assert sorted(effects) == sorted(lamps[:2] + lamps[3:])  # each once, the refused one never


async def test_after_commit_effects_of_a_conflicting_attempt_are_not_run(engine: AsyncEngine) -> None:
    lamp = f"lamp-{uuid4().hex[:8]}"
    effects: list[int] = []
    both_loaded = asyncio.Barrier(2)

    async def toggle() -> None:
        async with unit_of_work(engine, CONTEXT) as uow:
            current, version = await uow.load(LAMP, lamp)
            await both_loaded.wait()
            await uow.record(LAMP, lamp, version, [LampSwitched(lamp_id=lamp, on=not current.on)])
            uow.after_commit(partial(effects.append, version))

    results = await asyncio.gather(toggle(), toggle(), return_exceptions=True)

    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 1
    assert effects == [0]  # the winner's effect only


async def test_a_transaction_left_idle_is_ended_by_the_server_releasing_its_locks(
    engine: AsyncEngine, settings: RuntimeSettings
) -> None:
    """A replica paused in the middle of a transaction must not hold the others up for good."""
    idle_engine = create_engine(settings.model_copy(update={"db_idle_in_transaction_ms": 300}), "store")
    conn = await idle_engine.connect()
    try:
        transaction = await conn.begin()
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert (await conn.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one() == "300ms"

        async def ended() -> bool:
            async with engine.connect() as other:
                found = await other.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                )
                return bool(found.scalar_one() == 0)

        await eventually(ended, timeout=10)  # the server closed the idle session

        with pytest.raises(Exception):  # noqa: B017 - the driver's own "connection closed" error
            await transaction.commit()
    finally:
        await conn.invalidate()
        await idle_engine.dispose()
