"""`ordermesh`: one command line for the operator tools.

    ordermesh load | bench | chaos | invariants      load, measure, break, check the platform
    ordermesh replay GROUP                           move a consumer group back (earliest, a time)
    ordermesh dlq inspect|redrive|discard GROUP      a consumer group's dead letters
    ordermesh saga inspect ORDER_ID                  one order's saga: stage, steps, deadlines, traces

Connections come from the OM_* variables the services read (README.md): OM_KAFKA_BOOTSTRAP,
OM_PG_HOST, OM_DB_PREFIX, OM_TOPIC_NAMESPACE and the rest. Consumer groups are named as in the
services' code (`ordermesh dlq inspect inventory.commands`); OM_TOPIC_NAMESPACE is prefixed.

bench, chaos and invariants run the same code as `python -m tools.bench` (and the others),
which `make bench` and `make chaos` call: the options here are theirs, passed on as given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from libs.runtime.settings import RuntimeSettings
from tools import import_orders, progress

app = typer.Typer(
    help="OrderMesh's operator tools. Connections come from the OM_* variables (README.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="A consumer group's dead letters: list, re-drive, discard.", no_args_is_help=True)
saga_app = typer.Typer(help="One order's saga.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(saga_app, name="saga")
app.command("import-orders", context_settings={"show_default": True})(import_orders.command)


def _settings() -> RuntimeSettings:
    return RuntimeSettings()


def _forward(ctx: typer.Context, main: Callable[[], None], program: str) -> None:
    """Run an argparse entry point with the options given here (only those the user set, so
    its own defaults, some read from the environment, still apply)."""
    argv = [program]
    for param in ctx.command.params:
        # typer carries its own copy of click: its classes are not the click package's.
        if getattr(param, "param_type_name", "") != "option" or param.name is None:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params[param.name]
        option: Any = param
        if option.is_flag:
            if option.secondary_opts:
                argv.append(option.opts[0] if value else option.secondary_opts[0])
            elif value:
                argv.append(option.opts[0])
        else:
            argv += [option.opts[0], str(value)]
    saved = sys.argv
    sys.argv = argv
    try:
        main()
    finally:
        sys.argv = saved


# -- load, bench, chaos, invariants ---------------------------------------------------------------


@app.command()
def load(
    orders: Annotated[int, typer.Option(help="orders to submit")] = 1000,
    rate: Annotated[float, typer.Option(help="orders/s (0: as fast as absorbed)")] = 0,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 50,
    order_url: Annotated[str, typer.Option(help="the order service")] = "http://127.0.0.1:8001",
    inventory_url: Annotated[str, typer.Option(help="the inventory service")] = "http://127.0.0.1:8002",
    billing_url: Annotated[str, typer.Option(help="the billing service")] = "http://127.0.0.1:8004",
    http_share: Annotated[
        float, typer.Option(help="share of orders sent over HTTP (the rest: intake topic)")
    ] = 0.5,
    on_account_share: Annotated[
        float, typer.Option(help="share of orders on account (the rest prepaid)")
    ] = 0.3,
    fail_share: Annotated[
        float, typer.Option(help="share of prepaid orders whose payment is declined")
    ] = 0.0,
    never_pay_share: Annotated[float, typer.Option(help="share of prepaid orders never paid")] = 0.0,
    retry_after_decline_share: Annotated[
        float, typer.Option(help="of the customers whose card is declined, the share who pay again at once")
    ] = 0.5,
    stock: Annotated[int, typer.Option(help="units per SKU per warehouse")] = 100_000,
    drain: Annotated[float, typer.Option(help="seconds to wait for outcomes")] = 120,
    ship: Annotated[
        bool,
        typer.Option(
            help="also ship what is confirmed (warehouse steps over HTTP, carrier reports) and time"
            " submission to delivered"
        ),
    ] = False,
) -> None:
    """Put load on the running platform (make up) and print its summary as JSON."""
    from tools import loadgen

    args = argparse.Namespace(**{k: v for k, v in locals().items() if k != "loadgen"})
    print(json.dumps(asyncio.run(loadgen.main_async(args)), indent=2))


@app.command(context_settings={"show_default": True})
def bench(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option(help="orders of the sustained run")] = 5000,
    warmup: Annotated[int, typer.Option(help="orders of the warm-up")] = 1000,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 200,
    seconds_at_70: Annotated[float, typer.Option(help="seconds of load at 70% of the sustained rate")] = 20,
    raw_messages: Annotated[int, typer.Option(help="messages of the raw Kafka ceiling")] = 50_000,
    raw_seconds: Annotated[float, typer.Option(help="seconds of the raw PostgreSQL ceiling")] = 5,
    drain: Annotated[float, typer.Option(help="most seconds to wait for outcomes after each run")] = 180,
    delivered_orders: Annotated[int, typer.Option(help="orders taken all the way to delivered")] = 600,
    sweep: Annotated[
        bool, typer.Option(help="the open-loop sweep and its chart (OM_BENCH_SWEEP=off)")
    ] = True,
    sweep_seconds: Annotated[float, typer.Option(help="seconds at each offered rate")] = 12,
    peer: Annotated[bool, typer.Option(help="the eventsourcing peer (OM_BENCH_PEER=off)")] = True,
    peer_args: Annotated[str, typer.Option(help="passed to python -m tools.peer_bench")] = "",
    profile: Annotated[
        bool,
        typer.Option("--profile", help="sample order, inventory and billing with py-spy while sustained"),
    ] = False,
    profile_seconds: Annotated[float, typer.Option(help="how long --profile samples")] = 30,
) -> None:
    """Measure the running platform (make up): table, latency curve, stage breakdown, peer."""
    from tools import bench as bench_tool

    _forward(ctx, bench_tool.main, "ordermesh bench")


@app.command(context_settings={"show_default": True})
def chaos(
    ctx: typer.Context,
    faults: Annotated[str, typer.Option(help="comma-separated faults to inject (default: every one)")] = "",
    rate: Annotated[float, typer.Option(help="orders/s of steady load")] = 20,
    seconds: Annotated[float, typer.Option(help="load per fault (at least)")] = 12,
    settle: Annotated[float, typer.Option(help="most seconds to wait for sagas")] = 90,
    stuck_after: Annotated[
        float,
        typer.Option(help="seconds past its deadline (or in a stage without one) before an order is stuck"),
    ] = 30,
    payment_deadline: Annotated[
        float, typer.Option(help="seconds a prepaid order waits for its payment")
    ] = 20,
    pingpong_cycles: Annotated[int, typer.Option(help="rebalance-ping-pong cycles")] = 3,
    stock: Annotated[int, typer.Option(help="units per SKU per warehouse")] = 100_000,
    manufactured_share: Annotated[
        float, typer.Option(help="share of the orders with a line of a manufactured SKU (made to order)")
    ] = 0.1,
    desk_amends: Annotated[int, typer.Option(help="orders amended per fault (up and down in turn)")] = 3,
    desk_splits: Annotated[int, typer.Option(help="backordered orders split per fault")] = 2,
    desk_merges: Annotated[int, typer.Option(help="pairs of one customer's orders merged per fault")] = 2,
    desk_returns: Annotated[int, typer.Option(help="delivered orders with a unit returned per fault")] = 2,
    keep: Annotated[bool, typer.Option("--keep", help="keep the run's databases")] = False,
) -> None:
    """Inject faults under load on a platform of its own; writes bench/results/chaos-latest.json."""
    from tools import chaos as chaos_tool

    _forward(ctx, chaos_tool.main, "ordermesh chaos")


@app.command(context_settings={"show_default": True})
def invariants(
    ctx: typer.Context,
    stuck_after: Annotated[
        float,
        typer.Option(
            help="seconds past a stage's deadline (or since it began, for stages without one) before an"
            " order counts as stuck"
        ),
    ] = 60.0,
) -> None:
    """Check the cross-service invariants on the platform's databases (exit 1 on a violation)."""
    from tools import invariants as invariants_tool

    _forward(ctx, invariants_tool.main, "ordermesh invariants")


# -- replay ---------------------------------------------------------------------------------------


@app.command()
def replay(
    group: Annotated[str, typer.Argument(help="the consumer group, as named in the services' code")],
    since: Annotated[
        datetime | None,
        typer.Option(help="replay from the first message at or after this time (ISO 8601, UTC if no zone)"),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(help="a topic to move (repeat); default: every topic the group reads"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="show where each partition would move, change nothing")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    follow: Annotated[
        bool, typer.Option(help="after moving, show the group's progress until it has caught up")
    ] = True,
    timeout: Annotated[float, typer.Option(help="most seconds to follow the group")] = 3600,
) -> None:
    """Move a consumer group back to the start of its topics (or to --since), refused while the
    group has live members; then follow it until it has read everything again."""
    from tools import replay as replay_tool

    settings = _settings()
    name = settings.topic(group)
    topics = tuple(settings.topic(t) for t in topic) if topic else replay_tool.topics_of(settings, name)
    if not topics:
        raise typer.BadParameter(f"no service of ours reads with group {name}: name its topics with --topic")
    when = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    try:
        moves = asyncio.run(replay_tool.plan(settings, name, topics, when))
    except replay_tool.ReplayRefused as refusal:
        typer.echo(f"refused: {refusal}", err=True)
        raise typer.Exit(2) from refusal
    for move in moves:
        typer.echo(
            f"{move.partition.topic}[{move.partition.partition}]: {move.committed} -> {move.target}"
            f" ({move.messages} messages to read)"
        )
    total = sum(move.messages for move in moves)
    if dry_run:
        return
    if not yes:
        typer.confirm(f"move {name} back over {total} messages?", abort=True)
    asyncio.run(replay_tool.apply(settings, name, moves))
    typer.echo(f"{name} moved; start its consumers again")
    if follow:
        asyncio.run(_follow(settings, name, topics, total, timeout))


async def _follow(
    settings: RuntimeSettings, group: str, topics: tuple[str, ...], total: int, timeout: float
) -> None:
    from tools import replay as replay_tool

    deadline = asyncio.get_running_loop().time() + timeout
    with progress.countdown(f"replay {group}", total) as left:
        while asyncio.get_running_loop().time() < deadline:
            behind = await replay_tool.remaining(settings, group, topics)
            left(behind)
            if behind == 0:
                return
            await asyncio.sleep(1)
    typer.echo(f"{group} has not caught up after {timeout:.0f}s", err=True)
    raise typer.Exit(1)


# -- dead letters ---------------------------------------------------------------------------------


@dlq_app.command("inspect")
def dlq_inspect(
    group: Annotated[str, typer.Argument(help="the consumer group, as named in the services' code")],
    all_: Annotated[bool, typer.Option("--all", help="also those already re-driven or discarded")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document per line")] = False,
) -> None:
    """List the group's dead letters: position (partition:offset), where each came from, its
    event type and id, and why it was refused."""
    from tools import dlq

    letters = asyncio.run(dlq.read_dead_letters(_settings(), _settings().topic(group), include_handled=all_))
    if as_json:
        if letters:
            typer.echo(dlq.as_json_lines(letters))
        return
    for letter in letters:
        event_type, event_id = letter.identity()
        mark = " (handled)" if letter.handled else ""
        typer.echo(
            f"{letter.position}{mark} from {letter.source}: {event_type or 'undecodable'} {event_id}\n"
            f"    {letter.reason[:300]}"
        )
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


def _positions(letters: list[Any], wanted: list[str] | None) -> list[Any]:
    if not wanted:
        return letters
    by_position = {letter.position: letter for letter in letters}
    unknown = [p for p in wanted if p not in by_position]
    if unknown:
        raise typer.BadParameter(f"no dead letter at {', '.join(unknown)} (see ordermesh dlq inspect --all)")
    return [by_position[p] for p in wanted]


@dlq_app.command("redrive")
def dlq_redrive(
    group: Annotated[str, typer.Argument(help="the consumer group, as named in the services' code")],
    position: Annotated[
        list[str] | None,
        typer.Option(
            help="partition:offset of a dead letter to re-drive (repeat); default: every pending one"
        ),
    ] = None,
    fixed: Annotated[
        list[str] | None,
        typer.Option(
            help="partition:offset=FILE: send FILE's bytes instead (the corrected message; it must keep"
            " its event_id)"
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Send dead letters back to the topic they came from, with their key, headers and event id,
    so the consumers apply each once (a second re-drive is dropped by their inbox)."""
    from tools import dlq

    settings = _settings()
    name = settings.topic(group)
    replacements: dict[str, bytes] = {}
    for item in fixed or []:
        where, _, path = item.partition("=")
        if not path:
            raise typer.BadParameter(f"--fixed {item!r}: write partition:offset=FILE")
        replacements[where] = Path(path).read_bytes()
    wanted = list(dict.fromkeys([*(position or []), *replacements]))
    letters = asyncio.run(dlq.read_dead_letters(settings, name, include_handled=bool(wanted)))
    chosen = _positions(letters, wanted)
    if not chosen:
        typer.echo("nothing to re-drive")
        return
    if not yes:
        typer.confirm(f"re-drive {len(chosen)} dead letter(s) of {name}?", abort=True)
    try:
        done = asyncio.run(dlq.redrive(settings, name, chosen, replacements))
    except dlq.RedriveRefused as refusal:
        typer.echo(f"refused: {refusal}", err=True)
        raise typer.Exit(2) from refusal
    typer.echo(f"re-driven: {', '.join(done.sent)}; handled mark now {done.handled_through or 'unchanged'}")


@dlq_app.command("discard")
def dlq_discard(
    group: Annotated[str, typer.Argument(help="the consumer group, as named in the services' code")],
    position: Annotated[
        list[str], typer.Option(help="partition:offset of a dead letter to set aside (repeat)")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Mark dead letters as dealt with without re-driving them (the DLQ keeps their bytes until
    its retention ends)."""
    from tools import dlq

    settings = _settings()
    name = settings.topic(group)
    chosen = _positions(asyncio.run(dlq.read_dead_letters(settings, name)), position)
    if not yes:
        typer.confirm(f"discard {len(chosen)} dead letter(s) of {name}?", abort=True)
    marks = asyncio.run(dlq.mark_handled(settings, name, chosen))
    typer.echo(f"handled mark now {marks or 'unchanged (an earlier dead letter is still pending)'}")


# -- saga -----------------------------------------------------------------------------------------


@saga_app.command("inspect")
def saga_inspect(
    order_id: Annotated[str, typer.Argument(help="the order's id")],
    as_json: Annotated[bool, typer.Option("--json", help="as one JSON document")] = False,
    traces: Annotated[bool, typer.Option(help="look up the trace ids of the order's messages")] = True,
    trace_url: Annotated[
        str,
        typer.Option(
            envvar="OM_TRACE_URL",
            help="link printed beside each trace id, {trace_id} filled in"
            " (Jaeger: http://localhost:16686/trace/{trace_id})",
        ),
    ] = "",
) -> None:
    """Where one order's saga stands: status and stage and since when, each step, pending
    deadlines, its timeline, and the trace ids of its messages."""
    from tools import saga_inspect as inspector

    try:
        view = asyncio.run(inspector.inspect(_settings(), order_id, with_traces=traces))
    except inspector.UnknownOrder as unknown:
        typer.echo(str(unknown), err=True)
        raise typer.Exit(1) from unknown
    typer.echo(json.dumps(view.as_dict(), indent=2) if as_json else inspector.render(view, trace_url))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
