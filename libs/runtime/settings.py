"""Configuration from environment variables (12-factor). Every variable is listed in README.md."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    """Settings shared by every service process, read from OM_* variables."""

    model_config = SettingsConfigDict(env_prefix="OM_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # How every Kafka client of the process (relay, consumers, dead-letter producer, topic
    # admin) authenticates. The local broker is PLAINTEXT; deploy/k8s uses SASL_SSL with a
    # SCRAM-SHA-512 user per service, whose ACLs let it write only its own topics.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # CA bundle (PEM) the broker certificates are checked against; empty: the system CAs.
    kafka_ssl_cafile: str = ""
    # Prefixed to every topic and consumer group, so several environments (a developer's
    # platform and a test run, say) can share one broker without meeting each other.
    topic_namespace: str = ""
    topic_partitions: int = 8
    # Replicas of each topic a service creates (the single `make up` broker has one).
    topic_replication_factor: int = 1
    # false: a service creates no topic, it only waits for its topics to be served, because
    # the platform owns them (deploy/k8s: Strimzi's KafkaTopic resources).
    kafka_create_topics: bool = True
    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_user: str = "ordermesh"
    pg_password: str = "ordermesh"
    # Each service's database is "<db_prefix>_<service>", so two checkouts can share a server.
    db_prefix: str = "ordermesh"
    db_pool_size: int = 10
    # A transaction left idle this long (its process paused or cut off) is ended by the
    # server, releasing its locks; the work is retried elsewhere.
    db_idle_in_transaction_ms: int = 30_000
    # Poison handling: a message whose handler keeps failing is retried this many times
    # with exponential backoff, then dead-lettered so its partition moves on.
    consumer_max_attempts: int = 4
    consumer_retry_backoff_ms: int = 50
    consumer_batch_size: int = 200
    # How long the producer holds a message for others to share its request. 0: messages that
    # queue while a request is in flight still share the next one; a lone message goes at
    # once (2 ms before: one hop's p50 about 3 ms longer at 50 messages/s; chosen with
    # `python -m tools.bench_runtime --latency`, figures in docs/performance.md).
    kafka_linger_ms: int = 0
    # true: an idle consumer polls again as soon as its poll times out. FastStream's batch
    # subscriber otherwise sleeps a whole poll interval after every empty poll, and a message
    # that arrives meanwhile waits for the sleep to end (up to poll_ms per hop).
    consumer_skip_idle_sleep: bool = True
    relay_batch_size: int = 500
    # Allocations between two runs of Python's cycle collector on its youngest generation, once
    # the service has started (0: Python's default, 700). Everything alive at the end of the
    # start (modules, the app, caches warmed so far) is frozen out of the collector's view too.
    # The services allocate many short-lived objects per message and create few cycles, so the
    # default's frequent passes over the live heap cost CPU for little: 50,000 took 17% off the
    # order service's CPU per order and raised `make bench`'s peak by 14% (docs/performance.md).
    gc_young_threshold: int = 50_000
    # true: the process that commits outbox rows publishes them right after the commit, and
    # the relay only picks up what a crash or a broker outage leaves (libs/runtime/publisher.py).
    # false: every row waits for the relay (NOTIFY, SELECT, publish, DELETE), as before.
    publish_after_commit: bool = True
    # true: Kafka carries a service's public messages only: its published domain events and
    # what its integration translator derives from each unit of work (the order service's
    # OrderStatusChanged); private events stay in its event store (docs/events.md).
    # false: every domain event is published, as before (to measure the difference).
    public_events_only: bool = True
    # The relay takes a row its live publisher still holds after this long (a publisher that
    # stalled); that row may then be published twice.
    outbox_takeover_seconds: float = 30.0
    # false: this process serves HTTP (and stands by for the relay and deadlines) but does not
    # consume; for deployments that scale the API apart from the workers.
    run_consumers: bool = True
    # A consumer batch in progress, or an outbox relay failing, for longer than this makes the
    # service not ready (/ready answers 503) and sets the stalled metrics.
    stall_seconds: float = 60
    # The aggregate cache of one process is bounded by this much (estimated) memory.
    aggregate_cache_mb: int = 64
    # Largest HTTP request body accepted (413 above it).
    http_max_body_bytes: int = 1024 * 1024
    # Names of fault-injection points that crash the process (chaos tests only; empty in
    # production). See libs/runtime/faults.py.
    faults: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    # Deprecated: OTEL_TRACES_EXPORTER (libs/runtime/telemetry.py) wins; read when it is unset.
    otel_exporter: str = "none"  # none | console | otlp
    # How often consumer lag, outbox backlog, DLQ depth and stuck orders are sampled: on a
    # timer, so the metrics keep moving when a consumer or the relay stops doing so.
    metrics_sample_seconds: float = 15.0

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> RuntimeSettings:
        # Fail at start-up with the setting's name rather than in a broker handshake later.
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"OM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "OM_KAFKA_SASL_USERNAME and OM_KAFKA_SASL_PASSWORD"
            )
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_namespace}{name}"

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"

    def database_url(self, service: str, driver: str = "postgresql+asyncpg") -> str:
        return (
            f"{driver}://{self.pg_user}:{self.pg_password}@{self.pg_host}:{self.pg_port}/"
            f"{self.database_name(service)}"
        )

    def dsn(self, service: str) -> str:
        """Plain asyncpg DSN (LISTEN/NOTIFY needs a raw connection)."""
        return self.database_url(service, driver="postgresql")
