"""Outbox relay: publishes committed outbox rows to Kafka in order, then deletes them.

- Woken by NOTIFY when a transaction with outbox rows commits, so there is no fixed
  sleep-poll on the hot path; a slow fallback poll covers a missed notification.
- Publishes in id order with an idempotent acks=all producer, so rows of one aggregate
  (one Kafka key) keep their order within a partition.
- A row is deleted only after the broker acknowledged it. A crash in between republishes the
  row; consumers drop the duplicate through their inbox.
- Retries forever, with backoff, across broker and database outages.
- One relay per database publishes at a time (advisory lock), so replicas of a service can
  all run one and a standby takes over when the active one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from libs.runtime import faults
from libs.runtime.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED
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

    async def run(self) -> None:
        """Run until stop(); every failure is retried after a growing pause."""
        backoff = 0.1
        while not self._stopping:
            try:
                await self._run_as_leader()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox relay failed; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _run_as_leader(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                if self._stopping:
                    return
                await asyncio.sleep(2.0)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            producer = self._producer_factory()
            await producer.start()
            try:
                while not self._stopping:
                    self._wake.clear()
                    published = await self.publish_pending(conn, producer)
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
        """Publish one batch of committed rows; returns how many were published."""
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            OUTBOX_BACKLOG.labels(self._service).set(0)
            return 0
        deliveries = []
        for row in rows:
            headers = json.loads(row["headers"]) if isinstance(row["headers"], str) else row["headers"]
            deliveries.append(
                await producer.send(
                    self._topic_for(row["topic"]),
                    value=bytes(row["value"]),
                    key=row["key"].encode(),
                    headers=[(k, str(v).encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*deliveries)
        faults.crash_point(faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK)
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        if len(rows) == self._batch_size:
            OUTBOX_BACKLOG.labels(self._service).set(await conn.fetchval("SELECT count(*) FROM outbox"))
        else:
            OUTBOX_BACKLOG.labels(self._service).set(0)
        return len(rows)
