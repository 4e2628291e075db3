"""tools/profile.py reads py-spy's raw stacks of an asyncio service into shares a reader can act on."""

from __future__ import annotations

from tools.profile import EVENT_LOOP, summarise

LOOP = ";".join(
    [
        "_run_module_as_main (<frozen runpy>:198)",
        "run (uvicorn/main.py:632)",
        "Runner.run (asyncio/runners.py:118)",
    ]
)
CONSUMER = ";".join(
    [
        "LogicSubscriber._run_consume_loop (faststream/kafka/subscriber.py:10)",
        "EventConsumer._apply (libs/runtime/consumer.py:293)",
    ]
)
QUERY = ";".join(
    [
        "Connection.execute (sqlalchemy/engine/base.py:1494)",
        "Connection._do_execute (asyncpg/connection.py:2066)",
    ]
)
DECIDE = "react (services/order/domain/saga.py:600)"
HTTP = "HttpToolsProtocol.on_response (uvicorn/protocols/http/httptools_impl.py:300)"


def test_samples_are_shared_by_task_and_by_what_they_spend_time_in() -> None:
    summary = summarise(
        [
            f"{LOOP};{CONSUMER};{QUERY} 6",
            f"{LOOP};{CONSUMER};{DECIDE} 2",
            f"{LOOP};{HTTP} 2",
            f"{LOOP} 10",  # the loop's own work: polling, callbacks
        ]
    )
    shares = summary.as_dict()
    assert summary.samples == 20
    assert shares["tasks_pct"] == {
        EVENT_LOOP: 50.0,
        "consumers (FastStream loop, libs/runtime/consumer)": 40.0,
        "HTTP requests (uvicorn, Starlette, FastAPI, routes)": 10.0,
    }
    # uvicorn's frames above the loop do not make every sample an HTTP one.
    assert shares["parts_pct"] == {"database driver (asyncpg, SQLAlchemy core)": 30.0, "domain": 10.0}


def test_lines_that_are_not_samples_are_ignored() -> None:
    assert summarise(["", "no count here", f"{LOOP};{HTTP} x"]).samples == 0
