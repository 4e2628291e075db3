"""The `ordermesh` command line: every subcommand documents every option in --help, and the
subcommands that run an argparse entry point (`python -m tools.bench`, used by make bench) take
exactly that entry point's options, with its defaults, and pass them on as given."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tools import bench, chaos, invariants, loadgen
from tools.cli import app

runner = CliRunner()


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))
    else:
        yield path, group


ALL = list(commands(typer.main.get_command(app)))


def test_the_cli_has_every_operator_tool() -> None:
    assert {" ".join(path) for path, _ in ALL} == {
        "load",
        "bench",
        "chaos",
        "invariants",
        "replay",
        "dlq inspect",
        "dlq redrive",
        "dlq discard",
        "saga inspect",
        "import-orders",
    }


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_lists_every_option_with_a_help_text(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert command.help, f"ordermesh {' '.join(path)} says nothing about itself"
    for param in command.params:
        help_text = getattr(param, "help", None)
        assert help_text, f"ordermesh {' '.join(path)}: {param.name} has no help text"
        if is_option(param):
            assert param.opts[0] in result.output, f"{param.opts[0]} missing from --help"
        else:
            assert (param.name or "") in result.output, f"argument {param.name} missing from --help"


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def argparse_of(main: Any, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser an argparse entry point builds, caught as it starts to parse."""

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(sys, "argv", ["x"])
    with pytest.raises(_Parsed) as caught:
        main()
    monkeypatch.undo()
    return caught.value.parser


def options_of(parser: argparse.ArgumentParser) -> dict[str, Any]:
    return {a.dest: a.default for a in parser._actions if a.dest != "help"}


def cli_options(name: str) -> dict[str, Any]:
    command = dict(ALL)[(name,)]
    return {p.name: p.default for p in command.params if is_option(p) and p.name}


def is_option(param: Any) -> bool:
    # typer carries its own copy of click, so its classes are checked by what they say they are
    return getattr(param, "param_type_name", "") == "option"


@pytest.mark.parametrize("name", ["bench", "chaos", "invariants"])
def test_a_forwarding_subcommand_takes_exactly_the_entry_points_options(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = {"bench": bench, "chaos": chaos, "invariants": invariants}[name]
    theirs = options_of(argparse_of(module.main, monkeypatch))
    ours = cli_options(name)
    assert set(ours) == set(theirs)
    # Same defaults where the entry point's is a plain value (not read from the environment,
    # not a list built from the code's fault table).
    for option, default in theirs.items():
        if isinstance(default, int | float | str) and not isinstance(default, bool):
            assert ours[option] == default, option


def test_bench_passes_on_exactly_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse_of(bench.main, monkeypatch)
    seen: list[list[str]] = []
    monkeypatch.setattr(bench, "main", lambda: seen.append(list(sys.argv)))

    result = runner.invoke(app, ["bench", "--orders", "10", "--no-sweep", "--peer-args", "--orders 5"])

    assert result.exit_code == 0, result.output
    assert seen == [["ordermesh bench", "--orders", "10", "--no-sweep", "--peer-args", "--orders 5"]]
    parsed = parser.parse_args(seen[0][1:])
    assert (parsed.orders, parsed.sweep, parsed.peer_args, parsed.warmup) == (10, False, "--orders 5", 1000)


def test_load_gives_the_load_generator_every_option_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    loadgen.add_arguments(parser)
    theirs = {*options_of(parser), "orders", "rate", "concurrency"}
    assert set(cli_options("load")) == theirs
    for option, default in options_of(parser).items():
        assert cli_options("load")[option] == default, option
