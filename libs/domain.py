"""Pure building blocks for service domains: no I/O, no framework, no clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from libs.events.base import DomainEvent

State = TypeVar("State")


class DomainError(Exception):
    """A business rule refused a command. `code` is stable; the message is for a person.

    The HTTP layer turns it into a 4xx problem+json (409 for state conflicts, 422 for
    invalid requests, 404 for unknown things).
    """

    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(DomainError):
    status = 404


class InvalidRequest(DomainError):
    status = 422


@dataclass(frozen=True)
class AggregateKind(Generic[State]):
    """How to rebuild one kind of aggregate from its events: start from `initial`, fold `evolve`."""

    stream_type: str
    initial: Callable[[], State]
    evolve: Callable[[State, DomainEvent], State]

    def stream_id(self, aggregate_id: str) -> str:
        return f"{self.stream_type}-{aggregate_id}"

    def replay(self, events: list[DomainEvent]) -> State:
        state = self.initial()
        for event in events:
            state = self.evolve(state, event)
        return state
