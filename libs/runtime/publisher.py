"""Publish after commit: the process that committed outbox rows publishes them itself, right
after the commit, instead of every row waiting for the relay's NOTIFY, SELECT and DELETE round.
The relay (libs/runtime/relay.py) stays as the safety net for what a crash or an outage leaves.

Guarantees, together with the relay:
- Nothing lost. A row leaves the outbox only after the broker acknowledged it. Until then it is
  owned either by a live publisher, which sends it, or by the relay.
- Duplicates only after a crash (or a publisher stalled past OM_OUTBOX_TAKEOVER_SECONDS, or a
  lost database session): a process that dies between the broker's acknowledgement and its
  delete leaves the rows to the relay, which sends them again; consumers' inboxes drop them.
- Order per key. Rows of one key reach Kafka in commit order, also when writers in different
  processes (two replicas, an HTTP command and a consumer) write the key one after the other,
  and when the relay picks up rows a publisher held. Where a row is sent twice (the cases
  above), the first copies are in order and consumers drop the later ones.

How:
- Liveness. Each process holds a session advisory lock (PUBLISHER_LOCK_CLASS, its publisher
  id) on a connection of its own. The server drops it when the process dies or loses that
  connection, and the relay then takes the process's rows at once.
- Claiming. A row is written with `publisher` = this process's id only if no earlier row of its
  key is still in the outbox under anyone else (another process, or the relay: NULL); else it
  is the relay's, which sends rows in id order. A later writer of a key can act on an earlier
  write only after that write committed, so the check (in the INSERT, libs/runtime/outbox.py)
  sees the earlier row if it is still waiting.
- In-process order. A unit of work reserves its place before its COMMIT (`reserve`); committed
  rows are sent in reservation order among reservations that share a key, by one sender task
  on one idempotent producer (so within a partition in that order). A later writer of the
  key in this process reads the earlier write only after that COMMIT, so after its reservation.
- The relay takes a row that is its own, or whose publisher's lock is gone, or that is older
  than the takeover grace; never a row behind an earlier row of its key it may not take.
- Failure. A delivery that fails hands every row this process still holds back to the relay
  (`publisher` = NULL), and the process claims nothing until that is written and a pause has
  passed. The hand-back starts a new epoch: a row claimed in an older epoch (its INSERT may not
  have seen the hand-back) is handed back too, never sent, so it cannot overtake the rows it
  follows. A commit whose outcome is unknown hands its rows back the same way.
- Deletes of delivered rows are batched: one statement for whatever was acknowledged since
  the last one, on the publisher's connection, off the commit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.runtime import faults
from libs.runtime.metrics import (
    HANDED_BACK,
    OUTBOX_PUBLISHED,
    PUBLISH_AFTER_COMMIT_SECONDS,
    PUBLISHED_AFTER_COMMIT,
)
from libs.runtime.outbox import NOTIFY_CHANNEL, OutboxRow
from libs.runtime.relay import park_row, refused_for_good

log = logging.getLogger(__name__)

PUBLISHER_LOCK_CLASS = 7463004
# Rows held (reserved, queued or awaiting the broker) above which new rows are left to the
# relay: memory stays bounded while the broker is slow.
MAX_HELD_ROWS = 20_000
MAX_PAUSE_SECONDS = 5.0


@dataclass(frozen=True)
class Claim:
    """Who claims the rows a unit of work is about to write, and in which epoch."""

    owner: int
    epoch: int


@dataclass
class Reservation:
    """The rows of one transaction, from just before its COMMIT until they are sent."""

    rows: list[OutboxRow]
    epoch: int
    keys: frozenset[str] = field(init=False)
    committed_at: float | None = None

    def __post_init__(self) -> None:
        self.keys = frozenset(row.key for row in self.rows)


class AfterCommitPublisher:
    def __init__(
        self,
        dsn: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        service: str,
        topic_for: Callable[[str], str] = str,
    ) -> None:
        self._dsn = dsn
        self._producer_factory = producer_factory
        self._service = service
        self._topic_for = topic_for
        self.owner = _new_owner_id()
        self.epoch = 0
        self._conn: asyncpg.Connection | None = None
        self._producer: AIOKafkaProducer | None = None
        self._locked = False
        self._running = False
        self._reserved: list[Reservation] = []  # in reservation order
        self._ready: asyncio.Queue[Reservation] = asyncio.Queue()
        self._held = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._to_delete: list[int] = []
        self._to_park: dict[int, BaseException] = {}
        self._to_hand_back: list[int] = []
        self._marks_due = asyncio.Event()
        # Claiming resumes at this monotonic time (None: not before a hand-back is written).
        self._claim_from: float | None = 0.0
        self._pause = 0.1
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.handed_back = 0

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._producer = self._producer_factory()
        await self._producer.start()
        await self._connect()
        self._running = True
        self._tasks = [
            asyncio.create_task(self._send_loop(), name=f"{self._service}:publisher-send"),
            asyncio.create_task(self._mark_loop(), name=f"{self._service}:publisher-marks"),
        ]

    async def _connect(self) -> None:
        """Open the publisher's connection and take its liveness lock (a new id if, unlikely,
        another process holds this one)."""
        conn = await asyncpg.connect(self._dsn)
        take_lock = "SELECT pg_try_advisory_lock($1, $2)"
        while not await conn.fetchval(take_lock, PUBLISHER_LOCK_CLASS, self.owner):
            self.owner = _new_owner_id()
        conn.add_termination_listener(self._connection_lost)
        self._conn, self._locked = conn, True

    def _connection_lost(self, _conn: object) -> None:
        self._locked = False  # the server let the lock go: claim nothing until it is back
        self._marks_due.set()

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop claiming, send what was claimed (for at most `drain_seconds`), write the marks,
        and let go: what is left is the relay's once the lock is released."""
        self._claim_from = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), drain_seconds)
        self._running = False
        self._marks_due.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._write_marks()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2)
        self._locked = False

    async def _drained(self) -> None:
        while self._held or self._in_flight:
            await asyncio.wait([*self._in_flight] or [asyncio.ensure_future(asyncio.sleep(0.01))])

    # -- the unit of work's side ------------------------------------------------------------

    def problem(self) -> str | None:
        """Why this publisher cannot publish (a task of it died), or None."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                return f"{task.get_name()} died: {task.exception()!r}"
        return None

    def claim(self) -> Claim | None:
        """The claim for rows written now, or None to leave them to the relay (stopped, lock
        lost, a hand-back pending or just done, too much held, a task of it dead)."""
        if not (self._running and self._locked) or self._claim_from is None or self.problem():
            return None
        if time.monotonic() < self._claim_from or self._held >= MAX_HELD_ROWS:
            return None
        return Claim(self.owner, self.epoch)

    def reserve(self, rows: Sequence[OutboxRow], epoch: int) -> Reservation:
        """Take a place in line; called just before the COMMIT of the transaction that wrote
        `rows` (claimed in `epoch`)."""
        reservation = Reservation(list(rows), epoch)
        self._reserved.append(reservation)
        self._held += len(reservation.rows)
        return reservation

    def committed(self, reservation: Reservation) -> None:
        reservation.committed_at = time.monotonic()
        self._release_in_order()

    def commit_failed(self, reservation: Reservation) -> None:
        """The COMMIT failed: the rows may or may not exist. Hand them back (a no-op for rows
        that were rolled back), so a later row of their keys cannot overtake them."""
        self._reserved.remove(reservation)
        self._held -= len(reservation.rows)
        self._hand_back([row.id for row in reservation.rows])
        self._release_in_order()

    def _release_in_order(self) -> None:
        """Queue for sending every committed reservation no earlier one shares a key with."""
        waiting: set[str] = set()
        kept: list[Reservation] = []
        for reservation in self._reserved:
            if reservation.committed_at is None or reservation.keys & waiting:
                waiting |= reservation.keys
                kept.append(reservation)
            else:
                self._ready.put_nowait(reservation)
        self._reserved = kept

    # -- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("the publisher was not started")
        while True:
            reservation = await self._ready.get()
            self._held -= len(reservation.rows)
            if reservation.epoch < self.epoch:
                self._hand_back([row.id for row in reservation.rows], new_epoch=False)
                continue
            sent: list[tuple[OutboxRow, asyncio.Future[object]]] = []
            failed: dict[int, BaseException] = {}
            for row in reservation.rows:
                try:
                    delivery = await producer.send(
                        self._topic_for(row.topic),
                        value=row.value,
                        key=row.key.encode(),
                        headers=[(k, str(v).encode()) for k, v in row.headers.items()],
                    )
                except KafkaError as refusal:  # refused before sending: too large, say
                    failed[row.id] = refusal
                    continue
                sent.append((row, delivery))
            task = asyncio.create_task(self._settle(reservation, sent, failed))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _settle(
        self,
        reservation: Reservation,
        sent: list[tuple[OutboxRow, asyncio.Future[object]]],
        failed: dict[int, BaseException],
    ) -> None:
        outcomes = await asyncio.gather(*(delivery for _, delivery in sent), return_exceptions=True)
        faults.crash_point(faults.AFTER_PUBLISH_BEFORE_OUTBOX_MARK)
        delivered = []
        for (row, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed[row.id] = outcome
            else:
                delivered.append(row.id)
        if delivered:
            self._to_delete.extend(delivered)
            self.published += len(delivered)
            # The total counts every row published, whoever published it (dashboards and
            # the bench's events per order read it); the other says how many took this path.
            OUTBOX_PUBLISHED.labels(self._service).inc(len(delivered))
            PUBLISHED_AFTER_COMMIT.labels(self._service).inc(len(delivered))
            if reservation.committed_at is not None:
                PUBLISH_AFTER_COMMIT_SECONDS.labels(self._service).observe(
                    time.monotonic() - reservation.committed_at
                )
        for row_id, error in failed.items():
            if refused_for_good(error):
                self._to_park[row_id] = error
        passing = [row_id for row_id, error in failed.items() if not refused_for_good(error)]
        if passing:
            log.warning(
                "publishing after commit failed (%s); %d rows handed to the relay",
                type(failed[passing[0]]).__name__,
                len(passing),
            )
            self._hand_back(passing)
        elif delivered:
            self._pause = 0.1
        self._marks_due.set()

    def _hand_back(self, row_ids: list[int], new_epoch: bool = True) -> None:
        """Leave these rows to the relay. A new epoch (a failure, not the rows of an older one
        following) stops claiming until the hand-back is written, and rows claimed before
        are handed back rather than sent."""
        self._to_hand_back.extend(row_ids)
        if new_epoch:
            self.epoch += 1
            self._claim_from = None
        self._marks_due.set()

    # -- marks: deletes, hand-backs, parked rows -----------------------------------------

    async def _mark_loop(self) -> None:
        pause = 0.1
        while True:
            await self._marks_due.wait()
            self._marks_due.clear()
            try:
                await self._write_marks()
                pause = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("publisher could not mark outbox rows; retrying in %.1fs", pause, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                self._marks_due.set()
            await self._reconnect()

    async def _write_marks(self) -> None:
        if not (self._to_hand_back or self._to_delete or self._to_park):
            return
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ConnectionError("publisher connection closed")
        if self._to_hand_back:
            ids = list(self._to_hand_back)
            async with conn.transaction():
                await conn.execute(
                    "UPDATE outbox SET publisher = NULL WHERE id = ANY($1::bigint[]) AND publisher = $2",
                    ids,
                    self.owner,
                )
                await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
            del self._to_hand_back[: len(ids)]
            self.handed_back += len(ids)
            HANDED_BACK.labels(self._service).inc(len(ids))
            if self._claim_from is None and self._running:
                self._claim_from = time.monotonic() + self._pause
                self._pause = min(self._pause * 2, MAX_PAUSE_SECONDS)
        if self._to_delete:
            ids = list(self._to_delete)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
            del self._to_delete[: len(ids)]
        for row_id, reason in list(self._to_park.items()):
            await park_row(conn, row_id, reason)
            del self._to_park[row_id]

    async def _reconnect(self) -> None:
        """A lost connection is a lost lock: claim nothing until it is held again (the relay
        may take the rows held meanwhile; sending them too only duplicates them)."""
        if not self._running or (self._conn is not None and not self._conn.is_closed()):
            return
        self._locked = False
        try:
            await self._connect()
        except Exception:
            log.warning("publisher could not reconnect to the database", exc_info=True)
            await asyncio.sleep(1.0)
            self._marks_due.set()


def _new_owner_id() -> int:
    """A positive int4: the second key of the liveness lock and the rows' `publisher`."""
    return 1 + secrets.randbelow(2**31 - 1)
