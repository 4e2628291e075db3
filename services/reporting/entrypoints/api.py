"""Reporting HTTP API. Its business endpoints arrive with the reporting issue; until then the
service runs the shared runtime (database, migrations, outbox relay, /health, /ready, /metrics)."""

from fastapi import APIRouter

router = APIRouter(tags=["reporting"])
