"""Database engine, migrations and the line between transient and deterministic failures."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_engine(settings: RuntimeSettings, service: str) -> AsyncEngine:
    return create_async_engine(
        settings.database_url(service),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # No pre-ping: it costs BEGIN, a query and ROLLBACK on every checkout. A connection
        # that died meanwhile fails its first statement instead; that error is transient
        # (is_transient), the work is retried and SQLAlchemy replaces the connection.
        pool_pre_ping=False,
        # A process that stops mid-transaction (paused, partitioned away) must not hold its
        # locks, and with them its replicas' work on the same rows, for longer than this.
        connect_args={
            "server_settings": {
                "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_ms)
            }
        },
    )


async def admin_connection(settings: RuntimeSettings) -> asyncpg.Connection:
    """A connection to the server's `postgres` database, to create or drop databases."""
    return await asyncpg.connect(
        host=settings.pg_host,
        port=settings.pg_port,
        user=settings.pg_user,
        password=settings.pg_password,
        database="postgres",
    )


async def drop_databases(settings: RuntimeSettings) -> None:
    """Drop every database of `settings.db_prefix` (a test, chaos or benchmark run's own)."""
    admin = await admin_connection(settings)
    try:
        names = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{settings.db_prefix}\\_%"
        )
        for row in names:
            await _drop(admin, row["datname"])
    finally:
        await admin.close()


async def _drop(admin: asyncpg.Connection, name: str, attempts: int = 20) -> None:
    """DROP ... WITH (FORCE) ends the database's sessions, but a role that is not a superuser
    may not end another role's: an autovacuum worker that happens to be on the fresh database
    refuses it. Such a worker finishes within moments, so the drop is tried again."""
    for attempt in range(attempts):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


async def ensure_database(settings: RuntimeSettings, service: str) -> None:
    """Create the service's database if it is missing (local and test setups).

    A role that may connect only to its own, existing database (deploy/k8s) finds it first
    and never touches the `postgres` database."""
    name = settings.database_name(service)
    with contextlib.suppress(asyncpg.InvalidCatalogNameError):
        own = await asyncpg.connect(
            host=settings.pg_host,
            port=settings.pg_port,
            user=settings.pg_user,
            password=settings.pg_password,
            database=name,
        )
        await own.close()
        return
    admin = await admin_connection(settings)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another replica may create it between our check and our create.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def migrate(engine: AsyncEngine, *directories: Path) -> list[str]:
    """Apply every *.sql file not applied yet, in name order, core migrations first.

    A transaction-scoped advisory lock lets several replicas start at once safely.
    """
    files = [CORE_MIGRATIONS / name for name in sorted(p.name for p in CORE_MIGRATIONS.glob("*.sql"))]
    for directory in directories:
        files += sorted(directory.glob("*.sql"))
    applied: list[str] = []
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(7463003)"))
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        done = {
            row.name: row.checksum
            for row in await conn.execute(text("SELECT name, checksum FROM schema_migrations"))
        }
        for path in files:
            name = str(path.resolve().relative_to(REPO_ROOT))
            sql = path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != checksum:
                    raise RuntimeError(f"migration {name} changed after it was applied")
                continue
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute(sql)  # type: ignore[union-attr]
            await conn.execute(
                text("INSERT INTO schema_migrations (name, checksum) VALUES (:n, :c)"),
                {"n": name, "c": checksum},
            )
            applied.append(name)
    if applied:
        log.info("applied migrations %s", applied)
    return applied


class ConcurrencyConflict(Exception):
    """Another writer appended to the same stream first; reload and try again."""


_ADAPTED_CONNECTION_ERRORS = (
    AsyncAdapt_asyncpg_dbapi.InterfaceError,
    AsyncAdapt_asyncpg_dbapi.OperationalError,
)
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}
# OSErrors that mean "the network or the peer is away for now"; any other OSError (a file
# that is missing, a permission) does not go away by retrying.
_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EAGAIN,
    errno.EADDRNOTAVAIL,
}


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps: SQLAlchemy's `orig`, then the exception chain."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return found


def is_bad_value(error: BaseException) -> bool:
    """True when the database refused a value itself (a NUL or a lone surrogate in a text, a
    number out of its column's range): a property of the input, never of the moment, so it
    must not be retried. HTTP answers 422; a consumer dead-letters the message."""
    for cause in _causes(error):
        if isinstance(cause, asyncpg.exceptions._base.DataError | UnicodeEncodeError):
            return True
        if isinstance(cause, asyncpg.PostgresError):
            return str(getattr(cause, "sqlstate", "") or "").startswith("22")  # data exception
    return False


def is_transient(error: BaseException) -> bool:  # noqa: C901 - one branch per error family
    """True for failures that go away by themselves (lost connection, conflict, restart).

    Those are retried without limit; anything else is a property of the message and is
    retried a bounded number of times before the message is dead-lettered.
    """
    if is_bad_value(error):
        return False
    if isinstance(error, ConcurrencyConflict | ConnectionError | asyncio.TimeoutError | socket.gaierror):
        return True
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNOS
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return code in _TRANSIENT_SQLSTATES
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(error, _ADAPTED_CONNECTION_ERRORS):
        # The driver's errors as SQLAlchemy's asyncpg adapter re-raises them, unwrapped.
        return True
    if isinstance(
        error,
        asyncpg.PostgresConnectionError | asyncpg.InterfaceError | asyncpg.CannotConnectNowError,
    ):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return getattr(error, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return False


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under an SQLAlchemy one, inside the same transaction.

    The per-message write path (events, outbox, inbox, projections) talks to the driver:
    measured on this machine, one INSERT costs ~25 µs of CPU through asyncpg and ~135 µs
    through SQLAlchemy's text() layer. SQLAlchemy still owns the pool and the transaction; its
    asyncpg adapter sends BEGIN lazily, before its first statement, so we ask it to begin now
    (what that first statement would do) rather than spend a round trip on a dummy query.
    """
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if conn.in_transaction() and adapted._transaction is None:
        try:
            await adapted._start_transaction()
        except Exception as error:
            # Typically a connection that died in the pool (the database restarted). Called
            # here, outside SQLAlchemy's own statement handling, the failure would not retire
            # it: do that, and report a transient failure so the work is retried.
            await retire_connection(conn)
            raise ConnectionError(f"database connection unusable: {error}") from error
    return raw.driver_connection


async def retire_connection(conn: AsyncConnection) -> None:
    """A connection died under us: drop it, and the pool's idle ones with it. After a
    database restart they are all dead, and trying each in turn (one failed attempt and one
    backoff apiece) made recovery take tens of seconds; SQLAlchemy does the same when it
    sees a disconnect itself."""
    await conn.invalidate()
    await conn.engine.dispose(close=False)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Sql:
    """A statement with :named parameters, run on the asyncpg driver connection.

    Names are turned into $1, $2, ... once, when the statement is built; keep instances at
    module level (or let `sql()` cache them) so that work is not repeated per call.
    """

    def __init__(self, statement: str) -> None:
        names: list[str] = []

        def position(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.text = _NAMED.sub(position, statement)
        self.names = tuple(names)

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)

    async def execute(self, db: asyncpg.Connection, params: Mapping[str, Any] | None = None) -> str:
        return str(await db.execute(self.text, *self.args(params or {})))

    async def execute_many(self, db: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        await db.executemany(self.text, [self.args(row) for row in rows])

    async def fetch(
        self, db: asyncpg.Connection, params: Mapping[str, Any] | None = None
    ) -> list[asyncpg.Record]:
        return list(await db.fetch(self.text, *self.args(params or {})))


@functools.lru_cache(maxsize=1024)
def sql(statement: str) -> Sql:
    """Sql(statement), built once per distinct text (statements assembled at run time)."""
    return Sql(statement)
