"""FastAPI app factory: problem+json errors, /health, /ready, /metrics, the API's own docs,
tracing (when OTEL_TRACES_EXPORTER asks for it) and an access log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
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
from libs.runtime.metrics import HTTP_REQUESTS
from libs.runtime.openapi import PROBLEM_JSON, document_problems, serve_docs
from libs.runtime.service import ServiceRuntime
from libs.runtime.telemetry import (
    configure_tracing,
    correlation_id_var,
    instrument_app,
    pass_on,
    stop_passing_on,
)
from libs.security.settings import AuthSettings

log = logging.getLogger(__name__)
access_log = logging.getLogger("ordermesh.access")


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def runtime_of(request: Request) -> ServiceRuntime:
    """The service runtime the app factory attached to the app."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


TRACE_HEADERS = (b"traceparent", b"tracestate")


class CorrelationIdMiddleware:
    """Sets the caller's X-Correlation-Id for the log lines of the request. Spans are made by
    OpenTelemetry's FastAPI instrumentation (`instrument_app`) when tracing is on. Plain ASGI:
    the per-request cost of BaseHTTPMiddleware is not worth paying on the order intake path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation = next((v for k, v in scope["headers"] if k == b"x-correlation-id"), None)
        token = correlation_id_var.set(correlation.decode("latin-1") if correlation is not None else None)
        # Tracing off: the caller's trace context still travels on in what the request publishes.
        passed_on = pass_on(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in TRACE_HEADERS}
        )
        try:
            await self.app(scope, receive, send)
        finally:
            stop_passing_on(passed_on)
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


_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,100}$")


class AccessLogMiddleware:
    """One INFO line per request on `ordermesh.access`: method, route template (never the raw
    path, which holds ids and, for some routes, what a person typed; never the query), status,
    duration and request id. The request id is the caller's X-Request-Id when it is a sane one,
    else a new one put into the request's headers, so the audit metadata of what the request
    records carries the same id; the answer carries it back in X-Request-Id. Each answer is
    also counted in ordermesh_http_requests_total (the error rate). Plain ASGI, like the
    tracing middleware, for the order intake path's sake."""

    def __init__(self, app: ASGIApp, service: str = "") -> None:
        self.app = app
        self.counts = RequestCounts(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id_of(scope)
        status = 500  # what the server answers when the app ends without answering

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or NO_ROUTE
            self.counts.count(scope["method"], route, status)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms request_id=%s",
                    scope["method"],
                    route,
                    status,
                    (time.perf_counter() - started) * 1000,
                    request_id.decode(),
                )


NO_ROUTE = "(no route)"
# Any other word a client sends as its method is counted as "other": the label's values stay few.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestCounts:
    """ordermesh_http_requests_total for one service. Each (method, route, status class) looks
    its child counter up once and keeps it, so a request costs a dict lookup and an increment
    rather than prometheus_client's label resolution."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._children: dict[tuple[str, str, int], Any] = {}

    def count(self, method: str, route: str, status: int) -> None:
        if method not in _METHODS:
            method = "other"
        key = (method, route, status // 100)
        child = self._children.get(key)
        if child is None:
            child = HTTP_REQUESTS.labels(self.service, method, route, f"{status // 100}xx")
            self._children[key] = child
        child.inc()


def _request_id_of(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return bytes(value)
    request_id = uuid.uuid4().hex.encode()
    scope["headers"] = [
        *(h for h in scope["headers"] if h[0] != b"x-request-id"),
        (b"x-request-id", request_id),
    ]
    return request_id


def field_path(location: Sequence[int | str]) -> str:
    """A validation error's location as a client writes it: `lines[0].unit_price`; a
    parameter's name for a query, path or header parameter; `body` for the body itself."""
    parts = list(location[1:]) if location and location[0] in ("body", "query", "path", "header") else []
    if not parts:
        return "body" if not location or location[0] == "body" else str(location[-1])
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _field_problem(item: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"field": field_path(item["loc"]), "message": item["msg"], "rule": item["type"]}
    if item["type"] in ("literal_error", "enum"):
        found["allowed"] = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
    return found


def _json_syntax_problem(item: dict[str, Any], document: Any) -> dict[str, Any]:
    position = item["loc"][-1] if isinstance(item["loc"][-1], int) else 0
    text = document if isinstance(document, str) else ""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    reason = item.get("ctx", {}).get("error", "invalid JSON")
    return {
        "field": "body",
        "message": f"JSON syntax error at line {line}, column {column}: {reason}",
        "rule": "json_invalid",
        "line": line,
        "column": column,
    }


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Health(BaseModel):
    status: str = Field(description="Always ok: the process answers", examples=["ok"])
    service: str = Field(examples=["order"])


class Readiness(BaseModel):
    ready: bool = Field(description="Whether every check passes (503 when not)")
    checks: dict[str, bool] = Field(
        description="started, database, and the progress of the relay, every consumer and background loop",
        examples=[{"started": True, "database": True, "relay": True}],
    )


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

    app = FastAPI(
        title=title,
        lifespan=lifespan,
        description=API_DESCRIPTION,
        docs_url=None,  # served by serve_docs from local assets, not from a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.authenticator = Authenticator(
        auth, AccessDirectory(runtime.engine, auth.directory_cache_seconds)
    )
    for router in routers:
        app.include_router(router)
    app.include_router(audit_router(), dependencies=[requires("audit:read")])

    app.add_middleware(BodyLimitMiddleware, max_bytes=runtime.settings.http_max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware)
    # Outermost of ours: it times, logs and counts the 413s too.
    app.add_middleware(AccessLogMiddleware, service=runtime.name)
    # Decided before the first request builds the middleware stack (the lifespan's start is one).
    if configure_tracing(runtime.name, runtime.settings.otel_exporter):
        instrument_app(app)

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
        # A rule may say more than its message (a registration conflict: which fields differ).
        details: dict[str, Any] = getattr(error, "details", None) or {}
        return problem(error.status, error.code, error.message, code=error.code, **details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        if (refusal := await refused_before_its_body(request)) is not None:
            return refusal
        content_type = request.headers.get("content-type")
        if isinstance(error.body, bytes | bytearray) and error.body and not _is_json(content_type):
            # FastAPI leaves a body it was not told is JSON unparsed, and then reports that it
            # is not an object: say what to send instead.
            sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            return problem(
                415,
                "unsupported media type",
                f"send the body as JSON with the header Content-Type: application/json (got {sent})",
                expected="application/json",
            )
        fields = [
            _json_syntax_problem(item, error.body) if item["type"] == "json_invalid" else _field_problem(item)
            for item in error.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
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
    async def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", service=runtime.name)

    @app.get(
        "/ready",
        tags=["ops"],
        responses={
            200: {"model": Readiness, "description": "Ready"},
            503: {"model": Readiness, "description": "Not ready: `checks` says what is not"},
        },
    )
    async def ready() -> JSONResponse:
        """Readiness: started, the database answers, nothing stalls."""
        checks = await runtime.ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format); internal network only in deploy/k8s."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    check_every_route_protected(app)
    document_security(app)
    document_problems(app)
    serve_docs(app)
    return app


API_DESCRIPTION = """Every refusal is `application/problem+json`: `title`, `status`, `detail` for a person,
`code` for a business rule, and for 422 `errors`, one entry per problem, naming the field
(`lines[0].unit_price`) and the rule. See docs/api.md.

Authenticate with a bearer token or an `X-API-Key` (the Authorize button); each operation says the
permission it needs. Every answer carries `X-Request-Id` (yours, when you send a sane one)."""
