"""Group commit: concurrent commands of one process (HTTP requests, mostly) share one
transaction, the way a consumed batch does.

Under load a service receives many requests at once; giving each its own transaction cost a
BEGIN, a flush and a COMMIT (with its fsync) apiece. Here a request queues its action and
waits; one task runs whatever is queued in a single unit of work, commits once and answers
everyone. An idle service runs a lone request at once, so nothing waits for a timer.

Isolation is kept by construction: if an action fails inside a group, the group's transaction
is rolled back, the others run again as a group without it, and it runs again alone, so it
gets exactly the outcome (result or error) it would have had by itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libs.runtime.uow import MessageContext, UnitOfWork, retry_on_conflict

log = logging.getLogger(__name__)

T = TypeVar("T")
Action = Callable[[UnitOfWork], Awaitable[Any]]
OpenUnitOfWork = Callable[[MessageContext], AbstractAsyncContextManager[UnitOfWork]]


@dataclass
class _Request:
    context: MessageContext
    action: Action
    # The caller's context variables (its trace span, its correlation id for logs): the
    # action runs inside them, so its events carry the caller's trace.
    variables: contextvars.Context
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _ActionFailed(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(f"action {index} of the group failed")
        self.index = index


class GroupCommitter:
    def __init__(self, open_unit_of_work: OpenUnitOfWork, max_group: int = 200) -> None:
        self._open = open_unit_of_work
        self._max_group = max_group
        self._queue: list[_Request] = []
        self._runner: asyncio.Task[None] | None = None

    async def execute(self, context: MessageContext, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        request = _Request(context, action, contextvars.copy_context())
        self._queue.append(request)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_queued())
        result: T = await request.answer
        return result

    async def _run_queued(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
            try:
                await self._run(group)
            except BaseException as error:  # never leave a caller waiting
                for request in group:
                    _settle(request, error=error)
                if isinstance(error, asyncio.CancelledError):
                    raise

    async def _run(self, group: list[_Request]) -> None:
        if len(group) == 1:
            await self._run_alone(group[0])
            return
        try:
            results = await retry_on_conflict(lambda: self._run_together(group))
        except _ActionFailed as failed:
            others = group[: failed.index] + group[failed.index + 1 :]
            await self._run(others)
            await self._run_alone(group[failed.index])
            return
        except Exception:
            # The shared flush or commit failed (a constraint, the database): each alone.
            log.info("group of %d commands failed together; running each alone", len(group), exc_info=True)
            for request in group:
                await self._run_alone(request)
            return
        for request, result in zip(group, results, strict=True):
            _settle(request, result)

    async def _run_together(self, group: list[_Request]) -> list[Any]:
        results = []
        async with self._open(group[0].context) as uow:
            for index, request in enumerate(group):
                uow.context = request.context
                try:
                    results.append(await _in_context(request, uow))
                except Exception as error:
                    raise _ActionFailed(index) from error
        return results

    async def _run_alone(self, request: _Request) -> None:
        async def attempt() -> Any:
            async with self._open(request.context) as uow:
                return await _in_context(request, uow)

        try:
            _settle(request, await retry_on_conflict(attempt))
        except Exception as error:
            _settle(request, error=error)


def _settle(request: _Request, result: Any = None, error: BaseException | None = None) -> None:
    if request.answer.done():  # the caller went away (a client disconnected)
        return
    if error is not None:
        request.answer.set_exception(error)
    else:
        request.answer.set_result(result)


async def _in_context(request: _Request, uow: UnitOfWork) -> Any:
    async def run() -> Any:
        return await request.action(uow)

    return await asyncio.create_task(run(), context=request.variables.copy())
