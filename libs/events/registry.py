"""Maps (message type, version) to its model, and upcasts old versions to the current one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from libs.events.base import Message

M = TypeVar("M", bound=type[Message])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownMessageType(LookupError):
    pass


class MessageRegistry:
    def __init__(self) -> None:
        self._current: dict[str, type[Message]] = {}
        # (type, from_version) -> function turning a payload of from_version into from_version+1
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: M) -> M:
        name = model.message_type
        if name in self._current and self._current[name] is not model:
            raise ValueError(f"message type {name} registered twice")
        self._current[name] = model
        return model

    def upcaster(self, message_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def add(function: Upcaster) -> Upcaster:
            self._upcasters[(message_type, from_version)] = function
            return function

        return add

    def model_for(self, message_type: str) -> type[Message]:
        try:
            return self._current[message_type]
        except KeyError:
            raise UnknownMessageType(f"unknown message type {message_type!r}") from None

    def load(self, message_type: str, version: int, payload: dict[str, Any]) -> Message:
        """Validate a payload of any known version into the current model."""
        model = self.model_for(message_type)
        if version > model.message_version:
            raise UnknownMessageType(
                f"{message_type} v{version} is newer than this reader (v{model.message_version})"
            )
        while version < model.message_version:
            step = self._upcasters.get((message_type, version))
            if step is None:
                raise UnknownMessageType(f"no upcaster for {message_type} v{version}")
            payload = step(payload)
            version += 1
        return model.model_validate(payload)

    def all(self) -> list[type[Message]]:
        return sorted(self._current.values(), key=lambda m: (m.topic, m.message_type))


registry = MessageRegistry()
