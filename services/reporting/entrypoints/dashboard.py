"""GET /dashboard: the analysts' page, and its script and stylesheet under /dashboard/assets.

The page and its assets carry no data, so like the API docs (/docs) they are plain Starlette
routes that answer without credentials. Every figure on the page comes from the report
endpoints, which the page's script calls with the browser user's own bearer token (or API key)
and which require `reports:read` as any other caller's request does. How the user gives the
page a token: docs/reporting-dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parents[1] / "static" / "dashboard"
PAGE = ASSETS / "index.html"

# Only this service's own script, style and API: no inline script, no other origin. The token
# lives in the page, so no other site may frame it, and no address leaves in a Referer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
        " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def dashboard_page(_: Request) -> FileResponse:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def serve_dashboard(app: FastAPI) -> None:
    app.router.routes += [
        Route("/dashboard", dashboard_page, methods=["GET"]),
        Mount("/dashboard/assets", StaticFiles(directory=ASSETS), name="dashboard-assets"),
    ]
