"""python -m services.reporting.rebuild: the reporting read models again from scratch, by
replaying every public events topic from offset 0.

It runs in ONE transaction on the reporting database, so readers and the live consumer see
either the old read models or the new ones, never half of each:

1. Lock the read-model tables and the inbox (the reporting consumer's next batch, and any
   report, waits until the rebuild commits), empty them, and note each source partition's
   end offset: everything up to there is replayed, everything after is the consumer's.
2. Read every source topic from its first offset to that end, and apply each event with the
   consumer's own projections (adapters/projections.py), thousands of events per flush, with
   inbox rows marking as applied the events the live consumer may still read (those from its
   group's committed offsets on; it never reads an earlier record again).
3. Commit; then, if the reporting service is stopped (its consumer group has no members),
   move the group's offsets to where the replay ended, so the service starts from there. A
   running service keeps its offsets: the events it reads again are duplicates its inbox drops.

The topics keep their history for this (retention.ms=-1 on the events topics: README.md,
deploy/k8s/kafka-topics.yaml). Undecodable records are skipped (the live consumer sent them
to its dead-letter topic) and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from libs.events import DecodeError
from libs.events.codec import decode_fast
from libs.runtime import inbox
from libs.runtime.db import create_engine, ensure_database, migrate
from libs.runtime.kafka import admin_client, client_security
from libs.runtime.settings import RuntimeSettings
from libs.runtime.writes import WriteBatch
from services.reporting.adapters import fact_rows
from services.reporting.adapters.projections import PROJECTIONS, project
from services.reporting.bootstrap import CONSUMER, MIGRATIONS, NAME, SOURCE_TOPICS

log = logging.getLogger(__name__)

# Read-model tables the replay fills (every table of migrations/0001_*.sql).
READ_MODELS = (
    "customers",
    "products",
    "warehouses",
    "orders",
    "order_lines",
    "order_status_changes",
    "order_allocations",
    "order_shortages",
    "invoices",
    "invoice_lines",
    "payments",
    "refunds",
    "credit_notes",
    "stock_movements",
    "shipments",
    "production_orders",
    "source_positions",
)
EVENTS_PER_FLUSH = 5000
FETCH_RECORDS = 5000
# Allocations between two young-generation collections during the replay (Python's default is
# 700): see _collector_relaxed.
REPLAY_COLLECTION_THRESHOLD = 200_000
YIELD_EVERY = 200
HANDLED_TYPES = {model.message_type.encode() for model in PROJECTIONS}

Progressed = Callable[[int], None]


@dataclass(frozen=True)
class RebuildResult:
    records: int  # records read from the topics
    events: int  # of those, events applied to the read models
    skipped: int  # undecodable records (the live consumer dead-lettered them)
    seconds: float
    offsets_moved: bool

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _wanted(record: ConsumerRecord[bytes, bytes]) -> bool:
    """As the live consumer does: a record whose event_type header names a type reporting does
    not project is skipped without decoding."""
    for key, value in record.headers or ():
        if key == "event_type":
            return value in HANDLED_TYPES
    return True


async def source_end_offsets(
    settings: RuntimeSettings, reader: AIOKafkaConsumer
) -> dict[TopicPartition, int]:
    """The end offset of every partition of the public topics reporting reads."""
    admin = admin_client(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic(t) for t in SOURCE_TOPICS])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    ]
    return dict(await reader.end_offsets(partitions))


async def _committed_offsets(settings: RuntimeSettings, group: str) -> dict[TopicPartition, int]:
    """Where the live consumer group will read from next, per partition (none: from the start)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}


async def _replay(
    db: asyncpg.Connection,
    reader: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    claim_from: dict[TopicPartition, int],
    group: str,
    progressed: Progressed,
) -> tuple[int, int, int]:
    """Apply every record up to `ends`; returns (records, events, skipped). The inbox rows go
    only to records at or after `claim_from`, the live consumer's committed offsets: it never
    reads a record before them again, so only the later ones could reach it twice."""
    pending = {tp for tp, end in ends.items() if end > 0}
    reader.assign(list(pending))
    if pending:
        await reader.seek_to_beginning(*pending)
    writer = _Writer(db, group)
    writes, claimed = WriteBatch(), list[UUID]()
    records = events = skipped = in_batch = 0

    try:
        while pending:
            fetched = await reader.getmany(*pending, timeout_ms=1000, max_records=FETCH_RECORDS)
            before = records
            for tp, batch in fetched.items():
                end, claimed_from = ends[tp], claim_from.get(tp, 0)
                for record in batch:
                    if record.offset >= end:
                        break
                    records += 1
                    if records % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    if not _wanted(record):
                        continue
                    try:
                        decoded = decode_fast(record.value or b"")
                    except DecodeError:
                        skipped += 1
                        continue
                    if type(decoded.message) not in PROJECTIONS:
                        continue
                    project(writes, decoded.envelope, decoded.message)
                    if record.offset >= claimed_from:
                        claimed.append(decoded.envelope.event_id)
                    events += 1
                    in_batch += 1
                if batch and (batch[-1].offset + 1 >= end):
                    pending.discard(tp)
                    reader.pause(tp)
            progressed(records - before)
            if in_batch >= EVENTS_PER_FLUSH:
                await writer.write(writes, claimed)
                writes, claimed, in_batch = WriteBatch(), [], 0
            # A partition whose last records are transaction markers or compacted away never
            # shows a record at end - 1: its position says it is done.
            for tp in list(pending):
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
        await writer.write(writes, claimed)
        await writer.wait()
    except BaseException:
        # The transaction is rolled back: let the batch being written finish with it first.
        with contextlib.suppress(Exception):
            await writer.wait()
        raise
    return records, events, skipped


class _Writer:
    """Writes one batch of the replay while the next is read and decoded. Batches are written
    one after another on the one connection, so a later batch's writes to a row follow the
    earlier batch's; what overlaps is the database's work with the decoding."""

    def __init__(self, db: asyncpg.Connection, group: str) -> None:
        self.db = db
        self.group = group
        self.running: asyncio.Future[None] | None = None

    async def write(self, writes: WriteBatch, claimed: list[UUID]) -> None:
        await self.wait()
        self.running = asyncio.ensure_future(self._flush(writes, claimed))

    async def wait(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            await running

    async def _flush(self, writes: WriteBatch, claimed: list[UUID]) -> None:
        await fact_rows.flush(writes, self.db)
        if claimed:
            await inbox.claim_all(self.db, self.group, claimed)


async def _move_group_offsets(settings: RuntimeSettings, group: str, ends: dict[TopicPartition, int]) -> bool:
    """Point the (empty) consumer group at where the replay ended. False, and nothing moved,
    while the service's consumer is a member: it keeps its own offsets."""
    if await group_has_members(settings, group):
        return False
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **client_security(settings),
    )
    await committer.start()
    try:
        committer.assign(list(ends))
        await committer.commit({tp: end for tp, end in ends.items() if end > 0})
        return True
    except KafkaError as error:
        log.info("consumer group %s kept its offsets (a member is running): %s", group, error)
        return False
    finally:
        await committer.stop()


async def group_has_members(settings: RuntimeSettings, group: str) -> bool:
    admin = admin_client(settings)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return any(g["members"] for response in described for g in response.to_object()["groups"])


async def rebuild(settings: RuntimeSettings, progress: bool = True) -> RebuildResult:
    """Empty the reporting read models and replay every public events topic into them."""
    await ensure_database(settings, NAME)
    engine = create_engine(settings, NAME)
    try:
        await migrate(engine, MIGRATIONS)
    finally:
        await engine.dispose()
    group = settings.topic(CONSUMER)
    db = await asyncpg.connect(
        settings.dsn(NAME),
        # Between two fetches the transaction is idle; the service's default would end it.
        server_settings={"idle_in_transaction_session_timeout": "0"},
    )
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **client_security(settings),
    )
    await reader.start()
    started = time.perf_counter()
    try:
        async with db.transaction():
            tables = ", ".join(READ_MODELS)
            await db.execute(f"LOCK TABLE inbox, {tables} IN ACCESS EXCLUSIVE MODE")
            await db.execute(f"TRUNCATE {tables}")
            await db.execute("DELETE FROM inbox WHERE consumer = $1", group)
            # After the lock: every event the live consumer applied lies before these ends.
            ends = await source_end_offsets(settings, reader)
            # Also after the lock: a batch the live consumer committed to the database but not
            # yet to Kafka lies after these offsets, so its events get their inbox rows.
            claim_from = await _committed_offsets(settings, group)
            total = sum(ends.values())
            with _progress_bar(progress, total) as advance, _collector_relaxed():
                records, events, skipped = await _replay(db, reader, ends, claim_from, group, advance)
        seconds = time.perf_counter() - started
    finally:
        await reader.stop()
        await db.close()
    moved = await _move_group_offsets(settings, group, ends)
    return RebuildResult(records, events, skipped, seconds, moved)


@contextlib.contextmanager
def _collector_relaxed() -> Iterator[None]:
    """Python's cycle collector, run far less often during the replay. The replay keeps tens
    of thousands of objects alive (the fetched records, the rows waiting for their flush) and
    allocates many more per event, so the default thresholds start a collection every few
    hundred events that walks all of them, to find cycles the replay does not make: measured,
    that was about 40% of the replaying process's CPU (docs/performance.md). Objects alive
    before the replay are frozen out of the collector's view; cycles are still collected, in
    rarer passes, and the defaults come back afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(REPLAY_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _progress_bar:  # noqa: N801 - used as a context manager, named like one
    """A rich progress bar over the records to replay (or nothing, quietly)."""

    def __init__(self, shown: bool, total: int) -> None:
        self.progress = (
            Progress(
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:,.0f} records/s"),
                TimeRemainingColumn(),
            )
            if shown
            else None
        )
        self.total = total
        self.started = time.perf_counter()
        self.done = 0

    def __enter__(self) -> Progressed:
        if self.progress is None:
            return lambda _: None
        self.progress.start()
        task = self.progress.add_task("replay", total=self.total, rate=0.0)
        progress = self.progress

        def advance(records: int) -> None:
            self.done += records
            elapsed = time.perf_counter() - self.started
            progress.update(task, advance=records, rate=self.done / elapsed if elapsed > 0 else 0.0)

        return advance

    def __exit__(self, *_: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = asyncio.run(rebuild(RuntimeSettings(), progress=not arguments.quiet))
    print(
        f"replayed {result.records:,} records ({result.events:,} events applied, {result.skipped:,}"
        f" undecodable skipped) in {result.seconds:.1f}s: {result.records_per_second:,.0f} records/s;"
        + (
            " consumer group moved to the end of the replay"
            if result.offsets_moved
            else " the running service's consumer kept its offsets"
        )
    )


if __name__ == "__main__":
    main()
