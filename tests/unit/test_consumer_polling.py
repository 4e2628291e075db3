"""An idle consumer picks up the next message as soon as it arrives: no pause after an empty
poll (FastStream's batch subscriber sleeps a whole poll interval there)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faststream.kafka import KafkaBroker

from libs.runtime.consumer import poll_without_idle_sleep

POLL_MS = 200


class IdleConsumer:
    """getmany as aiokafka's: waits up to the timeout for records, answers {} if none came."""

    def __init__(self, records: dict[Any, list[str]] | None = None, waits: bool = True) -> None:
        self.records = records or {}
        self.waits = waits

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[str]]:
        if not self.records and self.waits:
            await asyncio.sleep(timeout_ms / 1000)
        return self.records


def batch_subscriber(patched: bool) -> Any:
    subscriber = KafkaBroker().subscriber("t", group_id="g", batch=True, batch_timeout_ms=POLL_MS)
    if patched:
        poll_without_idle_sleep(subscriber, POLL_MS, max_records=10)
    return subscriber


async def seconds_for_one_poll(subscriber: Any, consumer: IdleConsumer) -> tuple[float, Any]:
    started = time.monotonic()
    got = await subscriber.get_msg(consumer)
    return time.monotonic() - started, got


async def test_an_empty_poll_is_followed_by_the_next_poll_at_once() -> None:
    unpatched, _ = await seconds_for_one_poll(batch_subscriber(False), IdleConsumer())
    patched, got = await seconds_for_one_poll(batch_subscriber(True), IdleConsumer())

    assert got == ()
    assert unpatched >= 2 * POLL_MS / 1000  # FastStream's own: the poll, then as long asleep
    assert patched < 1.5 * POLL_MS / 1000


async def test_an_empty_answer_that_did_not_wait_still_waits_out_the_poll() -> None:
    seconds, got = await seconds_for_one_poll(batch_subscriber(True), IdleConsumer(waits=False))
    assert got == ()
    assert seconds >= 0.9 * POLL_MS / 1000  # no busy loop while no partition is assigned


async def test_records_of_every_partition_come_back_in_one_batch() -> None:
    consumer = IdleConsumer({"p0": ["a", "b"], "p1": ["c"]})
    seconds, got = await seconds_for_one_poll(batch_subscriber(True), consumer)
    assert got == ("a", "b", "c")
    assert seconds < POLL_MS / 1000
