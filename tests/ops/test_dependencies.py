"""The declared dependencies match the code: whatever the shipped code (libs, services,
tools) imports is installed without the development group (the image runs `uv sync
--no-dev`), and every development dependency is used by something."""

from __future__ import annotations

import ast
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("libs", "services", "tools")
# Development dependencies used as commands or pytest plugins rather than imported.
TOOLS = {
    "pytest-asyncio",
    "pytest-timeout",
    "ruff",
    "mypy",
    "pip-audit",
    "py-spy",
}  # py-spy: tools/profile.py runs it
# make bench's report (PNG) and its comparison with the eventsourcing library: development
# tools, installed with the development group; the image and the operator CLI's other
# commands do without them.
BENCH_ONLY = {"tools/bench_report.py", "tools/peer_bench.py", "tools/peer_system.py"}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@cache
def lock() -> dict[str, dict]:  # type: ignore[type-arg]
    return {package["name"]: package for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}


def closure(names: set[str]) -> set[str]:
    found, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in found or name not in lock():
            continue
        found.add(name)
        pending += [dep["name"] for dep in lock()[name].get("dependencies", [])]
        for extra in lock()[name].get("optional-dependencies", {}).values():
            pending += [dep["name"] for dep in extra]
    return found


def imported_distributions(directories: tuple[str, ...]) -> dict[str, set[str]]:
    """distribution -> the files that import it (third-party only)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for directory in directories:
        for path in (ROOT / directory).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in {"libs", "services", "tools", "tests"}:
                        continue
                    for distribution in owners.get(top, [top]):
                        found.setdefault(canonical(distribution), set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_shipped_code_imports_only_runtime_dependencies() -> None:
    project = lock()["ordermesh"]
    runtime = closure({dep["name"] for dep in project["dependencies"]})
    # Only the image's code paths: test modules inside a service package run under pytest.
    imports = {
        distribution: {
            f
            for f in files
            if "/tests/" not in f and not Path(f).name.startswith("test_") and f not in BENCH_ONLY
        }
        for distribution, files in imported_distributions(SHIPPED).items()
    }
    missing = {d: sorted(files) for d, files in imports.items() if files and d not in runtime}
    assert not missing, f"imported by shipped code but only a development dependency (or none): {missing}"


def test_every_development_dependency_is_used() -> None:
    project = lock()["ordermesh"]
    dev = {dep["name"] for dep in project["dev-dependencies"]["dev"]}
    used = set(imported_distributions((*SHIPPED, "tests", "deploy")))
    unused = sorted(dev - used - TOOLS)
    assert not unused, f"development dependencies nothing imports: {unused} (remove them)"
