"""Outbox relay: publishes committed outbox rows to Kafka in order, then deletes them.

- Woken by NOTIFY when a transaction with outbox rows commits, so there is no fixed
  sleep-poll on the hot path; a slow fallback poll covers a missed notification.
- Publishes in id order with an idempotent acks=all producer, so rows of one aggregate
  (one Kafka key) keep their order within a partition.
- A row is deleted only after the broker acknowledged it. A crash in between republishes the
  row; consumers drop the duplicate through their inbox.
- Retries forever, with backoff, across broker and database outages. A row the broker
  refuses for good (larger than it accepts, say) is moved to `outbox_parked` with the
  reason, so it cannot hold back every row behind it; the order it belonged to is then
  caught by its saga deadline.
- One relay per database publishes at a time (advisory lock), so replicas of a service can
  all run one and a standby takes over when the active one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from libs.runtime import faults
from libs.runtime.metrics import OUTBOX_BACKLOG, OUTBOX_PARKED, OUTBOX_PUBLISHED, RELAY_HEALTHY
from libs.runtime.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 7463001
FALLBACK_POLL_SECONDS = 1.0


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        service: str,
        batch_size: int = 500,
        topic_for: Callable[[str], str] = str,
    ) -> None:
        self._topic_for = topic_for
        self._dsn = dsn
        self._producer_factory = producer_factory
        self._service = service
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0
        self.parked = 0
        # Health, for /ready and the metrics: whether this process holds the relay lock, and
        # since when rounds have been failing (None while they succeed).
        self.leading = False
        self.failing_since: float | None = None
        self.last_error = ""

    def stalled(self, now: float, after_seconds: float) -> str | None:
        """Why the relay is not publishing, or None (a standby waiting for the lock is fine)."""
        if self.failing_since is not None and now - self.failing_since > after_seconds:
            return f"publishing has failed for {now - self.failing_since:.0f}s: {self.last_error[:200]}"
        return None

    async def run(self) -> None:
        """Run until stop(); every failure is retried after a growing pause."""
        backoff = 0.1
        while not self._stopping:
            try:
                await self._run_as_leader()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.leading = False
                self._failed(error)
                log.warning("outbox relay failed; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = f"{type(error).__name__}: {error}"
        RELAY_HEALTHY.labels(self._service).set(0)

    def _succeeded(self) -> None:
        self.failing_since = None
        RELAY_HEALTHY.labels(self._service).set(1)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _run_as_leader(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                self._succeeded()  # standing by is healthy
                if self._stopping:
                    return
                await asyncio.sleep(2.0)
            self.leading = True
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            producer = self._producer_factory()
            await producer.start()
            try:
                while not self._stopping:
                    self._wake.clear()
                    published = await self.publish_pending(conn, producer)
                    self._succeeded()
                    if published < self._batch_size:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), FALLBACK_POLL_SECONDS)
            finally:
                await producer.stop()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_pending(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> int:
        """Publish one batch of committed rows; returns how many were published.

        Rows are sent in id order and awaited together. A row the broker refuses for good is
        parked; one that failed for a passing reason stays, and the round fails after the
        rows that did get through are deleted, so they are not sent twice needlessly.
        """
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            OUTBOX_BACKLOG.labels(self._service).set(0)
            return 0
        sent: list[tuple[asyncpg.Record, asyncio.Future[object]]] = []
        refused: dict[int, BaseException] = {}
        for row in rows:
            headers = json.loads(row["headers"]) if isinstance(row["headers"], str) else row["headers"]
            try:
                delivery = await producer.send(
                    self._topic_for(row["topic"]),
                    value=bytes(row["value"]),
                    key=row["key"].encode(),
                    headers=[(k, str(v).encode()) for k, v in headers.items()],
                )
            except KafkaError as refusal:  # refused before sending: too large, bad topic name
                refused[row["id"]] = refusal
                continue
            sent.append((row, delivery))
        outcomes = await asyncio.gather(*(delivery for _, delivery in sent), return_exceptions=True)
        faults.crash_point(faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK)
        delivered = [
            row["id"]
            for (row, _), outcome in zip(sent, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
        ]
        refused |= {
            row["id"]: outcome
            for (row, _), outcome in zip(sent, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        }
        to_park = {i: e for i, e in refused.items() if _refused_for_good(e)}
        async with conn.transaction():
            if delivered:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", delivered)
            for row_id, reason in to_park.items():
                await self._park(conn, row_id, reason)
        self.published += len(delivered)
        OUTBOX_PUBLISHED.labels(self._service).inc(len(delivered))
        if len(rows) == self._batch_size or len(refused) > len(to_park):
            OUTBOX_BACKLOG.labels(self._service).set(await conn.fetchval("SELECT count(*) FROM outbox"))
        else:
            OUTBOX_BACKLOG.labels(self._service).set(0)
        if to_park:
            OUTBOX_PARKED.labels(self._service).set(await conn.fetchval("SELECT count(*) FROM outbox_parked"))
        retry = [e for i, e in refused.items() if i not in to_park]
        if retry:
            raise retry[0]  # a passing failure: the round is retried after a pause
        return len(delivered) + len(to_park)

    async def _park(self, conn: asyncpg.Connection, row_id: int, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:2000]
        await conn.execute(
            "WITH moved AS (DELETE FROM outbox WHERE id = $1 RETURNING *)"
            " INSERT INTO outbox_parked (id, topic, key, value, headers, created_at, reason)"
            " SELECT id, topic, key, value, headers, created_at, $2 FROM moved",
            row_id,
            reason,
        )
        self.parked += 1
        log.error("outbox row %d parked, the broker refuses it for good: %s", row_id, reason)


# What the broker (or the producer, on its behalf) refuses because of the message itself. Not
# Kafka's own `retriable` flag: that marks a timeout "not retriable" too, and a broker
# restart must never park rows.
_REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
)


def _refused_for_good(error: BaseException) -> bool:
    return isinstance(error, _REFUSED_FOR_GOOD)
