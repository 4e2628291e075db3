"""The process around a service: database, migrations, topics, relay, consumers, background
loops. Each service's bootstrap module builds one of these; the HTTP app factory runs it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.events.topics import ALL_TOPICS
from libs.runtime.consumer import EventConsumer, GroupOffsets, sample_consumer_metrics
from libs.runtime.db import create_engine, ensure_database, migrate
from libs.runtime.group_commit import GroupCommitter
from libs.runtime.kafka import broker_security, create_topics, durable_producer
from libs.runtime.metrics import (
    BACKGROUND_TASK_DEAD,
    CONSUMER_STALLED,
    METRICS_SAMPLED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_SECONDS,
)
from libs.runtime.publisher import AfterCommitPublisher
from libs.runtime.relay import OutboxRelay
from libs.runtime.settings import RuntimeSettings
from libs.runtime.telemetry import configure_logging, configure_tracing
from libs.runtime.uow import (
    AggregateCache,
    IntegrationTranslator,
    MessageContext,
    Projector,
    Publication,
    UnitOfWork,
    publish_after_commit,
    publish_events,
    unit_of_work,
)

log = logging.getLogger(__name__)

_OUTBOX_BACKLOG = text(
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox"
)

BackgroundLoop = Callable[[], Awaitable[None]]
# Refreshes gauges from the service's database (the order service's stuck orders, say); run by
# the sampler every OM_METRICS_SAMPLE_SECONDS.
Sampler = Callable[[AsyncEngine], Awaitable[None]]
T = TypeVar("T")


@dataclass
class ServiceRuntime:
    name: str
    settings: RuntimeSettings
    migrations: Path | None = None
    projector: Projector | None = None
    # Derives the service's public messages from the events each unit of work records
    # (libs/runtime/uow.py); None: its published domain events go out as they are.
    integration: IntegrationTranslator | None = None
    engine: AsyncEngine = field(init=False)
    consumers: list[EventConsumer] = field(default_factory=list)
    background: list[BackgroundLoop] = field(default_factory=list)
    samplers: list[Sampler] = field(default_factory=list)
    run_relay: bool = True
    run_consumers: bool = True

    def __post_init__(self) -> None:
        self.run_consumers = self.run_consumers and self.settings.run_consumers
        self.engine = create_engine(self.settings, self.name)
        publish_events(self.engine, Publication(self.settings.public_events_only, self.integration))
        self.relay = OutboxRelay(
            self.settings.dsn(self.name),
            lambda: durable_producer(self.settings, f"{self.name}-relay"),
            self.name,
            self.settings.relay_batch_size,
            topic_for=self.settings.topic,
            takeover_seconds=(
                self.settings.outbox_takeover_seconds if self.settings.publish_after_commit else None
            ),
        )
        # Publishes the outbox rows of this process's transactions right after they commit;
        # the relay above then only picks up what a crash or an outage leaves.
        self.publisher = (
            AfterCommitPublisher(
                self.settings.dsn(self.name),
                lambda: durable_producer(self.settings, f"{self.name}-publisher"),
                self.name,
                topic_for=self.settings.topic,
            )
            if self.settings.publish_after_commit
            else None
        )
        self.broker = KafkaBroker(
            self.settings.kafka_bootstrap,
            client_id=f"ordermesh-{self.name}",
            acks="all",
            enable_idempotence=True,
            security=broker_security(self.settings),
            logger=None,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_tasks: dict[str, str] = {}
        self.started = False
        self._stopping = False
        self.cache = AggregateCache(max_bytes=self.settings.aggregate_cache_mb * 1024 * 1024)
        self.group_commit = GroupCommitter(self.unit_of_work)

    def add_consumer(self, consumer: EventConsumer) -> None:
        consumer.cache = self.cache
        self.consumers.append(consumer)

    def unit_of_work(self, context: MessageContext) -> AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(self.engine, context, projector=self.projector, cache=self.cache)

    async def execute(self, context: MessageContext, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run `action` in a unit of work (shared with concurrent commands: group commit),
        again on fresh state if a concurrent writer of the same aggregate committed first."""
        return await self.group_commit.execute(context, action)

    async def start(self) -> None:
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        configure_tracing(self.name, self.settings.otel_exporter)
        await ensure_database(self.settings, self.name)
        await migrate(self.engine, *([self.migrations] if self.migrations else []))
        await create_topics(
            self.settings,
            [self.settings.topic(t) for t in ALL_TOPICS]
            + [t for c in self.consumers for t in c.topics]
            + [c.dead_letter_topic for c in self.consumers],
            groups=[c.name for c in self.consumers] if self.run_consumers else [],
        )
        if self.publisher is not None:
            await self.publisher.start()
            publish_after_commit(self.engine, self.publisher)
        if self.run_relay:
            self._spawn(self.relay.run(), "relay")
        for loop in self.background:
            self._spawn(loop(), loop.__qualname__)
        self._spawn(self._watch(), "watchdog")
        self._spawn(self._sample(), "sampler")
        if self.run_consumers and self.consumers:
            for consumer in self.consumers:
                consumer.attach(self.broker)
            await self.broker.start()
            for consumer in self.consumers:
                consumer.consuming = True
        relax_cycle_collector(self.settings.gc_young_threshold)
        self.started = True
        log.info("%s started", self.name)

    async def stop(self) -> None:
        self.started = False
        self._stopping = True  # from here on, a background task that ends is not a death
        self.relay.stop()
        for consumer in self.consumers:
            consumer.consuming = False
        if self.run_consumers and self.consumers:
            await self.broker.stop()
        for consumer in self.consumers:
            await consumer.close()
        if self.publisher is not None:
            await self.publisher.stop()
            publish_after_commit(self.engine, None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sampler in self.samplers:
            close = getattr(sampler, "close", None)  # a sampler that holds a connection of its own
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        await self.engine.dispose()

    async def ready(self) -> dict[str, bool]:
        checks = {"started": self.started, "database": False, **self.progress_checks()}
        with contextlib.suppress(Exception):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                checks["database"] = True
        return checks

    def progress_checks(self) -> dict[str, bool]:
        """Whether the relay, every consumer and every background loop make progress."""
        return {name: problem is None for name, problem in self.stalls().items()}

    def stalls(self) -> dict[str, str | None]:
        now, after = time.monotonic(), self.settings.stall_seconds
        found: dict[str, str | None] = {}
        if self.run_relay:
            found["relay"] = self.relay.stalled(now, after) or self.dead_tasks.get("relay")
        if self.publisher is not None and self.started:
            found["publisher"] = self.publisher.problem()
        if self.run_consumers:
            for consumer in self.consumers:
                found[f"consumer:{consumer.name}"] = consumer.stalled(now, after)
        for loop in self.background:
            found[f"loop:{loop.__qualname__}"] = self.dead_tasks.get(loop.__qualname__)
        if self.started:
            found["sampler"] = self.dead_tasks.get("sampler")
        return found

    async def _sample(self) -> None:
        """Refresh the gauges that describe the loops from outside them, on a timer: outbox
        backlog and the age of its oldest row, consumer lag and DLQ depth per group (from the
        broker), and whatever the service adds (`samplers`). A failed round is logged and the
        next one tried; the timestamp metric says when a round last succeeded."""
        offsets: GroupOffsets | None = None
        try:
            while True:
                try:
                    if offsets is None and self.run_consumers and self.consumers:
                        offsets = GroupOffsets(self.settings)
                        await offsets.start()
                    await self.sample_once(offsets)
                    METRICS_SAMPLED.labels(self.name).set(time.time())
                except Exception:
                    log.warning("sampling metrics failed; trying again next round", exc_info=True)
                    if offsets is not None:
                        with contextlib.suppress(Exception):
                            await offsets.close()
                    offsets = None
                await asyncio.sleep(self.settings.metrics_sample_seconds)
        finally:
            if offsets is not None:
                with contextlib.suppress(Exception):
                    await offsets.close()

    async def sample_once(self, offsets: GroupOffsets | None) -> None:
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(_OUTBOX_BACKLOG)).one()
        OUTBOX_BACKLOG.labels(self.name).set(count)
        OUTBOX_OLDEST_SECONDS.labels(self.name).set(float(oldest))
        if offsets is not None:
            await sample_consumer_metrics(offsets, self.consumers)
        for sampler in self.samplers:
            await sampler(self.engine)

    async def _watch(self, every_seconds: float = 5.0) -> None:
        """Publish the progress checks as metrics, and log each change, so a stuck consumer or
        relay is seen on a dashboard and in the logs, not only by whoever calls /ready."""
        reported: dict[str, str | None] = {}
        while True:
            for name, problem in self.stalls().items():
                if name.startswith("consumer:"):
                    CONSUMER_STALLED.labels(name.removeprefix("consumer:")).set(problem is not None)
                if problem != reported.get(name) and (problem is None) != (reported.get(name) is None):
                    if problem is None:
                        log.info("%s makes progress again", name)
                    else:
                        log.error("%s makes no progress: %s", name, problem)
                reported[name] = problem
            await asyncio.sleep(every_seconds)

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"{self.name}:{name}")
        task.add_done_callback(lambda done: self._task_ended(name, done))
        self._tasks.append(task)

    def _task_ended(self, name: str, task: asyncio.Task[None]) -> None:
        """A background loop runs until the service stops; one that ends before is dead, and
        the service is not ready until it is restarted."""
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        self.dead_tasks[name] = f"died: {type(error).__name__}: {error}" if error else "ended"
        BACKGROUND_TASK_DEAD.labels(name).set(1)
        log.error("background task %s died", task.get_name(), exc_info=error)


def relax_cycle_collector(young_threshold: int) -> None:
    """Freeze what is alive now out of the cycle collector's view and let `young_threshold`
    allocations pass between its young-generation runs (0: leave Python's defaults)."""
    if young_threshold <= 0:
        return
    gc.freeze()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
