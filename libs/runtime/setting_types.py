"""Types for settings read from the environment, shared so every service reads them alike."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def _comma_or_json_list(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.strip().startswith("["):
        return json.loads(value)
    return {item.strip() for item in value.split(",") if item.strip()}


# A set of names (channels, currency codes) written as a comma list (web,shop) or a JSON list
# (["web","shop"]). NoDecode: pydantic-settings would otherwise insist on JSON for a set.
NameSet = Annotated[frozenset[str], NoDecode, BeforeValidator(_comma_or_json_list)]
