"""Kafka plumbing shared by the relay, the consumers and the tests: client security, producer,
topic admin, and waiting for the broker to serve what a service is about to use."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from libs.events import topics
from libs.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)
# How long a starting service waits for the broker to serve its topics and groups.
SERVING_TIMEOUT_SECONDS = 60.0
# What aiokafka logs at ERROR while a consumer starts and the broker is still settling what
# the service just asked of it, and retries until it works (see expect_startup_noise).
STARTUP_NOISE = (
    "NotLeaderForPartitionError",
    "LeaderNotAvailableError",
    "GroupCoordinatorNotAvailableError",
    "CoordinatorNotAvailableError",
    "CoordinatorLoadInProgressError",
    "NotCoordinatorForGroupError",
    "not found in cluster metadata",
)
STARTUP_NOISE_LOGGERS = (
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.cluster",
)


def client_security(settings: RuntimeSettings) -> dict[str, Any]:
    """The aiokafka keyword arguments that make a client connect as OM_KAFKA_SECURITY_PROTOCOL
    says; pass them to every AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        # Verifies the broker's certificate and host name; with no CA file, the system CAs.
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def broker_security(settings: RuntimeSettings) -> BaseSecurity | None:
    """The same connection security for a FastStream KafkaBroker (which takes an object)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    use_ssl = protocol in ("SSL", "SASL_SSL")
    ssl_context = create_ssl_context(cafile=settings.kafka_ssl_cafile or None) if use_ssl else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    sasl = {
        "SCRAM-SHA-512": SASLScram512,
        "SCRAM-SHA-256": SASLScram256,
        "PLAIN": SASLPlaintext,
    }[settings.kafka_sasl_mechanism]
    return sasl(
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=ssl_context,
        use_ssl=use_ssl,
    )


def durable_producer(settings: RuntimeSettings, client_id: str) -> AIOKafkaProducer:
    """acks=all with idempotence: a retried send is written once and in order per partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        **client_security(settings),
    )


def admin_client(settings: RuntimeSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **client_security(settings))


async def create_topics(
    settings: RuntimeSettings, names: Iterable[str] = topics.ALL_TOPICS, groups: Iterable[str] = ()
) -> list[str]:
    """Create the topics that do not exist yet, with the configured partition count, and
    return those created; then wait until the broker serves every named topic and can
    coordinate every named consumer group (`wait_until_serving`).

    With OM_KAFKA_CREATE_TOPICS=false nothing is created: the topics belong to the platform
    (deploy/k8s: the KafkaTopic resources), and a service creating one would race the Topic
    Operator with settings it does not know (replicas, min.insync.replicas).

    A client whose ACLs grant no Create (deploy/k8s: the Topic Operator declares every topic)
    sees only the topics it may describe and is refused the others: that is logged, not
    raised, because the topics it uses exist already and the rest are not its business.
    """
    names = list(dict.fromkeys(names))
    admin = admin_client(settings)
    await admin.start()
    try:
        created = await _create_missing(admin, settings, names) if settings.kafka_create_topics else []
        await wait_until_serving(admin, names, groups)
        return created
    finally:
        await admin.close()


# The public events topics keep their whole history: a reader replays them from offset 0 to
# build its read models again (python -m services.reporting.rebuild). deploy/k8s declares the
# same in kafka-topics.yaml.
HISTORY_TOPICS = (
    topics.ORDER_EVENTS,
    topics.INVENTORY_EVENTS,
    topics.BILLING_EVENTS,
    topics.PRODUCTION_EVENTS,
)


def topic_configs(settings: RuntimeSettings, name: str) -> dict[str, str]:
    """The settings a topic is created with: unlimited retention for the history topics."""
    kept = {settings.topic(topic) for topic in HISTORY_TOPICS}
    return {"retention.ms": "-1"} if name in kept else {}


async def _create_missing(
    admin: AIOKafkaAdminClient, settings: RuntimeSettings, names: list[str]
) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    replicas = settings.topic_replication_factor
    response = await admin.create_topics(
        [
            NewTopic(n, settings.topic_partitions, replicas, topic_configs=topic_configs(settings, n))
            for n in missing
        ]
    )
    created, refused = list(missing), []
    for topic, code, *_ in response.topic_errors:
        if code == 0:
            continue
        created.remove(topic)
        error = for_code(code)
        if error is TopicAlreadyExistsError:  # another process won the race
            continue
        if error is TopicAuthorizationFailedError:
            refused.append(topic)
        else:
            log.error("could not create topic %s: %s", topic, error.__name__)
    if created:
        log.info("created topics %s", created)
    if refused:
        log.info("not allowed to create topics %s: they must be declared on the cluster", refused)
    return created


async def wait_until_serving(
    admin: AIOKafkaAdminClient,
    names: Iterable[str],
    groups: Iterable[str] = (),
    timeout: float = SERVING_TIMEOUT_SECONDS,
) -> None:
    """Wait until every partition of these topics has a leader and the broker names a
    coordinator for each of these consumer groups.

    A consumer started before that meets the broker mid-way: topics it just created are not
    in the metadata yet, their partitions have no leader, and the group coordinator is not
    available while the broker loads (or, on a new broker, creates) its offsets topic. The
    client retries and gets there, but logs each attempt at ERROR: every clean start printed
    lines that looked like faults. Waiting here first keeps ERROR for real ones. A topic or
    group this client may not describe is not waited for; after `timeout` the service starts
    anyway (the client's own retries take over) with a WARNING naming what was not ready.
    """
    pending_topics, pending_groups = set(names), set(groups)
    deadline = time.monotonic() + timeout
    pause = 0.05
    while pending_topics or pending_groups:
        if pending_topics:
            pending_topics -= _served(await admin.describe_topics(sorted(pending_topics)))
        for group in sorted(pending_groups):
            try:
                await admin.find_coordinator(group)
            except GroupAuthorizationFailedError:
                pass  # not ours to describe: its consumer will say so if it matters
            except KafkaError:
                continue  # not available yet (a broker starting, an offsets topic loading)
            pending_groups.discard(group)
        if not (pending_topics or pending_groups):
            return
        if time.monotonic() > deadline:
            log.warning(
                "broker not serving after %.0fs: topics %s, consumer groups %s; starting anyway",
                timeout,
                sorted(pending_topics),
                sorted(pending_groups),
            )
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _served(described: list[dict[str, Any]]) -> set[str]:
    """The topics of a metadata answer that can be used now (every partition led), or never
    will be by this client (not authorised)."""
    return {
        topic["topic"]
        for topic in described
        if for_code(topic["error_code"]) is TopicAuthorizationFailedError
        or (topic["error_code"] == 0 and topic["partitions"] and all(_led(p) for p in topic["partitions"]))
    }


def _led(partition: dict[str, Any]) -> bool:
    return bool(partition["error_code"] == 0 and partition["leader"] >= 0)


class _StartupNoise(logging.Filter):
    """Demotes STARTUP_NOISE from ERROR to WARNING until `until` (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.until = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and time.monotonic() < self.until:
            message = record.getMessage()
            if any(noise in message for noise in STARTUP_NOISE):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_startup_noise = _StartupNoise()


def expect_startup_noise(seconds: float = 30.0) -> None:
    """For the next `seconds`, log aiokafka's retries of a starting consumer at WARNING.

    A starting service waits until the broker serves its topics and groups (create_topics),
    yet a partition it created a moment ago can still answer its first offset lookup with
    NOT_LEADER (the broker's metadata is ahead of its log), and a broker that just restarted
    answers GROUP_COORDINATOR_NOT_AVAILABLE while it loads its offsets. aiokafka retries both
    until they work, but logs every attempt at ERROR, so each clean start printed errors.
    Only those transient errors, and only while starting, are demoted: the same lines later
    (a broker lost under a running service) stay ERROR.
    """
    _startup_noise.until = max(_startup_noise.until, time.monotonic() + seconds)
    for name in STARTUP_NOISE_LOGGERS:
        logger = logging.getLogger(name)
        if _startup_noise not in logger.filters:
            logger.addFilter(_startup_noise)
