"""A reader's fast decode of the wire: the envelope and payload checked by msgspec, in C, and
the same pydantic objects built from them without pydantic validating them again.

The full decode (codec.decode) validates every payload with the contracts' pydantic models,
which is most of what a replay costs (docs/performance.md). Here the msgspec types are derived
from those models, field by field, so that the one rule holds: **a message this path accepts is
one the full decode accepts, with the same values.** Where msgspec would accept more than
pydantic, or read a value differently, the derived type is narrower (the message then goes the
full way), never wider:

- strings: the same min/max length (both count code points) and pattern, with the pattern's
  closing `$` made `\\Z` (pydantic's regex engine ends at the end; Python's `$` also matches
  before a final newline), and only patterns of literal characters, classes and counts;
- integers and booleans: JSON integers and booleans only (pydantic also takes "5" or 5.0: the
  full way), with the same bounds;
- decimals: JSON strings of plain digits only ("19.90"; no exponent, sign unless the bounds
  allow negatives, leading zero or blank), the digit counts checked on the text (at least as
  strict as pydantic's, which ignores trailing zeros) and the bounds on the value;
- datetimes: `YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+HH:MM]` only, read by the standard library
  (msgspec rounds a seventh fractional digit where pydantic truncates it);
- literals of strings, optionals, tuples and dicts of these, UUIDs, nested models;
- unknown fields are ignored, as libs.events.registry.validate_known ignores them.

A model with anything else is not fast-pathed: a validator of its own or of a field
(field_validator, model_validator, Before/After/Plain/WrapValidator, anywhere in it, since
only pydantic can run them), aliases, a config beyond frozen and extra, another constraint or
type. Nor is a payload of an older version (its upcasters run on the full path), nor an
unknown type. tests/unit/test_fast_decode.py runs both decoders over every example payload
and mutated ones to hold the rule.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.functional_serializers import PlainSerializer, WrapSerializer
from pydantic.types import AllowInfNan

from libs.events.base import Message
from libs.events.envelope import Envelope
from libs.events.registry import UnknownMessageType, registry


class NotFastPathed(Exception):
    """Why a contract has no fast path (its messages are decoded the full way)."""


class _Refused(ValueError):
    """A value the fast path does not vouch for: the message goes the full way."""


# A wire value (as msgspec decoded it) -> the value the pydantic model holds.
Convert = Callable[[Any], Any]

_set = object.__setattr__
_UNSET = msgspec.UNSET

# Patterns made of anchors, literal characters, classes and counts mean the same to Python's
# re and to pydantic's Rust regex once `$` is `\\Z`; anything richer is not fast-pathed (a class
# with `&&`, `--` or `~~` is a set operation to Rust, a plain class to Python).
_PATTERN_TOKENS = re.compile(r"(?:\[(?!\^?\])[^\[\]\\]+\]|[A-Za-z0-9_ :@,/-])(?:[+*?]|\{\d+(?:,\d+)?\})?")
_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-](0\d|1\d|2[0-3]):[0-5]\d)?\Z"
# Longer decimal texts than any contract allows go the full way (pydantic's own errors).
_MAX_DECIMAL_TEXT = 64

_VALIDATORS = ("validators", "field_validators", "root_validators", "model_validators")
_CONFIG_ALLOWED = {"frozen": (True, False), "extra": ("forbid", "ignore")}


@dataclass
class _Constraints:
    """The constraints pydantic checks on one value, gathered from Field(...) and Annotated."""

    values: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        if value is None:
            return
        if key not in self.values or self.values[key] == value:
            self.values[key] = value
        elif key in ("ge", "gt"):
            self.values[key] = max(self.values[key], value)
        elif key in ("le", "lt", "max_length", "max_digits", "decimal_places"):
            self.values[key] = min(self.values[key], value)
        elif key == "min_length":
            self.values[key] = max(self.values[key], value)
        else:
            raise NotFastPathed(f"two different {key} constraints")

    def take(self, *keys: str) -> dict[str, Any]:
        """The constraints named; any other one left means the type is not fast-pathed."""
        unknown = set(self.values) - set(keys)
        if unknown:
            raise NotFastPathed(f"constraint(s) {sorted(unknown)} not fast-pathed")
        return {k: v for k, v in self.values.items() if k in keys}


def _gather(metadata: typing.Iterable[Any], into: _Constraints) -> None:
    for item in metadata:
        if isinstance(item, FieldInfo):
            if item.alias is not None or item.validation_alias is not None:
                raise NotFastPathed("an alias")
            _gather(item.metadata, into)
        elif isinstance(item, (PlainSerializer, WrapSerializer)):
            continue  # how the value is written, not what is accepted
        elif isinstance(item, annotated_types.Gt):
            into.add("gt", item.gt)
        elif isinstance(item, annotated_types.Ge):
            into.add("ge", item.ge)
        elif isinstance(item, annotated_types.Lt):
            into.add("lt", item.lt)
        elif isinstance(item, annotated_types.Le):
            into.add("le", item.le)
        elif isinstance(item, annotated_types.MinLen):
            into.add("min_length", item.min_length)
        elif isinstance(item, annotated_types.MaxLen):
            into.add("max_length", item.max_length)
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            for key, value in vars(item).items():
                if key == "allow_inf_nan" and value is False:
                    continue  # the decimal texts accepted here are never NaN or infinite
                into.add(key, value)
        elif isinstance(item, AllowInfNan):
            if item.allow_inf_nan:
                raise NotFastPathed("NaN or infinity allowed")
        else:
            # BeforeValidator, AfterValidator, PlainValidator, WrapValidator, Strict, ...
            raise NotFastPathed(f"{type(item).__name__} on a field")


def _closing_anchor(pattern: str) -> str:
    body = pattern.removeprefix("^").removesuffix("$")
    tokens = _PATTERN_TOKENS.findall(body)
    if "".join(tokens) != body or any(op in token for token in tokens for op in ("&&", "--", "~~")):
        raise NotFastPathed(f"pattern {pattern!r} beyond literal characters, classes and counts")
    return pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern


def _decimal_pattern(limits: dict[str, Any]) -> str:
    """Plain decimal text within the digit limits: `(0|[1-9]d*)(.d+)?`, signed only when the
    bounds allow a negative value, with at most max_digits - decimal_places digits before the
    point and decimal_places after it (pydantic counts without trailing zeros: never more)."""
    places, digits = limits.get("decimal_places"), limits.get("max_digits")
    if digits is not None and places is None:
        raise NotFastPathed("max_digits without decimal_places")
    lower = limits.get("ge", limits.get("gt"))
    sign = "" if lower is not None and lower >= 0 else "-?"
    whole = "[0-9]*" if digits is None else f"[0-9]{{0,{digits - places - 1}}}" if digits > places else None
    integer = "0" if whole is None else f"(0|[1-9]{whole})"
    fraction = "" if places == 0 else r"(\.[0-9]+)?" if places is None else rf"(\.[0-9]{{1,{places}}})?"
    return rf"^{sign}{integer}{fraction}\Z"


def _decimal_convert(limits: dict[str, Any]) -> Convert:
    ge, gt, le, lt = (limits.get(k) for k in ("ge", "gt", "le", "lt"))
    if gt is None and le is None and lt is None and (ge is None or ge == 0):
        return Decimal  # the pattern holds the sign and the digits

    def convert(text: str) -> Decimal:
        value = Decimal(text)
        if (
            (ge is not None and not value >= ge)
            or (gt is not None and not value > gt)
            or (le is not None and not value <= le)
            or (lt is not None and not value < lt)
        ):
            raise _Refused("out of bounds")
        return value

    return convert


def _each(convert: Convert, nullable: bool) -> Convert:
    """A tuple's converter from its items'."""
    if nullable:
        return lambda items: tuple([None if item is None else convert(item) for item in items])
    return lambda items: tuple([convert(item) for item in items]) if items else items


def _each_value(convert: Convert, nullable: bool) -> Convert:
    """A dict's converter from its values'."""
    if nullable:
        return lambda mapping: {
            key: None if value is None else convert(value) for key, value in mapping.items()
        }
    return lambda mapping: {key: convert(value) for key, value in mapping.items()}


@dataclass(frozen=True)
class _Wire:
    """How one value travels: msgspec's type, the converter to pydantic's value (None when
    they are the same), and whether it may be null (converters never see None)."""

    type: Any
    convert: Convert | None = None
    nullable: bool = False


class _Plans:
    """Per pydantic model, its msgspec Struct and how to build the model from one."""

    def __init__(self) -> None:
        self.models: dict[type[BaseModel], _ModelPlan | NotFastPathed] = {}

    def model(self, model: type[BaseModel], raw_fields: frozenset[str] = frozenset()) -> _ModelPlan:
        known = self.models.get(model)
        if isinstance(known, NotFastPathed):
            raise known
        if known is None:
            try:
                known = _ModelPlan(model, self, raw_fields)
            except NotFastPathed as error:
                refusal = NotFastPathed(f"{model.__name__}: {error}")
                self.models[model] = refusal
                raise refusal from None
            self.models[model] = known
        return known

    def translate(self, annotation: Any, constraints: _Constraints) -> _Wire:  # noqa: C901 - one arm per kind of type
        """msgspec's type for one field, and how its value becomes pydantic's."""
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            inner, *metadata = typing.get_args(annotation)
            _gather(metadata, constraints)
            return self.translate(inner, constraints)
        if origin in (Union, types.UnionType):
            arms = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(arms) != 1 or len(typing.get_args(annotation)) != 2:
                raise NotFastPathed(f"union {annotation!r}")
            inner = self.translate(arms[0], constraints)
            if inner.nullable:
                raise NotFastPathed(f"nested optional {annotation!r}")
            return _Wire(Union[inner.type, None], inner.convert, nullable=True)  # noqa: UP007 - built at run time
        if annotation is bool:
            constraints.take()
            return _Wire(bool)
        if annotation is int:
            bounds = constraints.take("ge", "gt", "le", "lt")
            if any(type(v) is not int for v in bounds.values()):
                raise NotFastPathed("an integer bound that is not an integer")
            return _Wire(Annotated[int, msgspec.Meta(**bounds)] if bounds else int)
        if annotation is str:
            limits = constraints.take("min_length", "max_length", "pattern")
            if "pattern" in limits:
                limits["pattern"] = _closing_anchor(limits["pattern"])
            return _Wire(Annotated[str, msgspec.Meta(**limits)] if limits else str)
        if annotation is Decimal:
            limits = constraints.take("ge", "gt", "le", "lt", "max_digits", "decimal_places")
            pattern = _decimal_pattern(limits)
            return _Wire(
                Annotated[str, msgspec.Meta(pattern=pattern, max_length=_MAX_DECIMAL_TEXT)],
                _decimal_convert(limits),
            )
        if annotation is datetime:
            constraints.take()
            return _Wire(Annotated[str, msgspec.Meta(pattern=_DATETIME)], datetime.fromisoformat)
        if annotation is UUID:
            constraints.take()
            return _Wire(UUID)
        if origin is Literal:
            constraints.take()
            if not all(type(v) is str for v in typing.get_args(annotation)):
                raise NotFastPathed(f"{annotation!r}: literals other than strings")
            return _Wire(annotation)
        if origin is tuple:
            args = typing.get_args(annotation)
            if len(args) != 2 or args[1] is not Ellipsis:
                raise NotFastPathed(f"{annotation!r}: a tuple of fixed length")
            sizes = constraints.take("min_length", "max_length")
            item = self.translate(args[0], _Constraints())
            tuple_wire: Any = tuple[item.type, ...]  # type: ignore[name-defined]
            return _Wire(
                Annotated[tuple_wire, msgspec.Meta(**sizes)] if sizes else tuple_wire,
                None if item.convert is None else _each(item.convert, item.nullable),
            )
        if origin is dict:
            sizes = constraints.take("min_length", "max_length")
            key_type, value_type = typing.get_args(annotation)
            key = self.translate(key_type, _Constraints())
            if key.convert is not None or key.nullable:
                raise NotFastPathed(f"{annotation!r}: keys that are not strings")
            value = self.translate(value_type, _Constraints())
            dict_wire: Any = dict[key.type, value.type]  # type: ignore[name-defined]
            return _Wire(
                Annotated[dict_wire, msgspec.Meta(**sizes)] if sizes else dict_wire,
                None if value.convert is None else _each_value(value.convert, value.nullable),
            )
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            constraints.take()
            plan = self.model(annotation)
            return _Wire(plan.struct, plan.build)
        raise NotFastPathed(f"type {annotation!r}")


class _ModelPlan:
    """One pydantic model's msgspec Struct, and the model built from a decoded Struct the way
    pydantic's own validation leaves it: the fields' values, the fields set, no extras.

    The builder is generated per model (as dataclasses and attrs generate their __init__):
    straight-line code, one statement per field, is what keeps it a fraction of pydantic's
    cost. `source` keeps its text for a reader."""

    def __init__(self, model: type[BaseModel], plans: _Plans, raw_fields: frozenset[str]) -> None:
        decorators = model.__pydantic_decorators__
        found = [kind for kind in _VALIDATORS if getattr(decorators, kind, None)]
        if found:
            raise NotFastPathed(f"validators ({', '.join(found)})")
        if model.__pydantic_post_init__ or model.__private_attributes__ or model.__pydantic_root_model__:
            raise NotFastPathed("post-init, private attributes or a root model")
        for key, value in model.model_config.items():
            if key not in _CONFIG_ALLOWED or value not in _CONFIG_ALLOWED[key]:
                raise NotFastPathed(f"config {key}={value!r}")
        self.model = model
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        namespace: dict[str, Any] = {"MODEL": model, "UNSET": _UNSET, "new": model.__new__, "setattr": _set}
        required = [name for name, info in model.model_fields.items() if info.is_required()]
        lines = [
            "def build(wire):",
            "    values = {}",
            f"    fields_set = {set(required)!r}" if required else "    fields_set = set()",
        ]
        for number, (name, info) in enumerate(model.model_fields.items()):
            if info.alias is not None or info.validation_alias is not None or info.validate_default:
                raise NotFastPathed(f"{name}: an alias or a validated default")
            if name in raw_fields:
                wire = _Wire(msgspec.Raw)
            else:
                constraints = _Constraints()
                _gather(info.metadata, constraints)
                try:
                    wire = plans.translate(info.annotation, constraints)
                except NotFastPathed as error:
                    raise NotFastPathed(f"{name}: {error}") from None
            value = f"wire.{name}"
            if wire.convert is not None:
                namespace[f"convert_{number}"] = wire.convert
                value = f"convert_{number}(value)"
                if wire.nullable:
                    value = f"None if value is None else {value}"
            if info.is_required():
                fields.append((name, wire.type))
                lines.append(f"    value = wire.{name}" if wire.convert is not None else "")
                lines.append(f"    values[{name!r}] = {value}")
                continue
            fields.append((name, Union[wire.type, msgspec.UnsetType], _UNSET))  # noqa: UP007 - built at run time
            factory = info.default_factory
            if factory is not None:
                if info.default_factory_takes_validated_data:
                    raise NotFastPathed(f"{name}: a default factory of the other fields")
                namespace[f"default_{number}"] = factory
                default = f"default_{number}()"
            elif isinstance(info.default, str | int | bool | Decimal | tuple | type(None)):
                namespace[f"default_{number}"] = info.default
                default = f"default_{number}"
            else:
                raise NotFastPathed(f"{name}: a mutable default")
            lines += [
                f"    value = wire.{name}",
                "    if value is UNSET:",
                f"        values[{name!r}] = {default}",
                "    else:",
                f"        values[{name!r}] = {'value' if wire.convert is None else value}",
                f"        fields_set.add({name!r})",
            ]
        lines += [
            # What BaseModel.model_construct leaves, for a model without extras or private state.
            "    built = new(MODEL)",
            "    setattr(built, '__dict__', values)",
            "    setattr(built, '__pydantic_fields_set__', fields_set)",
            "    setattr(built, '__pydantic_extra__', None)",
            "    setattr(built, '__pydantic_private__', None)",
            "    return built",
        ]
        self.source = "\n".join(line for line in lines if line)
        exec(compile(self.source, f"<fast decode of {model.__name__}>", "exec"), namespace)  # noqa: S102 - our own text
        self.build: Callable[[Any], Any] = namespace["build"]
        self.struct = msgspec.defstruct(f"Wire{model.__name__}", fields, kw_only=True)
        self.decoder = msgspec.json.Decoder(self.struct)


class FastDecoder:
    """Bytes -> (envelope, message) on the fast path, or None: then decode the full way.

    Plans are made on first sight of a (type, version), from the registry's current model;
    an older version (whose payload must be upcast) or an unknown type is never fast-pathed.
    """

    def __init__(self) -> None:
        self._plans = _Plans()
        self._envelope = self._plans.model(Envelope, raw_fields=frozenset({"payload"}))
        self._messages: dict[tuple[str, int], _ModelPlan | None] = {}
        self._json = msgspec.json.Decoder()

    def plan_for(self, message_type: str, version: int) -> _ModelPlan | None:
        key = (message_type, version)
        if key in self._messages:
            return self._messages[key]
        try:
            model = registry.model_for(message_type)
        except UnknownMessageType:
            return None  # not remembered: the wire could name any number of unknown types
        if version != model.message_version:
            return None
        try:
            plan: _ModelPlan | None = self._plans.model(model)
        except NotFastPathed:
            plan = None
        self._messages[key] = plan
        return plan

    def refusal(self, model: type[Message]) -> str | None:
        """Why `model` is not fast-pathed, or None when it is."""
        try:
            self._plans.model(model)
        except NotFastPathed as error:
            return str(error)
        return None

    def decode(self, raw: bytes) -> tuple[Envelope, Message] | None:
        try:
            wire: Any = self._envelope.decoder.decode(raw)
            plan = self.plan_for(wire.event_type, wire.event_version)
            if plan is None:
                return None
            payload = self._json.decode(wire.payload)
            if type(payload) is not dict:
                return None
            message = plan.build(plan.decoder.decode(wire.payload))
            envelope = self._envelope.build(wire)
            # The envelope's payload is the JSON object itself, as the full decode keeps it.
            envelope.__dict__["payload"] = payload
            return envelope, message
        except Exception:  # noqa: BLE001 - whatever the fast path refuses, the full decode judges
            return None
