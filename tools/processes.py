"""Runs the real services as separate processes, on the real broker and database, in a
namespace of their own (topics, consumer groups, databases). Used by the end-to-end tests and
the chaos suite, which kill, stop and restart them."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOGS = Path(os.environ.get("OM_LOCAL_DIR", ROOT / ".local")) / "logs" / "runs"


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test or chaos process dies without cleaning up
    (killed by a timeout, say), the kernel sends the service SIGTERM rather than orphaning it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """The order, inventory and billing services, each in its own process. A name such as
    "inventory#2" is a second replica of inventory (same consumer groups, its own port)."""

    def __init__(self, run_id: str, env: dict[str, str], replicas: tuple[str, ...] = ()) -> None:
        self.run_id = run_id
        self.env = env
        names = ("order", "inventory", "billing", *replicas)
        self.ports = {name: free_port() for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, *services: str) -> None:
        self.start_with({}, *services)

    def start_with(self, extra_env: dict[str, str], *services: str, wait: bool = True) -> None:
        """Start services with extra environment (a fault-injection point, say)."""
        for name in services or tuple(self.ports):
            service = name.split("#")[0]
            env = {
                **os.environ,
                **self.env,
                **extra_env,
                f"OM_{service.upper()}_HTTP_PORT": str(self.ports[name]),
            }
            log = open(LOGS / f"{self.run_id}-{name}.log", "ab")  # noqa: SIM115 - child owns it
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        for name in services or tuple(self.ports):
            if wait:
                self._wait_ready(name)

    def wait_exit(self, name: str, timeout: float = 60) -> int:
        """For a process armed to crash: wait until it has."""
        code = self.processes[name].wait(timeout)
        self.processes.pop(name)
        return code

    def signal(self, name: str, signum: int) -> None:
        self.processes[name].send_signal(signum)

    def _wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {LOGS}/{self.run_id}-{name}.log")
            try:
                if httpx.get(f"{self.url(name)}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s")

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hooks, no offset commit, no outbox flush."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
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
