"""make bench counts what was published on each topic from the topics' end offsets: the
events-per-order figure the public/private split is judged by (docs/performance.md)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from libs.events.topics import BILLING_EVENTS, ORDER_EVENTS
from libs.runtime.kafka import create_topics
from libs.runtime.settings import RuntimeSettings
from tools.bench import topic_ends

pytestmark = pytest.mark.integration


async def test_topic_ends_count_what_was_published_on_each_namespaced_topic() -> None:
    settings = RuntimeSettings(topic_namespace=f"tc{uuid4().hex[:6]}.", topic_partitions=3)
    await create_topics(settings, [settings.topic(ORDER_EVENTS), settings.topic(BILLING_EVENTS)])
    before = await topic_ends(settings)

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(5):  # keys spread over the partitions: every partition's end counts
            await producer.send_and_wait(settings.topic(ORDER_EVENTS), b"{}", key=f"order-{n}".encode())
        await producer.send_and_wait(settings.topic(BILLING_EVENTS), b"{}", key=b"invoice-1")
    finally:
        await producer.stop()

    after = await topic_ends(settings)
    published = {topic: after[topic] - before[topic] for topic in after if after[topic] != before[topic]}
    assert published == {ORDER_EVENTS: 5, BILLING_EVENTS: 1}
