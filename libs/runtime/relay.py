"""Outbox relay: publishes committed outbox rows to Kafka in order, then deletes them.

With OM_PUBLISH_AFTER_COMMIT (the default) most rows never wait for it: the process that
committed them publishes them (libs/runtime/publisher.py, which states the guarantees of the
two together). The relay then takes only what is its own (rows handed back, or written while
their key had an earlier row waiting), rows whose publisher is gone (its liveness lock was
released: the process died) and rows a live publisher has held past
OM_OUTBOX_TAKEOVER_SECONDS; and never a row behind an earlier row of its key that it may not
take, so a key's rows keep their order across the two paths.

- Woken by NOTIFY when a transaction with rows for it commits, so there is no fixed
  sleep-poll on the hot path; a slow fallback poll covers a missed notification and finds
  the rows of a publisher that died.
- Publishes in id order with an idempotent acks=all producer, so rows of one aggregate
  (one Kafka key) keep their order within a partition.
- A row is deleted only after the broker acknowledged it. A crash in between republishes the
  row; consumers drop the duplicate through their inbox.
- Retries forever, with backoff, across broker and database outages. A row the broker
  refuses for good (larger than it accepts, say) is moved to `outbox_parked` with the
  reason, so it cannot hold back every row behind it; the order it belonged to is then
  caught by its saga deadline.
- The backlog is not measured here: a relay that stopped publishing would stop measuring it
  too. ServiceRuntime's sampler counts the rows on a timer (ordermesh_outbox_backlog).
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
from libs.runtime.metrics import OUTBOX_PARKED, OUTBOX_PUBLISHED, RELAY_HEALTHY
from libs.runtime.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 7463001
FALLBACK_POLL_SECONDS = 1.0
# How soon to look again when rows of the relay's wait behind a live publisher's row of their
# key (which that publisher is about to delete).
BEHIND_PUBLISHER_POLL_SECONDS = 0.02
# Must match libs.runtime.publisher.PUBLISHER_LOCK_CLASS (not imported: that module imports this).
PUBLISHER_LOCK_CLASS = 7463004

# Every row is the relay's (OM_PUBLISH_AFTER_COMMIT=false everywhere).
_SELECT_ALL = "SELECT id, topic, key, value, headers, true AS clear FROM outbox ORDER BY id LIMIT $1"
# Rows the relay may take (`takeable`), and whether every earlier row of the key in the window
# is takeable too (`clear`): only those are sent. Rows of the relay's that are not clear are
# returned without their value, to say there is work behind a live publisher.
_SELECT_TAKEABLE = """
WITH live AS (
    SELECT objid::bigint AS owner FROM pg_locks
    WHERE locktype = 'advisory' AND classid::bigint = $3::bigint AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), marked AS (
    SELECT id, key, publisher IS NULL AS relays,
           publisher IS NULL OR publisher NOT IN (SELECT owner FROM live)
           OR created_at < now() - make_interval(secs => $2::float8) AS takeable
    FROM (SELECT id, key, publisher, created_at FROM outbox ORDER BY id LIMIT $1 * 4) AS w
), ranked AS (
    SELECT id, relays, takeable, bool_and(takeable) OVER (PARTITION BY key ORDER BY id) AS clear
    FROM marked
)
SELECT o.id, o.topic, o.key, CASE WHEN r.clear THEN o.value END AS value, o.headers, r.clear
FROM ranked r JOIN outbox o USING (id)
WHERE r.clear OR r.relays
ORDER BY r.id
"""


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        service: str,
        batch_size: int = 500,
        topic_for: Callable[[str], str] = str,
        takeover_seconds: float | None = None,
    ) -> None:
        """`takeover_seconds`: None when no process publishes after commit (every row is the
        relay's); else how long a live publisher may hold a row before the relay takes it."""
        self._topic_for = topic_for
        self._takeover_seconds = takeover_seconds
        # Whether the last round left rows of the relay's waiting behind a publisher's.
        self.waiting_behind_publisher = False
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
                        pause = (
                            BEHIND_PUBLISHER_POLL_SECONDS
                            if self.waiting_behind_publisher
                            else FALLBACK_POLL_SECONDS
                        )
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), pause)
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
        if self._takeover_seconds is None:
            rows = await conn.fetch(_SELECT_ALL, self._batch_size)
        else:
            rows = await conn.fetch(
                _SELECT_TAKEABLE, self._batch_size, self._takeover_seconds, PUBLISHER_LOCK_CLASS
            )
        self.waiting_behind_publisher = any(not row["clear"] for row in rows)
        rows = [row for row in rows if row["clear"]][: self._batch_size]
        if not rows:
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
        to_park = {i: e for i, e in refused.items() if refused_for_good(e)}
        async with conn.transaction():
            if delivered:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", delivered)
            for row_id, reason in to_park.items():
                await park_row(conn, row_id, reason)
                self.parked += 1
        self.published += len(delivered)
        OUTBOX_PUBLISHED.labels(self._service).inc(len(delivered))
        if to_park:
            OUTBOX_PARKED.labels(self._service).set(await conn.fetchval("SELECT count(*) FROM outbox_parked"))
        retry = [e for i, e in refused.items() if i not in to_park]
        if retry:
            raise retry[0]  # a passing failure: the round is retried after a pause
        return len(delivered) + len(to_park)


async def park_row(conn: asyncpg.Connection, row_id: int, error: BaseException) -> None:
    """Move a row the broker refuses for good to `outbox_parked`, with the reason."""
    reason = f"{type(error).__name__}: {error}"[:2000]
    await conn.execute(
        "WITH moved AS (DELETE FROM outbox WHERE id = $1 RETURNING *)"
        " INSERT INTO outbox_parked (id, topic, key, value, headers, created_at, reason)"
        " SELECT id, topic, key, value, headers, created_at, $2 FROM moved",
        row_id,
        reason,
    )
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


def refused_for_good(error: BaseException) -> bool:
    return isinstance(error, _REFUSED_FOR_GOOD)
