"""python -m services.reporting.analyst_role: a read-only PostgreSQL login for analysts' BI
tools on the reporting database (docs/reporting.md).

Run as a role that may create roles and grant on the reporting database's tables (a
superuser): OM_REPORTING_ADMIN_USER, OM_REPORTING_ADMIN_PASSWORD and OM_REPORTING_ADMIN_HOST,
by default the OM_PG_* credentials. Locally that is `postgres` over the server's socket
(OM_REPORTING_ADMIN_HOST=$PWD/.local/pg/sockets OM_REPORTING_ADMIN_USER=postgres); in a
cluster, the superuser Secret of deploy/k8s/postgres.yaml. It creates or updates the role
(OM_REPORTING_ANALYST_ROLE, default `<db_prefix>_analyst`, password
OM_REPORTING_ANALYST_PASSWORD) with:
- CONNECT on the reporting database only, USAGE on its schema;
- SELECT on the read-model tables and the report views, nothing on the service's own
  bookkeeping (inbox, outbox, event store, migrations);
- every transaction read-only (default_transaction_read_only), however the tool connects.
Idempotent: run it again after a migration adds a view or table, or to change the password.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import asyncpg

from libs.runtime.settings import RuntimeSettings
from services.reporting.bootstrap import NAME
from services.reporting.settings import ReportingSettings

# The service's bookkeeping tables: not for analysts.
PRIVATE_TABLES = ("inbox", "outbox", "events", "schema_migrations")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class AdminLogin:
    """Who creates the role and grants its reads: a host (or a socket directory) and a role."""

    host: str
    port: int
    user: str
    password: str | None = None

    @classmethod
    def of(cls, settings: RuntimeSettings, reporting: ReportingSettings) -> AdminLogin:
        return cls(
            reporting.admin_host or settings.pg_host,
            settings.pg_port,
            reporting.admin_user or settings.pg_user,
            reporting.admin_password.get_secret_value()
            or (None if reporting.admin_user else settings.pg_password),
        )

    async def connect(self, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, database=database
        )


def _quoted(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain PostgreSQL identifier")
    return f'"{name}"'


async def analyst_relations(db: asyncpg.Connection) -> list[str]:
    """The tables and views of the reporting database an analyst may read."""
    rows = await db.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm') AND NOT (c.relname = ANY($1::text[]))"
        " ORDER BY c.relname",
        list(PRIVATE_TABLES),
    )
    return [row["relname"] for row in rows]


async def grant_analyst_role(
    settings: RuntimeSettings, login: AdminLogin, role: str, password: str
) -> list[str]:
    """Create or update the read-only role; returns the relations it may read."""
    database = settings.database_name(NAME)
    admin = await login.connect("postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            await admin.execute(f"CREATE ROLE {_quoted(role)}")
        await admin.execute(
            f"ALTER ROLE {_quoted(role)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            f" NOBYPASSRLS PASSWORD {_literal(password)}"
        )
        await admin.execute(f"ALTER ROLE {_quoted(role)} SET default_transaction_read_only = on")
        await admin.execute(f"GRANT CONNECT ON DATABASE {_quoted(database)} TO {_quoted(role)}")
    finally:
        await admin.close()
    db = await login.connect(database)
    try:
        relations = await analyst_relations(db)
        async with db.transaction():
            await db.execute(f"GRANT USAGE ON SCHEMA public TO {_quoted(role)}")
            await db.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {_quoted(role)}")
            if relations:
                names = ", ".join(_quoted(r) for r in relations)
                await db.execute(f"GRANT SELECT ON {names} TO {_quoted(role)}")
    finally:
        await db.close()
    return relations


async def drop_analyst_role(settings: RuntimeSettings, login: AdminLogin, role: str) -> None:
    """Take the role's privileges away (in the reporting database, where they are) and drop it."""
    db = await login.connect(settings.database_name(NAME))
    try:
        if await db.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await db.execute(f"DROP OWNED BY {_quoted(role)}")
    finally:
        await db.close()
    admin = await login.connect("postgres")
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {_quoted(role)}")
    finally:
        await admin.close()


def _literal(text: str) -> str:
    """A string literal for a statement that takes no parameters (ALTER ROLE ... PASSWORD)."""
    return "'" + text.replace("'", "''") + "'"


def main() -> None:
    settings = RuntimeSettings()
    reporting = ReportingSettings()
    role = reporting.analyst_role or f"{settings.db_prefix}_analyst"
    password = reporting.analyst_password.get_secret_value()
    if not password:
        raise SystemExit("set OM_REPORTING_ANALYST_PASSWORD to the analyst role's password")
    relations = asyncio.run(grant_analyst_role(settings, AdminLogin.of(settings, reporting), role, password))
    print(
        f"role {role} may read {len(relations)} tables and views of {settings.database_name(NAME)}"
        " (read-only transactions)"
    )


if __name__ == "__main__":
    main()
