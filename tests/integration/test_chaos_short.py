"""A short run of the chaos suite inside the regular tests, so it cannot rot: a process that
dies between publishing and marking its outbox, a consumer that dies between its database
commit and its offset commit, and poison on every consumed topic."""

from __future__ import annotations

import argparse

import pytest

from tools import chaos

pytestmark = pytest.mark.integration


async def test_short_chaos_run_keeps_every_invariant() -> None:
    faults = [
        "crash-after-publish-before-outbox-mark",
        "crash-after-db-commit-before-offset-commit",
        "poison",
    ]
    args = argparse.Namespace(faults=faults, rate=5.0, seconds=6.0, settle=60.0, stock=1000, keep=False)

    result = await chaos.chaos_run(args)

    rows = {row["fault"]: row for row in result["faults"]}
    assert set(rows) == set(faults)
    for row in rows.values():
        assert row["accepted"] > 0, row
        assert row["lost"] == 0, row
        assert row["accepted"] == row["terminal"] + row["waiting"], row
        assert row["details"] == [], row
    assert rows["poison"]["dead_lettered"] >= rows["poison"]["poison_sent"] == 16
    assert result["violations"] == 0, result
