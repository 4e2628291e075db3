"""UnitOfWork.before_flush: a check on the state a unit of work leaves, run once before it
writes, after everything it recorded (and again for what a check itself registers)."""

from __future__ import annotations

from typing import Any

from libs.runtime.uow import MessageContext, UnitOfWork


def unit_of_work() -> UnitOfWork:
    connection: Any = None  # nothing is written: the flush has nothing queued
    return UnitOfWork(connection, MessageContext(correlation_id="c", actor="test"))


async def test_a_check_registered_many_times_runs_once_at_flush() -> None:
    uow = unit_of_work()
    ran: list[str] = []

    async def check() -> None:
        ran.append("sku-A")

    for _ in range(3):
        uow.before_flush(("low-stock", "A"), check)
    assert ran == []

    await uow.flush()

    assert ran == ["sku-A"]


async def test_checks_registered_by_a_check_run_in_the_same_flush_and_not_again() -> None:
    uow = unit_of_work()
    ran: list[str] = []

    async def second() -> None:
        ran.append("second")

    async def first() -> None:
        ran.append("first")
        uow.before_flush("second", second)

    uow.before_flush("first", first)
    await uow.flush()
    await uow.flush()

    assert ran == ["first", "second"]
