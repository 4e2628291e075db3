"""Prometheus metrics shared by every service (labels say which consumer or topic)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_HANDLED = Counter(
    "ordermesh_messages_handled_total", "Messages handled", ["consumer", "event_type", "outcome"]
)
HANDLER_SECONDS = Histogram(
    "ordermesh_handler_seconds",
    "Time to handle one consumed batch, database commit included",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HANDLER_ERRORS = Counter("ordermesh_handler_errors_total", "Failed handling attempts", ["consumer", "kind"])
DEAD_LETTERS = Counter("ordermesh_dead_letters_total", "Messages dead-lettered", ["consumer"])
OUTBOX_BACKLOG = Gauge("ordermesh_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter(
    "ordermesh_outbox_published_total",
    "Outbox rows published to Kafka, by the relay or right after the commit",
    ["service"],
)
PUBLISHED_AFTER_COMMIT = Counter(
    "ordermesh_outbox_published_after_commit_total",
    "Outbox rows published right after the commit by the process that wrote them",
    ["service"],
)
HANDED_BACK = Counter(
    "ordermesh_outbox_handed_back_total",
    "Outbox rows the publisher could not deliver and left to the relay",
    ["service"],
)
PUBLISH_AFTER_COMMIT_SECONDS = Histogram(
    "ordermesh_publish_after_commit_seconds",
    "Time from a transaction's commit to the broker's acknowledgement of its outbox rows",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_STALLED = Gauge(
    "ordermesh_consumer_stalled", "1 while a consumer makes no progress (see /ready)", ["consumer"]
)
RELAY_HEALTHY = Gauge(
    "ordermesh_relay_healthy", "1 while the outbox relay publishes (or stands by)", ["service"]
)
OUTBOX_PARKED = Gauge(
    "ordermesh_outbox_parked", "Outbox rows the broker refused for good, set aside", ["service"]
)
BACKGROUND_TASK_DEAD = Gauge(
    "ordermesh_background_task_dead", "1 when a background loop of the service died", ["task"]
)
CONSUMER_LAG = Gauge("ordermesh_consumer_lag", "Messages behind the partition end", ["consumer", "topic"])
SAGA_OUTCOMES = Counter("ordermesh_saga_outcomes_total", "Sagas finished", ["outcome"])
SAGA_SECONDS = Histogram(
    "ordermesh_saga_seconds",
    "Time from order placed to its outcome",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
# Counted by the order service's leading sampler (services/order/app/saga_metrics.py) from the
# events that committed, so an order counts once whatever the replicas and retries.
ORDERS_PLACED = Counter(
    "ordermesh_orders_placed", "Orders placed (their OrderPlaced event committed), by channel", ["channel"]
)
SAGA_STAGE_SECONDS = Histogram(
    "ordermesh_saga_stage_seconds",
    "Time an order spent in a stage of its saga, observed when it leaves the stage",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)
# Every answer of every service, counted by the access log middleware (libs/runtime/http.py):
# the route is the template (/orders/{order_id}), never the raw path, so the series stay few.
HTTP_REQUESTS = Counter(
    "ordermesh_http_requests",
    "HTTP requests answered, by route template and status class (2xx, 4xx, 5xx, ...)",
    ["service", "method", "route", "status_class"],
)
NEEDS_ATTENTION = Counter(
    "ordermesh_needs_attention_total", "Sagas parked because a compensation kept failing"
)
# Sampled on a timer (ServiceRuntime's sampler, every OM_METRICS_SAMPLE_SECONDS), from the broker
# and the database rather than from the loops they describe: they keep moving when a consumer or
# the relay has stopped, which is when they are read.
DLQ_DEPTH = Gauge(
    "ordermesh_dlq_depth",
    "Dead letters of a consumer group not yet re-driven or discarded (ordermesh dlq)",
    ["consumer"],
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "ordermesh_outbox_oldest_seconds", "Age of the oldest outbox row not yet published", ["service"]
)
METRICS_SAMPLED = Gauge(
    "ordermesh_metrics_sampled_timestamp_seconds",
    "When the sampled metrics of this process were last refreshed (Unix time)",
    ["service"],
)
ORDERS_STUCK = Gauge(
    "ordermesh_orders_stuck",
    "Open orders whose saga has not moved for longer than older_than, by the stage they wait in",
    ["stage", "older_than"],
)
ORDERS_NEEDING_ATTENTION = Gauge(
    "ordermesh_orders_needing_attention", "Orders parked until a person acts (status needs_attention)"
)
