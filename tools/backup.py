"""Back up and restore the OrderMesh databases of a PostgreSQL server with PostgreSQL's own
tools (pg_dump, pg_restore), and put the Kafka consumer groups back where the backup found them.

    python -m tools.backup dump [--to DIR]     make backup [BACKUP_DIR=DIR]
    python -m tools.backup restore DIR         make restore BACKUP_DIR=DIR  (services stopped)

The server, the database prefix and the broker are the usual settings (OM_PG_*, OM_DB_PREFIX,
OM_KAFKA_*, OM_TOPIC_NAMESPACE): point them at another server to restore there.

dump:
  1. offsets.json: the committed offset of every OrderMesh consumer group on every partition,
     read BEFORE any database is dumped;
  2. <database>.dump: pg_dump --format=custom of each service database, one after the other,
     the order service's first (DUMP_ORDER); each is one consistent snapshot of its database;
  3. manifest.json: the databases, when each dump started, the server's version.
restore (into a server that does not have these databases yet, e.g. a fresh one):
  1. CREATE DATABASE and pg_restore each dump (owned by the restoring role, OM_PG_USER);
  2. moves every consumer group of offsets.json back to the recorded offsets, so the services
     receive again everything published after the backup began: what a database's snapshot
     already holds is dropped by its inbox (same event id), the rest is applied. The groups
     must have no members, hence: services stopped.
Why several snapshots taken one after another still restore a platform that adds up:
docs/operations.md, "Back up and restore".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import pkgutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from libs.runtime.kafka import admin_client, client_security
from libs.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("OM_PG_BIN", "/usr/lib/postgresql/15/bin"))
# The orchestrator first, the participants after it, the read side last: whatever an order's
# snapshot saw of inventory or billing (a reservation, a payment) is in their later snapshots
# too, the order in which tools/invariants.py reads a live platform. Other databases follow.
DUMP_ORDER = ("order", "inventory", "billing", "production", "reporting")
MANIFEST = "manifest.json"
OFFSETS = "offsets.json"


@dataclass(frozen=True)
class Dumped:
    service: str
    database: str
    file: str
    started_at: str


def service_consumer_groups(settings: RuntimeSettings) -> dict[str, list[str]]:
    """Every consumer group each service's process runs (namespaced), with its topics: its own
    consumers and those the app factory adds to every service. Builds the apps without
    connecting anywhere."""
    import services

    groups: dict[str, list[str]] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(services.__path__)):
        bootstrap = importlib.import_module(f"services.{module}.bootstrap")
        app = bootstrap.build_app(settings)
        for consumer in app.state.runtime.consumers:
            groups[consumer.name] = list(consumer.topics)
    return groups


async def consumer_offsets(settings: RuntimeSettings, groups: list[str]) -> dict[str, dict[str, int]]:
    """group -> {"topic:partition": committed offset}; groups that never committed are left out."""
    admin = admin_client(settings)
    await admin.start()
    try:
        found = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {
                f"{tp.topic}:{tp.partition}": meta.offset for tp, meta in offsets.items() if meta.offset >= 0
            }
            if committed:
                found[group] = committed
        return found
    finally:
        await admin.close()


async def rewind_consumer_groups(settings: RuntimeSettings, offsets: dict[str, dict[str, int]]) -> None:
    """Commit the recorded offsets for each group, as a member-less consumer would."""
    for group, positions in offsets.items():
        marks = {}
        for key, offset in positions.items():
            topic, partition = key.rsplit(":", 1)
            marks[TopicPartition(topic, int(partition))] = offset
        committer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            **client_security(settings),
        )
        await committer.start()
        try:
            committer.assign(list(marks))
            await committer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in marks.items()})
        finally:
            await committer.stop()


async def service_databases(settings: RuntimeSettings) -> dict[str, str]:
    """service -> database, for the databases of this prefix on the server, in DUMP_ORDER."""
    conn = await asyncpg.connect(settings.dsn("postgres").rsplit("/", 1)[0] + "/postgres")
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
            f"{settings.db_prefix}_",
        )
    finally:
        await conn.close()
    found = {row["datname"].removeprefix(f"{settings.db_prefix}_"): row["datname"] for row in rows}
    ordered = [s for s in DUMP_ORDER if s in found] + sorted(s for s in found if s not in DUMP_ORDER)
    return {service: found[service] for service in ordered}


async def _pg_tool(settings: RuntimeSettings, tool: str, *args: str) -> None:
    """Run pg_dump or pg_restore of PG_BIN against the configured server, off the event loop.
    The password goes in the environment, not on a command line any process listing shows."""
    env = {
        **os.environ,
        "PGHOST": settings.pg_host,
        "PGPORT": str(settings.pg_port),
        "PGUSER": settings.pg_user,
        "PGPASSWORD": settings.pg_password,
    }
    command = [str(PG_BIN / tool), *args]
    await asyncio.to_thread(subprocess.run, command, env=env, check=True)


async def dump(settings: RuntimeSettings, directory: Path) -> dict[str, Any]:
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=False)
    groups = service_consumer_groups(settings)
    # Before any snapshot: every message past these offsets reaches each restored database
    # again, and what its snapshot already holds is a duplicate its inbox drops.
    offsets = await consumer_offsets(settings, sorted(groups))
    (directory / OFFSETS).write_text(json.dumps(offsets, indent=2, sort_keys=True) + "\n")
    databases = await service_databases(settings)
    if not databases:
        raise SystemExit(f"no database named {settings.db_prefix}_* on {settings.pg_host}:{settings.pg_port}")
    dumped = []
    for service, database in databases.items():
        started_at = datetime.now(UTC).isoformat()
        file = f"{database}.dump"
        await _pg_tool(
            settings,
            "pg_dump",
            "--format=custom",
            "--no-owner",
            "--file",
            str(directory / file),
            database,
        )
        dumped.append(Dumped(service, database, file, started_at))
    manifest = {
        "format": 1,
        "db_prefix": settings.db_prefix,
        "topic_namespace": settings.topic_namespace,
        "server": f"{settings.pg_host}:{settings.pg_port}",
        "server_version": await _server_version(settings),
        "offsets_recorded_before_dumps": True,
        "databases": [vars(d) for d in dumped],
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


async def _server_version(settings: RuntimeSettings) -> str:
    conn = await asyncpg.connect(settings.dsn("postgres").rsplit("/", 1)[0] + "/postgres")
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def restore(settings: RuntimeSettings, directory: Path, rewind: bool = True) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    existing = await service_databases(settings)
    clash = [d["database"] for d in manifest["databases"] if d["service"] in existing]
    if clash:
        raise SystemExit(
            f"{clash} already exist on {settings.pg_host}:{settings.pg_port}: restore into a fresh server"
        )
    admin = await asyncpg.connect(settings.dsn("postgres").rsplit("/", 1)[0] + "/postgres")
    try:
        for entry in manifest["databases"]:
            database = f"{settings.db_prefix}_{entry['service']}"
            await admin.execute(f'CREATE DATABASE "{database}"')
            await _pg_tool(
                settings,
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--dbname",
                database,
                str(directory / entry["file"]),
            )
    finally:
        await admin.close()
    if rewind:
        await rewind_consumer_groups(settings, json.loads((directory / OFFSETS).read_text()))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dump_parser = commands.add_parser(
        "dump", help="record the consumer groups' offsets, then pg_dump every service database"
    )
    dump_parser.add_argument(
        "--to",
        type=Path,
        help="directory to create (default: .local/backups/<UTC time>)",
    )
    restore_parser = commands.add_parser(
        "restore", help="pg_restore a backup into a server without these databases, then rewind the consumers"
    )
    restore_parser.add_argument("directory", type=Path, help="a directory written by dump")
    restore_parser.add_argument(
        "--no-rewind",
        action="store_true",
        help="leave the consumer groups where they are (a restore next to a new broker or namespace)",
    )
    args = parser.parse_args()
    settings = RuntimeSettings()
    started = time.monotonic()
    if args.command == "dump":
        target = args.to or ROOT / ".local" / "backups" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        manifest = asyncio.run(dump(settings, target))
        took = time.monotonic() - started
        print(f"backed up {len(manifest['databases'])} databases to {target} in {took:.1f}s")
    else:
        manifest = asyncio.run(restore(settings, args.directory, rewind=not args.no_rewind))
        took = time.monotonic() - started
        rewound = "" if args.no_rewind else " and rewound the consumer groups"
        print(
            f"restored {len(manifest['databases'])} databases to {settings.pg_host}:{settings.pg_port}"
            f"{rewound} in {took:.1f}s"
        )


if __name__ == "__main__":
    main()
