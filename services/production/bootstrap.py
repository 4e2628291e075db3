"""Wires the production service."""

from __future__ import annotations

from fastapi import FastAPI

from libs.runtime.http import create_app
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from services.production.entrypoints import api

NAME = "production"


def build_runtime(settings: RuntimeSettings | None = None) -> ServiceRuntime:
    return ServiceRuntime(NAME, settings or RuntimeSettings())


def build_app(settings: RuntimeSettings | None = None) -> FastAPI:
    return create_app(build_runtime(settings), [api.router], "OrderMesh production")
