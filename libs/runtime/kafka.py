"""Kafka plumbing shared by the relay, the consumers and the tests: client security, producer
and topic admin."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code
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
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        **client_security(settings),
    )


def admin_client(settings: RuntimeSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **client_security(settings))


async def create_topics(settings: RuntimeSettings, names: Iterable[str] = topics.ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet, with the configured partition count, and
    return those created.

    A client whose ACLs grant no Create (deploy/k8s: the Topic Operator declares every topic)
    sees only the topics it may describe and is refused the others: that is logged, not
    raised, because the topics it uses exist already and the rest are not its business.
    """
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics([NewTopic(n, settings.topic_partitions, 1) for n in missing])
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
    finally:
        await admin.close()
