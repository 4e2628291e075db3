"""Where a service's CPU goes: py-spy samples of running service processes, summarised by
what the time was spent on (docs/performance.md, "What bounds the peak").

    python -m tools.profile record order inventory billing --seconds 30   # a running platform
    python -m tools.profile summary bench/results/profile-order.txt

`make bench BENCH_ARGS=--profile` records the services during its sustained phase. py-spy is a
development dependency; it reads another process's memory, so it needs the same user (or
root) and a kernel that allows ptrace of that process.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY_SPY = Path(sys.executable).with_name("py-spy")

# What a sample's task was doing, judged by its outermost frames under the event loop.
TASKS = (
    (
        "HTTP requests (uvicorn, Starlette, FastAPI, routes)",
        r"uvicorn/protocols|starlette|fastapi|runtime/http\.py|entrypoints/",
    ),
    ("group commit of HTTP commands", r"group_commit\.py"),
    ("consumers (FastStream loop, libs/runtime/consumer)", r"faststream|runtime/consumer\.py"),
    ("outbox publisher and relay", r"runtime/(publisher|relay|outbox)\.py"),
    ("Kafka client background tasks", r"aiokafka"),
    ("deadline loop and samplers", r"deadline|sampler|saga_metrics|runtime/metrics\.py"),
)
# What a sample was spending time in, wherever in the stack (a sample may count in several).
PARTS = (
    ("database driver (asyncpg, SQLAlchemy core)", r"asyncpg|sqlalchemy"),
    ("pydantic", r"pydantic"),
    ("event codec", r"events/codec\.py"),
    ("domain", r"services/\w+/domain/"),
    ("read-model projections", r"adapters/projections\.py"),
    ("personal-data encryption", r"personal_data\.py"),
    ("authentication", r"runtime/auth\.py|libs/security/"),
    ("aiokafka", r"aiokafka"),
)
EVENT_LOOP = "the event loop itself (polling, callbacks)"
# py-spy shows an asyncio task's coroutines right under the loop's run call.
LOOP_FRAME = re.compile(r"^Runner\.run \(asyncio/runners\.py")


@dataclass
class Summary:
    samples: int = 0
    tasks: collections.Counter[str] = field(default_factory=collections.Counter)
    parts: collections.Counter[str] = field(default_factory=collections.Counter)
    frames: collections.Counter[str] = field(default_factory=collections.Counter)

    def shares(self, counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / max(self.samples, 1), 1)) for name, n in counter.most_common()]

    def as_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "tasks_pct": dict(self.shares(self.tasks)),
            "parts_pct": dict(self.shares(self.parts)),
            "top_frames_pct": dict(self.shares(self.frames)[:10]),
        }


def summarise(lines: list[str]) -> Summary:
    """A summary of py-spy's raw output: one `frame;frame;...;innermost count` per line."""
    summary = Summary()
    tasks = [(name, re.compile(rx)) for name, rx in TASKS]
    parts = [(name, re.compile(rx)) for name, rx in PARTS]
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        summary.samples += n
        summary.frames[frames[-1]] += n
        under_loop = [i for i, f in enumerate(frames) if LOOP_FRAME.match(f)]
        task = frames[under_loop[-1] + 1 :] if under_loop else frames
        if not task:
            summary.tasks[EVENT_LOOP] += n
            continue
        outer = task[:6]
        kind = next(
            (name for name, rx in tasks if any(rx.search(f) for f in outer)), f"other: {task[0][:60]}"
        )
        summary.tasks[kind] += n
        for name, rx in parts:
            if any(rx.search(f) for f in task):
                summary.parts[name] += n
    return summary


def record(pids: dict[str, int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """Start py-spy on each named pid for `seconds` (50 samples a second, without pausing the
    process); each writes out/profile-<name>.txt. Wait on the returned processes."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(  # noqa: S603 - our own py-spy, with pids from our own pid files
            [
                str(PY_SPY),
                "record",
                "--nonblocking",
                "-r",
                "50",
                "-d",
                str(int(seconds)),
                "-f",
                "raw",
                "-p",
                str(pid),
                "-o",
                str(out / f"profile-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def render(name: str, summary: Summary) -> str:
    rows = [f"{name}: {summary.samples} samples", "  by task:"]
    rows += [f"    {pct:5.1f}%  {task}" for task, pct in summary.shares(summary.tasks)[:8]]
    rows += ["  in (anywhere in the stack):"]
    rows += [f"    {pct:5.1f}%  {part}" for part, pct in summary.shares(summary.parts)]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser(
        "record", help="sample running services of the local platform (tools.infra's pid files)"
    )
    rec.add_argument("services", nargs="+", help="service names, e.g. order inventory")
    rec.add_argument("--seconds", type=float, default=30, help="how long to sample")
    rec.add_argument("--out", type=Path, default=RESULTS, help="folder for profile-<service>.txt")
    summ = commands.add_parser("summary", help="summarise py-spy raw files")
    summ.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        from tools.infra import read_pid

        pids = {name: pid for name in args.services if (pid := read_pid(name)) is not None}
        if not pids:
            raise SystemExit("none of those services is running here (tools.infra's pid files)")
        for process in record(pids, args.seconds, args.out):
            process.wait()
        files = [args.out / f"profile-{name}.txt" for name in pids]
    else:
        files = args.files
    for path in files:
        print(render(path.stem.removeprefix("profile-"), summarise(path.read_text().splitlines())))


if __name__ == "__main__":
    main()
