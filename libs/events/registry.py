"""Maps (message type, version) to its model, and upcasts old versions to the current one."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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
        return validate_known(model, payload)

    def all(self) -> list[type[Message]]:
        return sorted(self._current.values(), key=lambda m: (m.topic, m.message_type))


B = TypeVar("B", bound=BaseModel)


def validate_known(model: type[B], data: Any) -> B:
    """Validate `data` as a reader of the wire: fields `model` does not know are ignored (see
    known_fields). Costs nothing extra unless there are such fields."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        if not any(item["type"] == "extra_forbidden" for item in error.errors()):
            raise
    return model.model_validate(known_fields(model, data))


def known_fields(model: type[BaseModel], data: Any) -> Any:
    """`data` without the fields `model` does not know, at every level.

    Models refuse unknown fields where input enters (an HTTP body, a command built in code),
    so a typo is an error. A reader of the wire is different: a writer deployed before it may
    already add an optional field within the same version (the compatible change the schema
    check allows), and an older reader must then ignore it rather than dead-letter the message.
    """
    if not isinstance(data, dict):
        return data
    plan = _FIELD_PLANS.get(model)
    if plan is None:
        plan = _FIELD_PLANS[model] = {
            name: (_nested_model(field.annotation), _is_mapping(field.annotation))
            for name, field in model.model_fields.items()
        }
    pruned: dict[str, Any] = {}
    for name, value in data.items():
        if name not in plan:
            continue
        nested, mapping = plan[name]
        if nested is None:
            pruned[name] = value
        elif isinstance(value, list | tuple):
            pruned[name] = [known_fields(nested, item) for item in value]
        elif isinstance(value, dict) and mapping:
            pruned[name] = {key: known_fields(nested, item) for key, item in value.items()}
        else:
            pruned[name] = known_fields(nested, value)
    return pruned


# Per model: for each field, the model nested in it (if any) and whether it is a mapping.
_FIELD_PLANS: dict[type[BaseModel], dict[str, tuple[type[BaseModel] | None, bool]]] = {}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The one model class inside an annotation (Model, Model | None, tuple[Model, ...],
    dict[str, Model], Annotated[...]), or None when there is none, or more than one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for arg in typing.get_args(annotation) if (m := _nested_model(arg)) is not None}
    return found.pop() if len(found) == 1 else None


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_mapping(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(arg) for arg in typing.get_args(annotation))
    return origin is dict


registry = MessageRegistry()
