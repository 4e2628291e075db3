"""The PostgreSQL roles Job of deploy/k8s/postgres-roles.yaml, run against a throwaway server:
each service's role reaches its own database only, can start the service there (find the
database, run migrations), and a second run applies a changed password.

A server of its own (initdb in a temporary directory), because the Job revokes CONNECT on
every database of the server it runs on, which the shared test server must keep."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import yaml

from libs.runtime.db import create_engine, ensure_database, migrate
from libs.runtime.settings import RuntimeSettings
from tools.infra import PG_BIN

ROOT = Path(__file__).resolve().parents[2]
ROLES_MANIFEST = ROOT / "deploy" / "k8s" / "postgres-roles.yaml"
PREFIX = "ordermesh"


def as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    port: int
    sockets: Path
    root: Path

    def run_roles_job(self, secrets: dict[str, tuple[str, str]]) -> subprocess.CompletedProcess[str]:
        """run.sh from the ConfigMap, as the Job runs it, with one Secret per service."""
        (config_map, _job) = [d for d in yaml.safe_load_all(ROLES_MANIFEST.read_text()) if d]
        sql_dir, secrets_dir = self.root / "sql", self.root / "secrets"
        shutil.rmtree(secrets_dir, ignore_errors=True)
        sql_dir.mkdir(exist_ok=True)
        for name, content in config_map["data"].items():
            (sql_dir / name).write_text(content)
        for service, (username, password) in secrets.items():
            (secrets_dir / service).mkdir(parents=True)
            (secrets_dir / service / "username").write_text(username)
            (secrets_dir / service / "password").write_text(password)
        env = {
            "PATH": f"{PG_BIN}:{os.environ['PATH']}",
            "PGHOST": str(self.sockets),
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGDATABASE": "postgres",
            "OM_DB_PREFIX": PREFIX,
            "SQL_DIR": str(sql_dir),
            "SECRETS_DIR": str(secrets_dir),
        }
        return subprocess.run(
            ["sh", str(sql_dir / "run.sh")], env=env, capture_output=True, text=True, check=True
        )

    def settings(self, user: str, password: str) -> RuntimeSettings:
        return RuntimeSettings(
            pg_host="127.0.0.1", pg_port=self.port, pg_user=user, pg_password=password, db_prefix=PREFIX
        )

    async def connect(self, user: str, password: str, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=user, password=password, database=database
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="om-pg-roles-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            shutil.chown(path, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(root / "server.log"),
                "-o",
                f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield Server(port, sockets, root)
    finally:
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


SECRETS = {"order": ("ordermesh_order", "order-pw-1"), "billing": ("ordermesh_billing", "billing-pw-1")}


async def test_each_service_role_reaches_only_its_own_database(server: Server) -> None:
    server.run_roles_job(SECRETS)

    own = await server.connect("ordermesh_order", "order-pw-1", "ordermesh_order")
    try:
        await own.execute("CREATE TABLE owned_by_the_service (id int)")
        assert await own.fetchval("SELECT has_database_privilege('ordermesh_order', 'CREATE')")
        assert not await own.fetchval(
            "SELECT rolcreatedb OR rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await own.close()
    for elsewhere in ("ordermesh_billing", "postgres", "template1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await server.connect("ordermesh_order", "order-pw-1", elsewhere)


async def test_a_locked_down_role_starts_its_service(server: Server) -> None:
    server.run_roles_job(SECRETS)
    settings = server.settings("ordermesh_billing", "billing-pw-1")

    await ensure_database(settings, "billing")  # finds it without the `postgres` database
    engine = create_engine(settings, "billing")
    try:
        applied = await migrate(engine, ROOT / "services" / "billing" / "adapters" / "migrations")
    finally:
        await engine.dispose()
    assert applied, "the service's role could not run its migrations"


async def test_running_the_job_again_applies_a_changed_password(server: Server) -> None:
    server.run_roles_job(SECRETS)
    server.run_roles_job({**SECRETS, "order": ("ordermesh_order", "order-pw-2")})

    with pytest.raises(asyncpg.InvalidPasswordError):
        await server.connect("ordermesh_order", "order-pw-1", "ordermesh_order")
    connection = await server.connect("ordermesh_order", "order-pw-2", "ordermesh_order")
    await connection.close()
