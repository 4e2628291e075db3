"""FastAPI app factory: problem+json errors, /health, /ready, /metrics, tracing of requests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.domain import DomainError
from libs.runtime.access import AccessDirectory, access_consumer
from libs.runtime.audit import audit_router
from libs.runtime.auth import (
    PUBLIC_PATHS,
    Authenticator,
    Forbidden,
    RateLimited,
    Unauthenticated,
    check_every_route_protected,
    document_security,
    refused,
    requires,
)
from libs.runtime.db import is_bad_value, is_transient
from libs.runtime.service import ServiceRuntime
from libs.runtime.telemetry import correlation_id_var, tracer
from libs.security.settings import AuthSettings

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def runtime_of(request: Request) -> ServiceRuntime:
    """The service runtime the app factory attached to the app."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


class TracingMiddleware:
    """Continues a caller's trace (traceparent header) or starts one per request; every Kafka
    hop that follows carries the same trace id through the outbox headers. Plain ASGI: the
    per-request cost of BaseHTTPMiddleware is not worth paying on the order intake path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        name = f"{scope['method']} {scope['path']}"
        token = correlation_id_var.set(headers.get("x-correlation-id"))
        try:
            with tracer.start_as_current_span(
                name, context=extract(headers), kind=trace.SpanKind.SERVER
            ) as span:

                async def send_with_status(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        span.set_attribute("http.status_code", message["status"])
                    await send(message)

                await self.app(scope, receive, send_with_status)
        finally:
            correlation_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses a request body over `max_bytes` with 413 before anything reads it whole: a
    single huge request must cost the service nothing (and never reach the outbox, whose
    rows the broker accepts only up to about 1 MB). Checks the declared Content-Length and
    counts what actually arrives, for chunked bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "request body too large",
            f"the request body is over the limit of {self.max_bytes} bytes",
            limit_bytes=self.max_bytes,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter],
    title: str,
    auth: AuthSettings | None = None,
) -> FastAPI:
    auth = auth or AuthSettings()
    # Every service authenticates from its own copy of the access context (API keys, roles).
    runtime.add_consumer(access_consumer(runtime.name, runtime.engine, runtime.settings))
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.authenticator = Authenticator(
        auth, AccessDirectory(runtime.engine, auth.directory_cache_seconds)
    )
    for router in routers:
        app.include_router(router)
    app.include_router(audit_router(), dependencies=[requires("audit:read")])

    app.add_middleware(BodyLimitMiddleware, max_bytes=runtime.settings.http_max_body_bytes)
    app.add_middleware(TracingMiddleware)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, error: Unauthenticated) -> JSONResponse:
        response = problem(401, "unauthenticated", error.detail)
        challenge = 'Bearer realm="ordermesh"'
        if error.token_presented:
            challenge += f', error="invalid_token", error_description="{error.detail}"'
        response.headers["WWW-Authenticate"] = challenge
        return response

    async def refused_before_its_body(request: Request) -> JSONResponse | None:
        """FastAPI parses a request's body before it runs the endpoint's dependencies, so a body
        that does not parse (bytes that are not UTF-8, broken JSON) would be answered 400/422
        before authentication. A caller without valid credentials gets its 401 first, as from
        every other request to a protected endpoint."""
        if request.url.path in PUBLIC_PATHS or not isinstance(request.scope.get("route"), APIRoute):
            return None
        authenticator: Authenticator = request.app.state.authenticator
        try:
            await authenticator.authenticate(request)
        except Unauthenticated as error:
            refused(request, "unauthenticated", error.detail)
            return await unauthenticated(request, error)
        return None

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, error: Forbidden) -> JSONResponse:
        return problem(403, "forbidden", error.detail, **error.extra)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, error: RateLimited) -> JSONResponse:
        response = problem(
            429, "too many requests", f"over the rate limit; retry after {error.retry_after_seconds}s"
        )
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, error: DomainError) -> JSONResponse:
        return problem(error.status, error.code, error.message, code=error.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        if (refusal := await refused_before_its_body(request)) is not None:
            return refusal
        fields = [
            {
                "field": ".".join(str(p) for p in item["loc"] if p != "body"),
                "message": item["msg"],
            }
            for item in error.errors()
        ]
        detail = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
        return problem(422, "invalid request", detail, errors=fields)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        if is_bad_value(error):
            # The database refused a value of the request (a NUL character in a name, say):
            # bad input, not our failure. Nothing was applied.
            cause = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
            return problem(
                422,
                "invalid request",
                f"a value of the request cannot be stored: {cause}",
                errors=[{"field": "body", "message": cause}],
            )
        if is_transient(error):
            # The database (or broker) is away for a moment: nothing was applied; retry.
            response = problem(503, "temporarily unavailable", "a dependency is restarting; retry shortly")
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error")
        return problem(500, "internal error", "the request failed; it was not applied")

    # Starlette sends the answer of the catch-all handler above and then re-raises, so the
    # server logs a traceback for each: a NUL in a name, answered 422, would log one too. A
    # handler for the error's own class answers and is done; `unexpected` still logs a 500.
    for database_error in (sa_exc.DBAPIError, asyncpg.PostgresError, UnicodeEncodeError):
        app.add_exception_handler(database_error, unexpected)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and (refusal := await refused_before_its_body(request)) is not None:
            return refusal
        return problem(error.status_code, "request failed", str(error.detail))

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        checks = await runtime.ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    check_every_route_protected(app)
    document_security(app)
    return app
