"""Kafka plumbing shared by the relay, the consumers and the tests: producer and topic admin."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from libs.events import topics
from libs.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


def durable_producer(settings: RuntimeSettings, client_id: str) -> AIOKafkaProducer:
    """acks=all with idempotence: a retried send is written once and in order per partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


async def create_topics(settings: RuntimeSettings, names: Iterable[str] = topics.ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet, with the configured partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics([NewTopic(n, settings.topic_partitions, 1) for n in missing])
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()
