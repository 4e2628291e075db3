"""Deferred read-model writes: what a unit of work's projections change, run just before it
commits with as few round trips as correctness allows.

A consumed batch of a hundred messages used to cost a few hundred single statements; most of a
service's CPU (and much of the database's) went on their round trips. Projections now add
their statements here, each naming the row it touches, and `flush` runs them in layers: the
first write to every row, then the second, and so on. Writes to different rows commute, and
writes to one row keep the order they were added in, so the outcome is the one that running
them one by one would give. Within a layer each distinct statement runs once, for all its
rows (asyncpg's executemany: one round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import asyncpg

from libs.runtime.db import Sql


class WriteBatch:
    def __init__(self) -> None:
        self._writes: list[tuple[Sql, dict[str, Any], Hashable]] = []
        self._last: dict[Hashable, tuple[Sql, dict[str, Any]]] = {}

    def add(self, statement: Sql, params: Mapping[str, Any], row: Hashable) -> None:
        """Queue `statement`; `row` identifies what it changes (writes that may touch the same
        row must name the same `row`, so they keep their order)."""
        queued = dict(params)
        self._writes.append((statement, queued, row))
        self._last[row] = (statement, queued)

    def queued(self, statement: Sql, row: Hashable) -> dict[str, Any] | None:
        """The parameters of `statement` if it is the last write queued for `row`, else None.

        Changing them is the same as queueing a write after it, one statement cheaper: an
        INSERT that already carries the row's state after this batch's later events saves an
        UPDATE per event (a row version and an entry in every index of the table)."""
        last = self._last.get(row)
        return last[1] if last is not None and last[0] is statement else None

    def __len__(self) -> int:
        return len(self._writes)

    def layers(self) -> list[dict[Sql, list[tuple[Any, ...]]]]:
        """The writes in the order `flush` runs them: per layer, each statement's argument rows."""
        depth: dict[Hashable, int] = {}
        layers: list[dict[Sql, list[tuple[Any, ...]]]] = []
        for statement, params, row in self._writes:
            layer = depth.get(row, 0)
            depth[row] = layer + 1
            if layer == len(layers):
                layers.append({})
            layers[layer].setdefault(statement, []).append(statement.args(params))
        return layers

    async def flush(self, db: asyncpg.Connection) -> None:
        for layer in self.layers():
            for statement, rows in layer.items():
                await db.executemany(statement.text, rows)
        self._writes.clear()
        self._last.clear()


ProjectorLike = Callable[[WriteBatch, Any, Any], None]


def both(first: ProjectorLike, second: ProjectorLike) -> ProjectorLike:
    """A projector that runs `first`, then `second` (a service's own read model and the access
    tables, say)."""

    def projector(batch: WriteBatch, envelope: Any, event: Any) -> None:
        first(batch, envelope, event)
        second(batch, envelope, event)

    return projector
