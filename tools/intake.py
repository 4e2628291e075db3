"""Publish an order to the Kafka intake topic as a sales channel would, and print the order
service's answer from the results topic.

    python -m tools.intake send docs/examples/intake-order.json
    python -m tools.intake send order.json --external-id WEB-1002
    python -m tools.intake send --raw message.bin          # bytes as they are (an envelope, or not)
    make intake FILE=docs/examples/intake-order.json

FILE holds a SubmitOrder payload (the body of POST /orders, plus `external_id`); it is sent
in a new envelope (a fresh event_id, actor `channel:<channel>`), keyed `<channel>:<external_id>`.
The answer (an OrderIntakeResult) is printed as JSON. Exit status: 0 accepted, 1 refused,
3 no answer within --timeout. The broker and topic namespace come from OM_KAFKA_BOOTSTRAP,
OM_TOPIC_NAMESPACE and OM_KAFKA_* security settings, as for the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata

from libs.events import DecodeError, decode, encode, make_envelope
from libs.events.intake import OrderIntakeResult, SubmissionIdentity, recover_identity, result_key
from libs.events.order import SubmitOrder
from libs.events.topics import ORDER_INTAKE, ORDER_INTAKE_RESULTS
from libs.runtime.kafka import client_security, durable_producer
from libs.runtime.settings import RuntimeSettings

ACCEPTED, REFUSED, NO_ANSWER = 0, 1, 3


@dataclass(frozen=True)
class Sent:
    """An intake message on its way: what names it, to find its answer."""

    identity: SubmissionIdentity
    value: bytes
    key: bytes | None


@dataclass(frozen=True)
class Answer:
    """Where the intake message went, and its answer (None if none came in time) with its key."""

    sent: RecordMetadata
    result: OrderIntakeResult | None
    key: bytes | None = None


def submission_message(payload: dict[str, Any], external_id: str | None = None) -> Sent:
    """A SubmitOrder payload in a new envelope, as a channel publishes it. Validated here, so
    a mistake in the file is named before anything is sent."""
    if external_id is not None:
        payload = {**payload, "external_id": external_id}
    submission = SubmitOrder.model_validate(payload)
    event_id = uuid4()
    envelope = make_envelope(
        submission,
        event_id=event_id,
        aggregate_id=submission.external_id or str(event_id),
        aggregate_version=0,
        occurred_at=datetime.now(UTC),
        correlation_id=submission.external_id or str(event_id),
        causation_id=None,
        actor=f"channel:{submission.channel}",
    )
    identity = SubmissionIdentity(
        intake_event_id=event_id,
        channel=submission.channel,
        external_id=submission.external_id,
        idempotency_key=submission.idempotency_key,
    )
    key = result_key(identity)
    return Sent(identity, encode(envelope), key.encode() if key else None)


def raw_message(value: bytes) -> Sent:
    """Bytes as they are: the answer is found by whatever names them (as the service reads it)."""
    identity = recover_identity(value)
    key = result_key(identity)
    return Sent(identity, value, key.encode() if key else None)


async def send_and_wait(settings: RuntimeSettings, sent: Sent, timeout: float = 30) -> Answer:
    """Publish `sent` to the intake topic and wait up to `timeout` s for its answer. The
    results topic is read from its current end, so only answers to this message count."""
    if result_key(sent.identity) is None:
        raise ValueError(
            "nothing in this message names it (no event_id, channel or external_id): no answer can be found"
        )
    results_topic = settings.topic(ORDER_INTAKE_RESULTS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, results_topic)
        consumer.assign(partitions)
        for partition, end in (await consumer.end_offsets(partitions)).items():
            consumer.seek(partition, end)
        producer = durable_producer(settings, "ordermesh-intake-tool")
        await producer.start()
        try:
            metadata = await producer.send_and_wait(settings.topic(ORDER_INTAKE), sent.value, key=sent.key)
        finally:
            await producer.stop()
        record = await _answer(consumer, sent.identity, timeout)
        if record is None:
            return Answer(metadata, None)
        return Answer(metadata, _result_in(record.value or b""), record.key)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30) -> list[TopicPartition]:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := consumer.partitions_for_topic(topic)):
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topic {topic} does not exist: is the order service running?")
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
    return [TopicPartition(topic, p) for p in sorted(found)]


async def _answer(
    consumer: AIOKafkaConsumer, identity: SubmissionIdentity, timeout: float
) -> ConsumerRecord[bytes, bytes] | None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        for records in batches.values():
            for record in records:
                result = _result_in(record.value or b"")
                if result is not None and _answers(result, identity):
                    return record
    return None


def _result_in(value: bytes) -> OrderIntakeResult | None:
    try:
        message = decode(value).message
    except DecodeError:
        return None
    return message if isinstance(message, OrderIntakeResult) else None


def _answers(result: OrderIntakeResult, identity: SubmissionIdentity) -> bool:
    if identity.intake_event_id is not None:
        return result.intake_event_id == identity.intake_event_id
    return (result.channel, result.external_id) == (identity.channel, identity.external_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.intake",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="publish FILE to the intake topic and print the answer")
    send.add_argument("file", type=Path)
    send.add_argument("--external-id", help="replaces the file's external_id (a new order each time)")
    send.add_argument("--raw", action="store_true", help="send the file's bytes unchanged")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    data = args.file.read_bytes()
    if args.raw:
        sent = raw_message(data)
    else:
        try:
            sent = submission_message(json.loads(data), args.external_id)
        except ValueError as error:  # not JSON, or not a valid submission: say which field
            print(f"{args.file}: {error}", file=sys.stderr)
            return 2
    result = asyncio.run(send_and_wait(RuntimeSettings(), sent, args.timeout)).result
    if result is None:
        print(f"no answer within {args.timeout:.0f}s (is the order service running?)", file=sys.stderr)
        return NO_ANSWER
    print(json.dumps(result.model_dump(mode="json", exclude_defaults=True), indent=2))
    return ACCEPTED if result.outcome == "accepted" else REFUSED


if __name__ == "__main__":
    sys.exit(main())
