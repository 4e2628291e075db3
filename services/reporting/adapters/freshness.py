"""How far behind its sources the reporting read models are, per public topic.

Messages behind: the topic's end offsets minus the reporting consumer group's committed
offsets (asked of the broker). Seconds behind: 0 when no message is left to apply, else the
age of the newest event applied from the topic (source_positions), an upper bound of how old
the read models' view of that topic is; None while nothing of a topic with messages has been
applied yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.runtime.kafka import admin_client, client_security
from libs.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

REPORTING_LAG_SECONDS = Gauge(
    "reporting_lag_seconds",
    "How far the reporting read models are behind a source topic (0: every message applied)",
    ["topic"],
)
REPORTING_LAG_MESSAGES = Gauge(
    "reporting_lag_messages", "Messages of a source topic the reporting consumer has not applied", ["topic"]
)


@dataclass(frozen=True)
class SourceFreshness:
    topic: str
    messages_behind: int
    lag_seconds: float | None
    events_applied: int
    last_event_at: datetime | None
    last_applied_at: datetime | None


class FreshnessMonitor:
    """Asks the broker and the reporting database where the reporting consumer stands."""

    def __init__(self, settings: RuntimeSettings, engine: AsyncEngine, group: str, topics: list[str]) -> None:
        self.settings = settings
        self.engine = engine
        self.group = group
        self.topics = topics  # not namespaced: as source_positions names them
        self._offsets: AIOKafkaConsumer | None = None
        self._admin: Any = None
        self._lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaConsumer, Any]:
        if self._offsets is None or self._admin is None:
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=None,
                enable_auto_commit=False,
                **client_security(self.settings),
            )
            admin = admin_client(self.settings)
            await offsets.start()
            await admin.start()
            self._offsets, self._admin = offsets, admin
        return self._offsets, self._admin

    async def close(self) -> None:
        offsets, admin, self._offsets, self._admin = self._offsets, self._admin, None, None
        with contextlib.suppress(Exception):
            if offsets is not None:
                await offsets.stop()
        with contextlib.suppress(Exception):
            if admin is not None:
                await admin.close()

    async def messages_behind(self) -> dict[str, int]:
        async with self._lock:
            try:
                offsets, admin = await self._clients()
                described = await admin.describe_topics([self.settings.topic(t) for t in self.topics])
                partitions = [
                    TopicPartition(topic["topic"], partition["partition"])
                    for topic in described
                    if topic["error_code"] == 0
                    for partition in topic["partitions"]
                ]
                ends = await offsets.end_offsets(partitions)
                committed = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
            except Exception:
                await self.close()  # a broken client: a new one next time
                raise
        behind = dict.fromkeys(self.topics, 0)
        for tp, end in ends.items():
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            behind[tp.topic.removeprefix(self.settings.topic_namespace)] += max(end - position, 0)
        return behind

    async def sources(self) -> list[SourceFreshness]:
        behind = await self.messages_behind()
        async with self.engine.connect() as conn:
            rows = {
                row.topic: row
                for row in await conn.execute(
                    text("SELECT topic, events, last_occurred_at, last_applied_at FROM source_positions")
                )
            }
        now = datetime.now(UTC)
        found = []
        for topic in self.topics:
            row = rows.get(topic)
            messages = behind.get(topic, 0)
            if messages == 0:
                lag: float | None = 0.0
            elif row is None:
                lag = None
            else:
                lag = max((now - row.last_occurred_at).total_seconds(), 0.0)
            found.append(
                SourceFreshness(
                    topic,
                    messages,
                    lag,
                    row.events if row is not None else 0,
                    row.last_occurred_at if row is not None else None,
                    row.last_applied_at if row is not None else None,
                )
            )
        return found

    async def publish_metrics(self, every_seconds: float = 5.0) -> None:
        """A background loop: reporting_lag_seconds and reporting_lag_messages per topic."""
        try:
            while True:
                try:
                    for source in await self.sources():
                        REPORTING_LAG_MESSAGES.labels(source.topic).set(source.messages_behind)
                        if source.lag_seconds is not None:
                            REPORTING_LAG_SECONDS.labels(source.topic).set(source.lag_seconds)
                except Exception as error:  # the broker away for a moment: try again next round
                    log.warning("reporting freshness not measured: %s", error)
                await asyncio.sleep(every_seconds)
        finally:
            await self.close()
