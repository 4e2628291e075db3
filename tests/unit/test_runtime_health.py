"""What the runtime calls transient, what it calls bad input, and when a service stops being
ready: the rules that decide whether a message is retried forever, dead-lettered or answered
422, and whether an orchestrator keeps routing to a process that makes no progress."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from libs.runtime.consumer import EventConsumer
from libs.runtime.db import ConcurrencyConflict, is_bad_value, is_transient
from libs.runtime.service import ServiceRuntime
from libs.runtime.settings import RuntimeSettings
from libs.runtime.uow import AggregateCache

# -- transient or not ---------------------------------------------------------------------------

CLIENT_DATA_ERROR = asyncpg.exceptions._base.DataError("invalid input for query argument $1: '\\ud800'")


@pytest.mark.parametrize(
    "error",
    [
        CLIENT_DATA_ERROR,
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
        sa_exc.DBAPIError("INSERT", {}, CLIENT_DATA_ERROR),
        sa_exc.InterfaceError("INSERT", {}, CLIENT_DATA_ERROR),  # how SQLAlchemy wraps it
        FileNotFoundError(errno.ENOENT, "missing"),
        PermissionError(errno.EACCES, "denied"),
    ],
    ids=["client_data_error", "nul", "overflow", "wrapped", "wrapped_as_interface", "enoent", "eacces"],
)
def test_a_value_the_database_refuses_or_a_local_os_error_is_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


@pytest.mark.parametrize(
    "error",
    [CLIENT_DATA_ERROR, asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted")],
)
def test_a_value_the_database_refuses_is_bad_input(error: BaseException) -> None:
    assert is_bad_value(error)
    assert is_bad_value(sa_exc.DBAPIError("INSERT", {}, error))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        OSError(errno.ECONNRESET, "reset"),
        TimeoutError(),
        ConcurrencyConflict("moved on"),
        asyncpg.exceptions.SerializationError("could not serialize"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
    ],
    ids=["refused", "reset", "timeout", "conflict", "serialization", "shutdown"],
)
def test_an_outage_or_a_conflict_is_transient(error: BaseException) -> None:
    assert is_transient(error)
    assert not is_bad_value(error)


# -- readiness ---------------------------------------------------------------------------------


def runtime() -> ServiceRuntime:
    settings = RuntimeSettings(stall_seconds=30, db_prefix="never_connected")
    service = ServiceRuntime("svc", settings, Path("/nonexistent"))
    service.add_consumer(EventConsumer("svc-events", ["t"], {}, service.engine, settings, actor="svc"))
    return service


def test_a_consumer_stuck_in_one_batch_past_the_stall_limit_is_not_ready() -> None:
    service = runtime()
    consumer = service.consumers[0]
    assert service.progress_checks() == {"relay": True, "consumer:svc-events": True}

    consumer.busy_since = time.monotonic() - 10
    assert service.progress_checks()["consumer:svc-events"] is True  # busy, within the limit

    consumer.busy_since = time.monotonic() - 31
    assert service.progress_checks()["consumer:svc-events"] is False
    assert "in progress for 31s" in (service.stalls()["consumer:svc-events"] or "")


def test_a_relay_failing_past_the_stall_limit_is_not_ready() -> None:
    service = runtime()
    service.relay._failed(ConnectionRefusedError("broker away"))
    assert service.progress_checks()["relay"] is True  # just started failing

    service.relay.failing_since = time.monotonic() - 31
    assert service.progress_checks()["relay"] is False

    service.relay._succeeded()
    assert service.progress_checks()["relay"] is True


async def test_a_background_loop_that_dies_makes_the_service_not_ready() -> None:
    service = runtime()

    async def deadlines() -> None:
        raise RuntimeError("boom")

    service.background.append(deadlines)
    service._spawn(deadlines(), deadlines.__qualname__)
    await asyncio.gather(*service._tasks, return_exceptions=True)

    checks = service.progress_checks()
    assert checks[f"loop:{deadlines.__qualname__}"] is False
    assert "RuntimeError: boom" in (service.stalls()[f"loop:{deadlines.__qualname__}"] or "")


# -- the aggregate cache's memory bound ------------------------------------------------------


def test_the_aggregate_cache_keeps_under_its_memory_bound_dropping_the_least_recent() -> None:
    cache = AggregateCache(max_bytes=100_000)
    for n in range(100):
        cache.put(f"order-{n}", object(), 1, json_bytes=1_000)  # ~8 KB each with overhead

    assert cache.size_bytes <= 100_000
    assert cache.get("order-99") is not None  # the newest stay
    assert cache.get("order-0") is None  # the oldest went


def test_an_aggregate_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = AggregateCache(max_bytes=10_000)
    cache.put("order-small", object(), 1, json_bytes=100)

    cache.put("order-huge", object(), 3, json_bytes=1_000_000)

    assert cache.get("order-huge") is None
    assert cache.get("order-small") is not None
