"""Property-based fuzzing of every service's HTTP API from its own OpenAPI document (issue 10).

Schemathesis reads each running service's /openapi.json and sends it generated requests, valid
and invalid (wrong types, missing fields, out-of-range numbers, odd unicode), over HTTP to the
real processes on the real broker and database:
- as an admin (every permission), so the requests pass authentication and reach validation and
  the handlers: no answer may be a 5xx, and an answer whose status the document declares must
  match the declared schema;
- without credentials, or with junk ones: every protected operation answers 401 problem+json
  with WWW-Authenticate, never a 5xx.

The checks are schemathesis' `not_a_server_error`, `status_code_conformance` (every answer's
status is one the operation declares), `content_type_conformance` (errors are declared as
application/problem+json and answered so) and `response_schema_conformance` (the body matches
the schema declared for that status and media type, error bodies included).

`make test` runs a short, seeded run; `make fuzz` a longer one:
    OM_FUZZ_EXAMPLES   generated requests per operation and caller (default 10)
    OM_FUZZ_PHASES     schemathesis phases (default "examples,fuzzing"; make fuzz adds coverage,
                       which walks every boundary of every schema: slow but thorough)
    OM_FUZZ_SEED       the seed; the same seed sends the same requests
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from libs.runtime.auth import PUBLIC_PATHS
from libs.runtime.db import drop_databases
from libs.security.dev_issuer import bearer, mint
from tests.conftest import RUN_ID
from tests.integration.conftest import PAYMENT_DEADLINE_SECONDS, platform_settings
from tools.processes import Platform

SERVICES = ("order", "inventory", "billing", "production", "reporting")
EXAMPLES = int(os.environ.get("OM_FUZZ_EXAMPLES", "10"))
PHASES = frozenset(os.environ.get("OM_FUZZ_PHASES", "examples,fuzzing").split(","))
SEED = int(os.environ.get("OM_FUZZ_SEED", "1010"))
SETTINGS = platform_settings(f"omfuzz_{RUN_ID}", f"f{RUN_ID}.")

# One test fuzzes every operation of a service, so its time grows with the examples asked for;
# the limit still stops a run that hangs.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 + 20 * EXAMPLES)]


@pytest.fixture(scope="module")
async def fuzzed_platform() -> AsyncIterator[Platform]:
    """Every service, in a namespace and databases of its own: what the fuzzer creates (orders,
    keys, roles, warehouses with odd names) never meets another test's data."""
    platform = Platform(
        f"{RUN_ID}-fuzz",
        {
            "OM_DB_PREFIX": SETTINGS.db_prefix,
            "OM_TOPIC_NAMESPACE": SETTINGS.topic_namespace,
            "OM_TOPIC_PARTITIONS": str(SETTINGS.topic_partitions),
            "OM_LOG_JSON": "false",
            "OM_ORDER_PAYMENT_DEADLINE_SECONDS": str(PAYMENT_DEADLINE_SECONDS),
            # The fuzzer sends faster than a person; the rate limiter has tests of its own, and
            # 429s here would stop the requests before the code under test.
            "OM_AUTH_USER_RATE_LIMIT_PER_SECOND": "1000000",
        },
        services=SERVICES,
    )
    try:
        await asyncio.to_thread(platform.start)
        yield platform
    finally:
        platform.stop()
        await drop_databases(SETTINGS)


def fuzz_config(*, send_credentials_from_schema: bool, headers: dict[str, str]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "request-timeout": 30,
            "generation": {
                "max-examples": EXAMPLES,
                # Reproducible: the same seed sends the same requests, and no example database
                # carries failures from one run into the next.
                "deterministic": True,
                "database": "none",
                # The documents declare a bearer token and an X-API-Key header. Generated values
                # for them are junk credentials: right for the caller without any, but for the
                # admin an X-API-Key would be read before its token and refuse every request.
                "with-security-parameters": send_credentials_from_schema,
            },
            "phases": {
                name: {"enabled": name in PHASES} for name in ("examples", "coverage", "fuzzing", "stateful")
            },
        }
    )


def load_schema(platform: Platform, service: str, config: schemathesis.Config) -> Any:
    return schemathesis.openapi.from_url(f"{platform.url(service)}/openapi.json", config=config)


@pytest.fixture(params=SERVICES)
def admin_api(request: pytest.FixtureRequest, fuzzed_platform: Platform) -> Any:
    token = mint("fuzz-admin", ["admin"])
    config = fuzz_config(send_credentials_from_schema=False, headers={"Authorization": f"Bearer {token}"})
    return load_schema(fuzzed_platform, request.param, config)


@pytest.fixture(params=SERVICES)
def anonymous_api(request: pytest.FixtureRequest, fuzzed_platform: Platform) -> Any:
    config = fuzz_config(send_credentials_from_schema=True, headers={})
    return load_schema(fuzzed_platform, request.param, config)


def credentials_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A valid admin token is never refused: otherwise the run would test only the front door."""
    if response.status_code in (401, 403):
        raise AssertionError(f"a valid admin token was refused: {response.status_code} {response.text[:300]}")
    return True


def refused_without_credentials(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every protected operation answers 401 problem+json with a challenge to a caller without
    valid credentials, whatever else the request holds."""
    if case.operation.path in PUBLIC_PATHS:
        return None
    if case.method.upper() != case.operation.method.upper():
        return None  # a method the path does not have: 405 before anything else
    content_type = response.headers.get("content-type", [""])[0]
    if (
        response.status_code != 401
        or "www-authenticate" not in response.headers
        or not content_type.startswith("application/problem+json")
    ):
        raise AssertionError(
            "expected 401 problem+json with WWW-Authenticate, got "
            f"{response.status_code} ({content_type}): {response.text[:300]}"
        )
    return True


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32 reads the private `Function._nodeid`, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# No 5xx, and every answer as the document declares it: status, media type and body.
DOCUMENTED = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

admin = schemathesis.pytest.from_fixture("admin_api")
anonymous = schemathesis.pytest.from_fixture("anonymous_api")


@admin.parametrize()
def test_an_admin_gets_no_server_error_and_only_answers_the_api_declares(case: Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[*DOCUMENTED, credentials_accepted])


@anonymous.parametrize()
def test_a_caller_without_valid_credentials_is_refused_by_every_protected_operation(case: Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[*DOCUMENTED, refused_without_credentials])


@pytest.mark.parametrize(
    "body", [b'{"channel": "\xff"}', b'{"channel": "web",'], ids=["not-utf-8", "broken-json"]
)
async def test_a_body_that_does_not_parse_is_refused_401_before_it_is_judged(
    fuzzed_platform: Platform, body: bytes
) -> None:
    """FastAPI parses the body before authenticating; the fuzzer found that such a request
    without credentials was answered 400 or 422 rather than 401."""
    async with httpx.AsyncClient(base_url=fuzzed_platform.url("order"), timeout=30) as client:
        headers = {"Content-Type": "application/json"}

        anonymous = await client.post("/orders", content=body, headers=headers)
        admin = await client.post("/orders", content=body, headers={**headers, **bearer("admin")})

    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    assert admin.status_code in (400, 422), admin.text  # with credentials, what is wrong with it


async def test_a_value_the_database_refuses_is_a_422_and_logs_no_traceback(fuzzed_platform: Platform) -> None:
    """The fuzzer's NUL bytes reached PostgreSQL from a query parameter; they were answered 422,
    but each left a server traceback in the log, as if the service had failed."""
    log = fuzzed_platform.log_path("billing")
    logged_before = log.stat().st_size
    url, headers = fuzzed_platform.url("billing"), bearer("admin")

    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        refused = await client.get("/payments", params={"order_id": "order\x00"})
    # A traceback would be written as that request ends, before the service answers this one.
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        assert (await client.get("/payments", params={"order_id": "order"})).status_code == 200

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    with log.open("rb") as logged:
        logged.seek(logged_before)
        assert b"Traceback" not in logged.read()
