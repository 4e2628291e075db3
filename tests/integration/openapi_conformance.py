"""Every answer the end-to-end tests receive, checked against the OpenAPI document of the
service that gave it: the status is one the operation declares, the content type is one
declared for that status, and the body matches the declared schema. A mismatch raises in
the client call, so it fails the test that received it.

Install on an httpx.AsyncClient with `event_hooks=conformance_hooks()`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema_rs

# The documents themselves and the docs pages are not operations of the API.
_NOT_OPERATIONS = re.compile(r"^/(openapi\.json|docs|redoc)(/|$)")


class NonConformingResponse(AssertionError):
    pass


class OpenApiConformance:
    def __init__(self) -> None:
        self._documents: dict[str, dict[str, Any]] = {}
        self._operations: dict[str, list[tuple[re.Pattern[str], dict[str, Any]]]] = {}
        self._validators: dict[tuple[str, str, str, str, str], Any] = {}

    async def __call__(self, response: httpx.Response) -> None:
        request = response.request
        if _NOT_OPERATIONS.match(request.url.path):
            return
        await response.aread()
        service = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        template, operations = await self._operation(service, request.url.path, request.method.lower())
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        operation = operations.get(request.method.lower()) if operations else None
        if operation is None:
            if response.status_code == 405 and operations:
                return  # a method the path does not have: answered by the router, not an operation
            raise NonConformingResponse(f"{where}: no operation in the service's OpenAPI document")
        declared = operation.get("responses", {})
        status = str(response.status_code)
        if status not in declared:
            raise NonConformingResponse(
                f"{where}: status {status} is not documented for {request.method} {template}"
                f" (documented: {', '.join(sorted(declared))}); body: {response.text[:300]}"
            )
        content = declared[status].get("content") or {}
        if not content:
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        documented = {m.split(";")[0].strip(): m for m in content}
        if media not in documented:
            raise NonConformingResponse(
                f"{where}: content type {media!r} is not documented (documented: {', '.join(documented)})"
            )
        if not (media == "application/json" or media.endswith("+json")):
            return
        schema = content[documented[media]].get("schema")
        if not schema:
            return
        key = (service, template, request.method, status, media)
        validator = self._validators.get(key)
        if validator is None:
            root = {**schema, "components": self._documents[service].get("components", {})}
            validator = self._validators[key] = jsonschema_rs.Draft202012Validator(root)
        body = json.loads(response.content) if response.content else None
        problems = [
            f"{'/'.join(map(str, e.instance_path)) or '(body)'}: {e.message}"
            for e in validator.iter_errors(body)
        ]
        if problems:
            raise NonConformingResponse(
                f"{where}: the body does not match the documented schema of {request.method} {template}:\n  "
                + "\n  ".join(problems[:10])
                + f"\nbody: {response.text[:500]}"
            )

    async def _operation(self, service: str, path: str, method: str) -> tuple[str, dict[str, Any] | None]:
        """The operation the router would choose: the first path that matches with this method
        (as Starlette routes: /customers/{customer_id} answers GET, /customers/search POST), else
        the first that matches at all (its other methods: a 405)."""
        if service not in self._documents:
            async with httpx.AsyncClient(base_url=service, timeout=30) as client:
                answer = await client.get("/openapi.json")
            answer.raise_for_status()
            document = self._documents[service] = answer.json()
            # In the document's order, which is the routing order: /stock/alerts before /stock/{sku}.
            self._operations[service] = [
                (
                    re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"),
                    {"template": template, **operations},
                )
                for template, operations in document.get("paths", {}).items()
            ]
        matching = [operations for pattern, operations in self._operations[service] if pattern.match(path)]
        chosen = next((o for o in matching if method in o), matching[0] if matching else None)
        return (chosen["template"], chosen) if chosen is not None else (path, None)


_CONFORMANCE = OpenApiConformance()


def conformance_hooks() -> dict[str, list[Any]]:
    """`event_hooks=` for a client whose every answer is checked against the OpenAPI."""
    return {"response": [_CONFORMANCE]}
