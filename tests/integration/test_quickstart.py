"""The README's quickstart, run as written against the test platform, so it cannot rot.

The block marked ```bash quickstart``` is taken from README.md and run by bash, step by step
in one shell (variables carry over); the base URLs, the tokens' folder and the Kafka topic
namespace come from the environment variables the README reads. A step followed by a
`# → text` line must print a line containing `text`: a read is repeated until it does (the
order moves on in the background), anything else must do so the first time. Every command
must succeed (`curl -f`: an HTTP error fails the run)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.runtime.settings import RuntimeSettings
from libs.security.permissions import BUILTIN_ROLES
from tools import token
from tools.processes import ROOT, Platform

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
EXPECTED = re.compile(r"^# → (?P<text>.+)$")
READ_RETRY_SECONDS = 60


@dataclass(frozen=True)
class Step:
    lines: tuple[str, ...]
    expected: str | None = None

    @property
    def is_read(self) -> bool:
        """A step that changes nothing (no request body, no POST): safe to repeat."""
        script = "\n".join(self.lines)
        return " -X " not in script and " -d " not in script and "tools.intake" not in script


def quickstart_block(readme: str) -> list[str]:
    blocks = re.findall(r"^```bash quickstart\n(.*?)^```$", readme, flags=re.S | re.M)
    assert len(blocks) == 1, "README.md must hold exactly one ```bash quickstart block"
    return str(blocks[0]).splitlines()


def steps_of(lines: list[str]) -> list[Step]:
    """Commands separated by blank or comment lines; a `# → text` line right after a step
    is what it must print."""
    steps: list[Step] = []
    current: list[str] = []
    for line in [*lines, ""]:
        expected = EXPECTED.match(line)
        if expected:
            assert current, f"`{line}` follows no command"
            steps.append(Step(tuple(current), expected["text"].strip()))
            current = []
        elif not line.strip() or line.lstrip().startswith("#"):
            if current:
                steps.append(Step(tuple(current)))
                current = []
        else:
            current.append(line)
    return steps


def script_of(steps: list[Step]) -> str:
    """One bash script: each step as written, an expected output checked by `expect`."""
    out = [
        "set -euo pipefail",
        # Run a step (in this shell, so a variable it sets is kept), print its output, and check
        # that a line of it contains the expected text; a read is repeated until it does.
        "expect() {",
        '  local wanted="$1" repeat="$2" step="$3" output status deadline=$((SECONDS + '
        + str(READ_RETRY_SECONDS)
        + "))",
        "  while true; do",
        '    status=0; output=$(eval "$step") || status=$?',
        '    if [ $status -eq 0 ] && grep -qF -- "$wanted" <<<"$output"; then',
        '      printf "%s\\n" "$output"; return 0',
        "    fi",
        '    if [ "$repeat" != repeat ] || [ $SECONDS -ge $deadline ]; then',
        '      printf "%s\\n--- exit %s; expected a line containing: %s\\n" "$output" $status "$wanted" >&2',
        "      return 1",
        "    fi",
        "    sleep 0.2",
        "  done",
        "}",
    ]
    for number, step in enumerate(steps, start=1):
        body = "\n".join(step.lines)
        out.append(f"echo '--- step {number}' >&2")
        if step.expected is None:
            out.append(body)
        else:
            repeat = "repeat" if step.is_read else "once"
            out.append(f"expect {shlex.quote(step.expected)} {repeat} {shlex.quote(body)}")
    return "\n".join(out) + "\n"


def test_the_quickstart_block_is_split_into_steps_with_their_expected_output() -> None:
    steps = steps_of(quickstart_block(README.read_text()))
    expected = [step.expected for step in steps if step.expected]
    # What a reader is promised: the order's way to the cash and back, and the intake's answer.
    assert expected[:3] == ["awaiting_payment", "confirmed", "cancelled"]
    assert '"outcome": "accepted"' in expected
    # Every request with a body says what it is (the services answer 415 without it).
    for step in steps:
        script = "\n".join(step.lines)
        if " -d " in script:
            assert '-H "$JSON"' in script, f"a request body without Content-Type: {script}"


async def test_the_readme_quickstart_runs_as_written(
    platform: Platform, e2e_settings: RuntimeSettings, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for role in BUILTIN_ROLES:
        (tokens / f"{role}.jwt").write_text(token.mint(role) + "\n")
    env = {
        **os.environ,
        "OM_ORDER_URL": platform.url("order"),
        "OM_INVENTORY_URL": platform.url("inventory"),
        "OM_BILLING_URL": platform.url("billing"),
        "OM_TOKENS": str(tokens),
        "OM_KAFKA_BOOTSTRAP": e2e_settings.kafka_bootstrap,
        "OM_TOPIC_NAMESPACE": e2e_settings.topic_namespace,
    }
    script = script_of(steps_of(quickstart_block(README.read_text())))

    run = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert run.returncode == 0, (
        f"the quickstart failed:\n{run.stderr[-4000:]}\n--- output:\n{run.stdout[-4000:]}"
    )
    assert '"status": "approved"' in run.stdout  # the intake's answer names the order's status
