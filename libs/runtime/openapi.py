"""The OpenAPI document as a client reads it, the same in every service.

Every refusal is problem+json (RFC 9457) with the shape of `Problem`. `document_problems`
declares, on every operation, the refusals the shared machinery can give it (401/403/429 when
it is protected, 400/413/415 when it takes a body, 422 when it takes input, 503 always); an
endpoint adds the ones its own rules can give (404 when it looks an id up, 409 when a rule or an
idempotency conflict can refuse) with `problems(404, 409)`. FastAPI's own 422 shape, which no
answer ever has, is taken out.

Swagger UI and ReDoc are served by the service itself, from the assets the fastapi-offline
package ships: /docs and /redoc work without internet access.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

PROBLEM_JSON = "application/problem+json"
DOCS_ASSETS = "/docs/assets"
_ASSETS_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"


class FieldProblem(BaseModel):
    """One thing wrong with the request, where it is and which rule it breaks."""

    field: str = Field(
        description="Where: a body field's path (`lines[0].unit_price`), a query, path or header"
        " parameter's name, or `body` for the body as a whole",
        examples=["lines[0].unit_price"],
    )
    message: str = Field(
        description="The rule, for a person", examples=["Input should be greater than or equal to 0"]
    )
    rule: str | None = Field(
        default=None,
        description="The rule, for a program (pydantic's error type)",
        examples=["greater_than_equal"],
    )
    allowed: list[str] | None = Field(
        default=None, description="For a closed set of values: every value allowed", examples=[["web", "b2b"]]
    )
    line: int | None = Field(default=None, description="For a JSON syntax error: its line (from 1)")
    column: int | None = Field(default=None, description="For a JSON syntax error: its column (from 1)")


class Problem(BaseModel):
    """Every 4xx and 5xx answer (RFC 9457 problem details). Further members say more about
    some refusals: `missing_permission` (403), `limit_bytes` (413), `differences` (409 on a
    registration that differs from the one recorded), `expected` (415)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "invalid request",
                    "status": 422,
                    "detail": "lines[0].unit_price: Input should be greater than or equal to 0",
                    "errors": [
                        {
                            "field": "lines[0].unit_price",
                            "message": "Input should be greater than or equal to 0",
                            "rule": "greater_than_equal",
                        }
                    ],
                }
            ]
        },
    )
    type: str = Field(default="about:blank", description="Always about:blank: `title` and `code` say what")
    title: str = Field(description="A short summary of the kind of refusal", examples=["invalid request"])
    status: int = Field(description="The HTTP status code", examples=[422])
    detail: str = Field(description="What was wrong with this request, for a person")
    code: str | None = Field(
        default=None,
        description="A stable code for a business rule's refusal (404/409/422 from the domain)",
        examples=["not_cancellable"],
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="For 422: one entry per problem found in the request"
    )


# Why each refusal happens, as the document tells it.
REFUSALS: dict[int, str] = {
    400: "The body could not be read (not UTF-8)",
    401: "No valid credentials: a bearer token or an API key is required (WWW-Authenticate says more)",
    403: "The caller lacks the permission (or the channel or warehouse scope) this needs",
    404: "Nothing is known under the id in the path (or the caller may not see it)",
    409: "A business rule refuses this in the current state, or an earlier request with the same"
    " key or id differs from this one",
    413: "The request body is over the size limit",
    415: "The body is not sent as application/json",
    422: "The request breaks a rule of its schema or of the domain; `errors` names each field",
    429: "Over the caller's rate limit; Retry-After says when to try again",
    503: "A dependency (the database) is restarting: nothing was applied; retry (Retry-After)",
}


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the refusals an endpoint's own rules give: `problems(404, 409)`.
    A keyword `on_<status>="..."` replaces the stock description of that status."""
    return {
        status: {
            "description": descriptions.get(f"on_{status}", REFUSALS[status]),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def answers(status: int, model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a second success status (201 created / 200 already there)."""
    return {status: {"model": model, "description": description}}


def _refusals_of(operation: dict[str, Any]) -> list[int]:
    statuses = [503]
    if "x-permission" in operation:
        statuses += [401, 403, 429]
    if "requestBody" in operation:
        statuses += [400, 413, 415, 422]
    elif operation.get("parameters"):
        statuses.append(422)
    return statuses


def document_problems(app: FastAPI) -> None:
    """Wraps `app.openapi`: the Problem schema, and on every operation the refusals it can give."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                fastapi_422 = responses.get("422", {}).get("content", {}).get("application/json")
                if fastapi_422 is not None:
                    del responses["422"]
                for status, declared in problems(*_refusals_of(operation)).items():
                    responses.setdefault(str(status), declared)
                operation["responses"] = dict(sorted(responses.items()))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, from assets served at /docs/assets. Plain
    Starlette routes: not operations of the API, and open like /openapi.json."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.router.routes += [
        Route("/docs", swagger_ui, methods=["GET"]),
        Route("/redoc", redoc, methods=["GET"]),
        Route(redirect_url, oauth2_redirect, methods=["GET"]),
        Mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIRECTORY), name="docs-assets"),
    ]
