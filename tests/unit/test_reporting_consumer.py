"""The reporting consumer lingers for larger batches (reports may be a second behind); the
order path's consumers answer as soon as a record arrives."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from libs.runtime.consumer import EventConsumer
from libs.runtime.settings import RuntimeSettings
from services.reporting.bootstrap import build_runtime


def _fetch(consumer: EventConsumer) -> dict[str, Any]:
    consumer.attach(KafkaBroker())
    # What FastStream will build the aiokafka consumer with.
    arguments: dict[str, Any] = consumer.subscriber._connection_args
    return {key: arguments[key] for key in ("fetch_min_bytes", "fetch_max_wait_ms")} | {
        "max_records": consumer.subscriber.max_records
    }


def test_the_reporting_consumer_lets_the_broker_gather_a_second_of_events_per_batch() -> None:
    (consumer,) = build_runtime(RuntimeSettings()).consumers

    assert _fetch(consumer) == {
        "fetch_min_bytes": 4 * 1024 * 1024,
        "fetch_max_wait_ms": 1000,
        "max_records": 5000,
    }


def test_without_a_linger_a_consumer_fetches_as_soon_as_one_record_is_ready() -> None:
    settings = RuntimeSettings()
    consumer = EventConsumer("orders", ["t"], {}, None, settings, actor="test")  # type: ignore[arg-type]

    assert _fetch(consumer) == {
        "fetch_min_bytes": 1,
        "fetch_max_wait_ms": 500,
        "max_records": settings.consumer_batch_size,
    }
