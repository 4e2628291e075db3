"""Who creates the topics: the local platform creates them with the configured replication
factor; with OM_KAFKA_CREATE_TOPICS=false (deploy/k8s, where Strimzi's KafkaTopic resources
own them) a service creates none and only waits for them to be served."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from libs.runtime import kafka
from libs.runtime.kafka import admin_client, create_topics
from libs.runtime.settings import RuntimeSettings
from tests.conftest import unique_topic

pytestmark = pytest.mark.integration


async def replicas_of(settings: RuntimeSettings, topic: str) -> list[int]:
    """Replicas of each partition; [] when the topic does not exist. Listed before described:
    a metadata request naming a missing topic makes the local broker create it
    (auto.create.topics.enable), which would hide what the service did."""
    admin = admin_client(settings)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [len(partition["replicas"]) for partition in described["partitions"]]


class WaitRecorder:
    """Stands in for wait_until_serving: its metadata requests would make the local broker
    auto-create the topic the test checks was not created."""

    def __init__(self) -> None:
        self.waited_for: list[str] = []

    async def __call__(
        self, admin: AIOKafkaAdminClient, names: Iterable[str], groups: Iterable[str] = ()
    ) -> None:
        self.waited_for += list(names)


async def test_a_service_creates_missing_topics_with_the_configured_replication_factor(
    settings: RuntimeSettings,
) -> None:
    one = settings.model_copy(update={"topic_replication_factor": 1})
    topic = unique_topic("rf1")

    assert await create_topics(one, [topic]) == [topic]

    assert await replicas_of(settings, topic) == [1] * settings.topic_partitions


async def test_a_replication_factor_the_cluster_cannot_meet_creates_nothing_rather_than_less(
    settings: RuntimeSettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The local broker is one node: asking for three replicas must not quietly give one.
    three = settings.model_copy(update={"topic_replication_factor": 3})
    topic = unique_topic("rf3")
    monkeypatch.setattr(kafka, "wait_until_serving", WaitRecorder())

    with caplog.at_level(logging.ERROR, logger="libs.runtime.kafka"):
        assert await create_topics(three, [topic]) == []

    assert await replicas_of(settings, topic) == []
    assert any(topic in record.getMessage() for record in caplog.records)


async def test_with_topic_creation_off_a_service_creates_no_topic(
    settings: RuntimeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform_owned = settings.model_copy(update={"kafka_create_topics": False})
    topic = unique_topic("owned-by-the-platform")
    waits = WaitRecorder()
    monkeypatch.setattr(kafka, "wait_until_serving", waits)

    assert await create_topics(platform_owned, [topic]) == []

    assert await replicas_of(settings, topic) == []
    assert waits.waited_for == [topic], "it still waits until the platform's topic is served"
