"""Local infrastructure without Docker: a single-node KRaft Kafka broker (jars fetched from
Maven Central with Maven, version pinned in deploy/local/kafka-pom.xml) and a PostgreSQL
server with a project-local data directory. Everything lives under $OM_LOCAL_DIR (.local/).

    python -m tools.infra up|down|status|clean      infrastructure only
    python -m tools.infra test -- [pytest args]     start what is missing, run pytest, stop it
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("OM_LOCAL_DIR", ROOT / ".local")).resolve()
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"

KAFKA_PORT = int(os.environ.get("OM_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("OM_KAFKA_CONTROLLER_PORT", str(KAFKA_PORT + 1)))
KAFKA_HOST = "127.0.0.1"
PG_PORT = int(os.environ.get("OM_PG_PORT", "15432"))
PG_USER = os.environ.get("OM_PG_USER", "ordermesh")
PG_PASSWORD = os.environ.get("OM_PG_PASSWORD", "ordermesh")
PG_BIN = Path(os.environ.get("OM_PG_BIN", "/usr/lib/postgresql/15/bin"))
KAFKA_HEAP = os.environ.get("OM_KAFKA_HEAP", "-Xms256m -Xmx1g")


def log(message: str) -> None:
    print(f"[infra] {message}", flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(predicate: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise SystemExit(f"[infra] timed out after {timeout:.0f}s waiting for {what}")


def read_pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None


def stop_pid(name: str, timeout: float = 30.0) -> None:
    stop_pids([name], timeout)


def stop_pids(names: list[str], timeout: float = 30.0) -> None:
    """SIGTERM every named process at once, then wait for all of them together (SIGKILL for
    any still running after `timeout`). Each service takes a few seconds to leave its consumer
    groups and drain its requests; one after another, five took ~11 s."""
    running = {name: pid for name in names if (pid := read_pid(name)) is not None}
    for name, pid in running.items():
        log(f"stopping {name} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        for name, pid in list(running.items()):
            if not _alive(pid):
                del running[name]
                (RUN / f"{name}.pid").unlink(missing_ok=True)
        if running:
            time.sleep(0.1)
    for name, pid in running.items():
        log(f"{name} (pid {pid}) still running after {timeout:.0f}s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        (RUN / f"{name}.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- Kafka -----------------------------------------------------------------------------


def kafka_libs() -> Path:
    libs = LOCAL / "kafka" / "libs"
    pom = ROOT / "deploy" / "local" / "kafka-pom.xml"
    stamp = libs / ".pom-stamp"
    if stamp.exists() and stamp.read_text() == pom.read_text():
        return libs
    log("fetching Apache Kafka jars from Maven Central (once)")
    if libs.exists():
        shutil.rmtree(libs)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    stamp.write_text(pom.read_text())
    return libs


def kafka_start() -> bool:
    """Start the broker unless one answers on the port; True if this call started it."""
    if port_open(KAFKA_PORT):
        log(f"kafka already listening on {KAFKA_HOST}:{KAFKA_PORT}")
        return False
    libs = kafka_libs()
    data = LOCAL / "kafka" / "data"
    config = LOCAL / "kafka" / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{KAFKA_HOST}:{KAFKA_CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://{KAFKA_HOST}:{KAFKA_PORT},"
                f"CONTROLLER://{KAFKA_HOST}:{KAFKA_CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{KAFKA_HOST}:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=8",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # Two cores: more threads than that only take turns.
                "num.network.threads=2",
                "num.io.threads=2",
                "auto.create.topics.enable=true",
                "",
            ]
        )
    )
    classpath = f"{libs}/*"
    if not (data / "meta.properties").exists():
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    out = open(LOGS / "kafka.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [
            "java",
            *KAFKA_HEAP.split(),
            # On a 2-core machine shared with everything else, the throughput collector
            # spends ~20% less of the broker's CPU than G1 (measured with make bench's mix).
            "-XX:+UseParallelGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={ROOT / 'deploy' / 'local' / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (RUN / "kafka.pid").write_text(str(process.pid))
    log(f"kafka starting (pid {process.pid}) on {KAFKA_HOST}:{KAFKA_PORT}")
    wait_for(lambda: port_open(KAFKA_PORT) or process.poll() is not None, "kafka port")
    if process.poll() is not None:
        raise SystemExit(f"[infra] kafka exited; see {LOGS / 'kafka.log'}")
    return True


# --- PostgreSQL ------------------------------------------------------------------------


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as root we run it as the unprivileged postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def pg_start() -> bool:
    if port_open(PG_PORT):
        log(f"postgresql already listening on 127.0.0.1:{PG_PORT}")
        return False
    data = LOCAL / "pg" / "data"
    sockets = LOCAL / "pg" / "sockets"
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    fresh = not (data / "PG_VERSION").exists()
    if os.geteuid() == 0:
        _let_postgres_reach(LOCAL)
    if fresh:
        data.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(LOCAL / "pg", "postgres", "postgres")
            for path in (data, sockets):
                shutil.chown(path, "postgres", "postgres")
        log("initialising the PostgreSQL data directory")
        subprocess.run(
            _as_postgres_user(
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
            stdout=subprocess.DEVNULL,
        )
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# OrderMesh local server: loopback only, durable (fsync and synchronous\n"
                "# commit stay on), sized for many service connections.\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 400\n"
                "shared_buffers = 512MB\n"
                "wal_buffers = 16MB\n"
                "max_wal_size = 2GB\n"
                "checkpoint_timeout = 15min\n"
            )
    pg_log = LOGS / "postgresql.log"
    pg_log.touch()
    if os.geteuid() == 0:
        shutil.chown(pg_log, "postgres", "postgres")
    subprocess.run(
        _as_postgres_user(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(pg_log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {PG_PORT} -k {sockets}",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    (RUN / "postgresql.pid").write_text(str(pid))
    log(f"postgresql started (pid {pid}) on 127.0.0.1:{PG_PORT}")
    _psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_USER}') THEN "
        f"CREATE ROLE {PG_USER} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'; END IF; END $$;"
    )
    return True


def _let_postgres_reach(path: Path) -> None:
    """The server runs as `postgres`, which must traverse every directory above its data.
    A checkout in a private directory (mode 700, as mktemp makes) gets the search bit (o+x)
    on those directories only: names inside stay unlistable to other users."""
    for directory in [*reversed(path.parents), path]:
        if directory.exists() and not directory.stat().st_mode & 0o001:
            log(f"granting o+x on {directory} so the postgres user can reach its data")
            directory.chmod(directory.stat().st_mode | 0o001)


def _psql(sql: str) -> None:
    subprocess.run(
        _as_postgres_user(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(LOCAL / "pg" / "sockets"),
                "-p",
                str(PG_PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ]
        ),
        check=True,
    )


def pg_stop() -> None:
    data = LOCAL / "pg" / "data"
    if read_pid("postgresql") is None:
        return
    log("stopping postgresql")
    subprocess.run(
        _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    (RUN / "postgresql.pid").unlink(missing_ok=True)


def kafka_wait_ready() -> None:
    """The port opens before the broker can serve metadata; wait for a real answer."""
    probe = (
        "import asyncio\n"
        "from aiokafka.admin import AIOKafkaAdminClient\n"
        "async def main():\n"
        f"    a = AIOKafkaAdminClient(bootstrap_servers='{KAFKA_HOST}:{KAFKA_PORT}')\n"
        "    await a.start(); await a.list_topics(); await a.close()\n"
        "asyncio.run(main())\n"
    )

    def answers() -> bool:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0

    wait_for(answers, "kafka metadata", timeout=120)


SERVICES = {
    "order": int(os.environ.get("OM_ORDER_HTTP_PORT", "8001")),
    "inventory": int(os.environ.get("OM_INVENTORY_HTTP_PORT", "8002")),
    "production": int(os.environ.get("OM_PRODUCTION_HTTP_PORT", "8003")),
    "billing": int(os.environ.get("OM_BILLING_HTTP_PORT", "8004")),
    "reporting": int(os.environ.get("OM_REPORTING_HTTP_PORT", "8005")),
}
# Processes per service, e.g. OM_SCALE="order=2": the platform as ops would scale the busiest
# service on one machine ("reporting=0": without that service, to measure what it costs).
# The k-th extra process of a service listens on its port + 100 * k (order: 8001, then 8101)
# and joins the same consumer groups; a load generator spreads its requests over all of them
# (in a cluster, a Service does that).
SCALE_PORT_STEP = 100


def _scale(spec: str) -> dict[str, int]:
    counts = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if name not in SERVICES or not count.isdigit():
            raise SystemExit(
                f"[infra] OM_SCALE: {item!r} is not <service>=<processes> (services: {', '.join(SERVICES)})"
            )
        counts[name] = int(count)
    return counts


SCALE = _scale(os.environ.get("OM_SCALE", ""))


def processes(service: str) -> list[tuple[str, int]]:
    """(pid-file name, HTTP port) of each process of `service`: "order", then "order-2", ..."""
    port = SERVICES[service]
    return [
        (service if k == 0 else f"{service}-{k + 1}", port + SCALE_PORT_STEP * k)
        for k in range(SCALE.get(service, 1))
    ]


def all_processes() -> list[tuple[str, str, int]]:
    """(service, pid-file name, port) of every process `up --services` starts."""
    return [(service, name, port) for service in SERVICES for name, port in processes(service)]


def http_ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def services_start() -> None:
    # The services verify tokens against the development issuer's published key (its JWKS
    # file): it must exist before they start.
    from libs.security import dev_issuer

    dev_issuer.ensure_keys()
    env = {
        **os.environ,
        "OM_KAFKA_BOOTSTRAP": f"{KAFKA_HOST}:{KAFKA_PORT}",
        "OM_PG_PORT": str(PG_PORT),
    }
    launched = []
    # A second checkout may reuse a broker and a database another one started: its own log
    # and pid folders must exist all the same.
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    for service, name, port in all_processes():
        if read_pid(name) is not None:
            log(f"{name} already running")
            continue
        if port_open(port):
            raise SystemExit(f"[infra] port {port} for {name} is taken by another process")
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=ROOT,
            env={**env, f"OM_{service.upper()}_HTTP_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (RUN / f"{name}.pid").write_text(str(process.pid))
        launched.append((name, port, process))
    for name, port, process in launched:
        wait_for(
            lambda port=port, process=process: http_ready(port) or process.poll() is not None,
            f"{name} /ready",
            120,
        )
        if process.poll() is not None:
            raise SystemExit(f"[infra] {name} exited; see {LOGS / (name + '.log')}")
    print("\nOrderMesh is up:")
    print(f"  {'service':<11} {'API docs':<32} {'metrics':<34} health")
    for name, port in SERVICES.items():
        base = f"http://127.0.0.1:{port}"
        print(f"  {name:<11} {base + '/docs':<32} {base + '/metrics':<34} {base}/health")
    print(f"  kafka       {KAFKA_HOST}:{KAFKA_PORT}    postgresql 127.0.0.1:{PG_PORT}")
    print(f"  logs        {LOGS}")
    dev_credentials()


def dev_credentials() -> None:
    """Writes the development tokens and the web channel's API key, and says how to use them."""
    import asyncio

    from tools import token

    order_url = f"http://127.0.0.1:{SERVICES['order']}"
    credentials = asyncio.run(token.write_dev_credentials(order_url))
    print(token.usage(credentials, order_url))


def services_stop() -> None:
    # Also extra processes started under another OM_SCALE than this call's.
    extras = [path.stem for path in RUN.glob("*-*.pid") if path.stem.rsplit("-", 1)[0] in SERVICES]
    stop_pids(sorted({name for _, name, _ in all_processes()} | set(extras)))


def up() -> list[str]:
    started = []
    if pg_start():
        started.append("postgresql")
    if kafka_start():
        started.append("kafka")
    kafka_wait_ready()
    return started


def down() -> None:
    services_stop()
    stop_pid("kafka")
    pg_stop()


def status() -> None:
    for name, port in (
        ("kafka", KAFKA_PORT),
        ("postgresql", PG_PORT),
        *((n, p) for _, n, p in all_processes()),
    ):
        pid = read_pid(name)
        state = "listening" if port_open(port) else "down"
        log(f"{name:<11} port {port} {state}" + (f" (pid {pid}, ours)" if pid else ""))


def clean() -> None:
    down()
    for sub in ("kafka/data", "pg", "logs", "run"):
        shutil.rmtree(LOCAL / sub, ignore_errors=True)
    log(f"removed local data under {LOCAL}")


def run_tests(pytest_args: list[str]) -> int:
    started = up()
    try:
        env = {**os.environ, "OM_KAFKA_BOOTSTRAP": f"{KAFKA_HOST}:{KAFKA_PORT}", "OM_PG_PORT": str(PG_PORT)}
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env).returncode
    finally:
        if "kafka" in started:
            stop_pid("kafka")
        if "postgresql" in started:
            pg_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "clean", "test"])
    parser.add_argument("--services", action="store_true", help="with up: start the services too")
    args, rest = parser.parse_known_args()
    if args.command == "up":
        up()
        if args.services:
            services_start()
    elif args.command == "down":
        down()
    elif args.command == "status":
        status()
    elif args.command == "clean":
        clean()
    elif args.command == "test":
        raise SystemExit(run_tests(rest[1:] if rest[:1] == ["--"] else rest))


if __name__ == "__main__":
    main()
