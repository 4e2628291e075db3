"""Runs the real services as separate processes, on the real broker and database, in a
namespace of their own (topics, consumer groups, databases). Used by the end-to-end tests and
the chaos suite, which kill, stop and restart them."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from libs.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[1]
LOGS = Path(os.environ.get("OM_LOCAL_DIR", ROOT / ".local")) / "logs" / "runs"
CORE_SERVICES = ("order", "inventory", "billing")


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test or chaos process dies without cleaning up
    (killed by a timeout, say), the kernel sends the service SIGTERM rather than orphaning it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process: a
# service started from a worker thread (asyncio.to_thread) would get SIGTERM whenever that
# thread is retired. Every service is therefore forked from this one thread, which lives as
# long as the process.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="platform-spawner")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ConsumerGroup:
    service: str
    group: str  # namespaced, as the broker knows it
    topics: tuple[str, ...]  # namespaced


def consumer_groups(settings: RuntimeSettings) -> list[ConsumerGroup]:
    """The consumer groups every service's own wiring declares (its bootstrap module's
    build_runtime), so a new service that consumes is found without being listed here.
    Building a runtime opens no connection: the engine and the broker connect on start."""
    import services  # the services' code, read only for their wiring

    found = []
    for module in sorted(m.name for m in pkgutil.iter_modules(services.__path__)):
        bootstrap = importlib.import_module(f"services.{module}.bootstrap")
        built: Any = bootstrap.build_runtime(settings)
        runtime = next(b for b in built if hasattr(b, "consumers")) if isinstance(built, tuple) else built
        found += [ConsumerGroup(module, c.name, tuple(c.topics)) for c in runtime.consumers]
    return found


def replica_name(service: str, replica: int) -> str:
    """The first replica of a service is named after it, the others "<service>#<n>"."""
    return service if replica == 1 else f"{service}#{replica}"


class Platform:
    """Services, each in its own process (order, inventory and billing unless told). A name
    such as "inventory#2" is a second replica of inventory (same consumer groups, its own port)."""

    def __init__(
        self,
        run_id: str,
        env: dict[str, str],
        replicas: tuple[str, ...] = (),
        services: tuple[str, ...] = CORE_SERVICES,
    ) -> None:
        self.run_id = run_id
        self.env = env
        names = (*services, *replicas)
        self.ports = {name: free_port() for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def replicas(self, service: str) -> list[str]:
        """Names of the service's replicas, running or not, first replica first."""
        return [name for name in self.ports if name.split("#")[0] == service]

    def urls(self, service: str) -> list[str]:
        return [self.url(name) for name in self.replicas(service)]

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def dead(self) -> dict[str, int]:
        """Services started and not stopped by the harness that have exited: their exit codes."""
        return {
            name: code for name, process in self.processes.items() if (code := process.poll()) is not None
        }

    def log_path(self, name: str) -> Path:
        return LOGS / f"{self.run_id}-{name}.log"

    def start(self, *names: str) -> None:
        self.start_with({}, *names)

    def start_with(self, extra_env: dict[str, str], *names: str, wait: bool = True) -> None:
        """Start services with extra environment (a fault-injection point, say)."""
        for name in names or tuple(self.ports):
            service = name.split("#")[0]
            env = {
                **os.environ,
                **self.env,
                **extra_env,
                f"OM_{service.upper()}_HTTP_PORT": str(self.ports[name]),
            }
            log = open(self.log_path(name), "ab")  # noqa: SIM115 - child owns it
            self.processes[name] = _SPAWNER.submit(
                subprocess.Popen,
                [sys.executable, "-m", f"services.{service}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ).result()
        for name in names or tuple(self.ports):
            if wait:
                self._wait_ready(name)

    def wait_exit(self, name: str, timeout: float = 60) -> int:
        """For a process armed to crash: wait until it has."""
        code = self.processes[name].wait(timeout)
        self.processes.pop(name)
        return code

    def signal(self, name: str, signum: int) -> None:
        self.processes[name].send_signal(signum)

    def ready(self, name: str) -> bool:
        """True if the process answers /ready with 200 (started, database reachable)."""
        try:
            return httpx.get(f"{self.url(name)}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log_path(name)}")
            if self.ready(name):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s")

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hooks, no offset commit, no outbox flush."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            # A replica left paused by an interrupted fault must run to handle SIGTERM.
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()


async def eventually_value(
    fetch: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], timeout: float = 30
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await fetch()
        if accept(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s; last value: {value!r}")
