"""Kafka consumers: FastStream batch subscribers whose offsets are committed only after the
database transaction that applied the batch has committed.

Per consumed batch:
1. Decode each record; one that is not a valid OrderMesh message is dead-lettered at once.
2. Apply every record this consumer has a handler for in ONE transaction: inbox row first
   (a duplicate is skipped), then the handler's events, outbox rows and projections.
3. Transient failures (database or broker away, optimistic conflict) retry without limit.
   Any other failure re-applies the batch record by record, so one poison message cannot
   hold back the others: the failing record is retried `consumer_max_attempts` times with
   exponential backoff, then published to `<consumer>.dlq` with the reason, and skipped.
4. Return; FastStream then commits the offsets (AckPolicy.NACK_ON_ERROR: an unexpected
   escape seeks back instead of committing, so nothing is lost).

A consumer that answers its senders (the order intake) also gets each refusal after its dead
letter is published (`on_refusal`), in a transaction of its own that claims the refusal in
the inbox: a redelivered refused message may be dead-lettered again, but is answered once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.domain import DomainError
from libs.events import Decoded, DecodeError, Message, decode
from libs.events.topics import dead_letter_topic
from libs.runtime import faults, inbox
from libs.runtime.db import ConcurrencyConflict, is_bad_value, is_transient
from libs.runtime.kafka import durable_producer, expect_startup_noise
from libs.runtime.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    DLQ_DEPTH,
    HANDLER_ERRORS,
    HANDLER_SECONDS,
    MESSAGES_HANDLED,
)
from libs.runtime.settings import RuntimeSettings
from libs.runtime.telemetry import AGGREGATE_ID_ATTRIBUTE, batch_span, consuming_span, tracing_enabled
from libs.runtime.uow import AggregateCache, MessageContext, Projector, UnitOfWork, unit_of_work

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Decoded], Awaitable[None]]
# Loads, in a few round trips, the aggregates the batch's handlers will need (UnitOfWork.preload).
Preload = Callable[[UnitOfWork, Sequence[Decoded]], Awaitable[None]]
MAX_TRANSIENT_BACKOFF_SECONDS = 5.0
# A dead letter carries the original bytes; one too large for the broker (with our headers
# added) carries this much of them instead, and says so in a header.
DEAD_LETTER_MAX_VALUE_BYTES = 256 * 1024
# A lingering consumer's fetch is answered once this much is ready, or at its linger: more
# than a lingering second of our messages at bench rates, so the linger decides.
LINGER_MIN_BYTES = 4 * 1024 * 1024


async def _raw_bodies(message: Any) -> Any:
    """FastStream's decoder, replaced: the handler reads the raw records itself. The default
    one parses every body as JSON before our code sees it, and a body that breaks Python's
    parser (nested thousands deep, an integer of thousands of digits) then fails the whole
    batch on every redelivery, outside any dead-letter handling."""
    return message.body


async def _tolerant_parse(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser decodes headers as strict UTF-8; a record with a garbage
    header would fail the batch forever. Such headers are read with replacement instead."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        cleaned = tuple(
            dataclasses.replace(
                record,
                headers=[
                    (key, value.decode(errors="replace").encode()) for key, value in record.headers or ()
                ],
            )
            for record in records
        )
        return await original(cleaned)


def poll_without_idle_sleep(subscriber: Any, poll_ms: int, max_records: int) -> None:
    """Make a FastStream batch subscriber poll again as soon as an empty poll times out.

    Its own loop sleeps a whole poll interval after every empty poll, so a message that
    reaches an idle consumer waits, on average, a quarter of a poll interval more per hop,
    up to a whole one (measured with `python -m tools.bench_runtime --latency`).
    """

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[bytes, bytes], ...]:
        started = time.monotonic()
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
        if not batches:
            # An empty answer before the poll interval is up (no partitions assigned yet):
            # wait out the rest, so that case cannot spin.
            rest = poll_ms / 1000 - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)
            return ()
        return tuple(chain.from_iterable(batches.values()))

    subscriber.get_msg = get_msg


@dataclass(frozen=True)
class Refusal:
    """A message this consumer dead-lettered: the record, the reason in its dead letter, the
    message if it could be decoded, and the error that refused it."""

    record: ConsumerRecord[bytes, bytes]
    reason: str
    decoded: Decoded | None = None
    error: BaseException | None = None

    @property
    def source(self) -> str:
        return f"{self.record.topic}/{self.record.partition}@{self.record.offset}"


# Answers a refusal in the unit of work that claims it (the intake publishes its result).
RefusalHandler = Callable[[UnitOfWork, Refusal], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    record: ConsumerRecord[bytes, bytes]
    decoded: Decoded

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in (self.record.headers or ())}


class EventConsumer:
    def __init__(
        self,
        name: str,
        topics: Iterable[str],
        handlers: Mapping[type[Message], Handler],
        engine: AsyncEngine,
        settings: RuntimeSettings,
        actor: str,
        projector: Projector | None = None,
        cache: AggregateCache | None = None,
        preload: Preload | None = None,
        poll_ms: int = 50,
        on_refusal: RefusalHandler | None = None,
        refuse_unhandled: bool = False,
        batch_size: int | None = None,
        linger_ms: int = 0,
    ) -> None:
        self.preload = preload
        self.on_refusal = on_refusal
        # A topic of one kind of message (the intake): anything else on it is refused (and so
        # answered), where a shared topic's other messages are simply not this consumer's.
        self.refuse_unhandled = refuse_unhandled
        # How long one poll waits for records: short on the order path, longer for topics where
        # a fraction of a second does not matter (every idle poll costs CPU).
        self.poll_ms = poll_ms
        # At most this many records per batch (one transaction); the runtime's default unless
        # a consumer applies records so cheaply that larger batches pay.
        self.batch_size = batch_size or settings.consumer_batch_size
        # >0: the broker holds each fetch up to this long for more records (fetch.max.wait.ms
        # with a large fetch.min.bytes), so a consumer that may lag by a second or so gets
        # fewer, larger batches: each batch's fixed cost (transaction, inbox statement, one
        # statement per table) is shared by more records. 0: answer as soon as any arrive.
        self.linger_ms = linger_ms
        self.projector = projector
        self.cache = cache
        self.name = settings.topic(name)  # the consumer group, namespaced like the topics
        self.topics = tuple(dict.fromkeys(settings.topic(t) for t in topics))
        self.dead_letter_topic = dead_letter_topic(self.name)
        self.handlers = dict(handlers)
        self.handled_types = {model.message_type for model in self.handlers}
        self.engine = engine
        self.settings = settings
        self.actor = actor
        self._dlq_producer: AIOKafkaProducer | None = None
        # When the batch being handled started (monotonic), None while idle: a batch that
        # takes far longer than any should means the consumer is stuck (see `stalled`).
        self.busy_since: float | None = None
        self.batches = 0
        # FastStream's subscriber, whose consume task must be alive while the service runs
        # (`stalled`); set by `attach`, and `consuming` once the broker has started it.
        self.subscriber: Any = None
        self.consuming = False

    # -- wiring -------------------------------------------------------------------------

    def attach(self, broker: KafkaBroker) -> None:
        expect_startup_noise()

        async def on_batch(message: KafkaMessage) -> None:
            records: tuple[ConsumerRecord[bytes, bytes], ...] = message.raw_message
            self.busy_since = time.monotonic()
            try:
                await self.handle_records(records)
            finally:
                self.busy_since = None
            self.batches += 1
            self._report_lag(message.consumer, records)

        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.name,
            batch=True,
            max_records=self.batch_size,
            batch_timeout_ms=self.poll_ms,
            # Without a linger: the client's defaults (answer as soon as one byte is ready).
            fetch_min_bytes=LINGER_MIN_BYTES if self.linger_ms else 1,
            fetch_max_wait_ms=self.linger_ms or 500,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_poll_interval_ms=300_000,
            session_timeout_ms=6_000,  # the broker's minimum: a dead member is noticed fast
            heartbeat_interval_ms=1_000,
            decoder=_raw_bodies,
            parser=_tolerant_parse,
            title=self.name,
        )
        subscriber(on_batch)
        self.subscriber = subscriber
        if self.settings.consumer_skip_idle_sleep:
            poll_without_idle_sleep(subscriber, self.poll_ms, self.batch_size)

    def stalled(self, now: float, after_seconds: float) -> str | None:
        """Why this consumer is making no progress, or None. A batch that keeps failing for a
        transient reason (the database away) or a dead letter the broker keeps refusing
        holds its partitions: the service is then not ready, and the metric says which. So
        does a consume task that has ended: FastStream restarts one that raised, but not one
        that was cancelled or returned, and its partitions then wait for nobody."""
        if self.busy_since is not None and now - self.busy_since > after_seconds:
            return f"one batch has been in progress for {now - self.busy_since:.0f}s"
        if self.consuming and self.subscriber is not None:
            tasks = list(getattr(self.subscriber, "tasks", ()))
            if not any(not task.done() for task in tasks):
                return "its consume task has died" if tasks else "it has no consume task"
        return None

    async def close(self) -> None:
        if self._dlq_producer is not None:
            await self._dlq_producer.stop()
            self._dlq_producer = None

    # -- processing ---------------------------------------------------------------------

    async def handle_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        wanted: list[Received] = []
        for record in records:
            try:
                if not self.refuse_unhandled and not self._wanted(record):
                    continue
                decoded = decode(record.value or b"")
            except DecodeError as error:
                await self.dead_letter(record, f"undecodable: {error}", attempts=1, error=error)
                continue
            except Exception as error:  # whatever the bytes do to a parser: never stall on them
                reason = f"undecodable: {type(error).__name__}: {error}"
                await self.dead_letter(record, reason, attempts=1, error=error)
                continue
            if type(decoded.message) in self.handlers:
                wanted.append(Received(record, decoded))
            elif self.refuse_unhandled:
                envelope = decoded.envelope
                reason = f"not handled by {self.name}: {envelope.event_type} v{envelope.event_version}"
                await self.dead_letter(record, reason, attempts=1, decoded=decoded)
        if wanted:
            try:
                await self._retry_transient(lambda: self._apply(wanted))
            except Exception:
                HANDLER_ERRORS.labels(self.name, "batch").inc()
                for item in wanted:
                    await self._apply_alone(item)
        HANDLER_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        faults.crash_point(faults.AFTER_DB_COMMIT_BEFORE_OFFSET_COMMIT)

    def _wanted(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Skip, without decoding, messages whose event_type header names a type this consumer
        does not handle (a topic carries many). Messages without the header are decoded, so
        garbage still reaches the dead-letter topic."""
        for key, value in record.headers or ():
            if key == "event_type":
                return value.decode(errors="replace") in self.handled_types
        return True

    async def _apply(self, items: Sequence[Received]) -> None:
        first = items[0].decoded.envelope
        context = MessageContext.caused_by(first, self.actor)
        with batch_span(f"{self.name} process", [i.headers for i in items] if tracing_enabled() else ()):
            await self._apply_in_unit_of_work(context, items)

    async def _apply_in_unit_of_work(self, context: MessageContext, items: Sequence[Received]) -> None:
        async with unit_of_work(self.engine, context, projector=self.projector, cache=self.cache) as uow:
            outcomes = []
            unclaimed = await inbox.claim_all(
                await uow.db(), self.name, [i.decoded.envelope.event_id for i in items]
            )
            if self.preload is not None:
                await self.preload(
                    uow, [i.decoded for i in items if i.decoded.envelope.event_id in unclaimed]
                )
            for item in items:
                envelope = item.decoded.envelope
                uow.context = MessageContext.caused_by(envelope, self.actor)
                if envelope.event_id not in unclaimed:
                    outcomes.append((envelope.event_type, "duplicate"))
                    continue
                unclaimed.discard(envelope.event_id)  # the same message twice in one batch
                with consuming_span(
                    f"{self.name} handle {envelope.event_type}",
                    # Tracing off, the headers' trace context is still passed on (telemetry.pass_on).
                    item.headers,
                    envelope.correlation_id,
                    {
                        "messaging.message.id": str(envelope.event_id),
                        "ordermesh.aggregate_type": envelope.aggregate_type,
                        AGGREGATE_ID_ATTRIBUTE: envelope.aggregate_id,
                    }
                    if tracing_enabled()
                    else None,
                ):
                    await self.handlers[type(item.decoded.message)](uow, item.decoded)
                outcomes.append((envelope.event_type, "handled"))
        for event_type, outcome in outcomes:
            MESSAGES_HANDLED.labels(self.name, event_type, outcome).inc()

    async def _apply_alone(self, item: Received) -> None:
        attempts = 0
        while True:
            try:
                await self._retry_transient(lambda: self._apply([item]))
                return
            except Exception as error:
                attempts += 1
                HANDLER_ERRORS.labels(self.name, "message").inc()
                if attempts >= self.settings.consumer_max_attempts:
                    reason, detail = _reason(error), _detail(error)
                    await self.dead_letter(
                        item.record, reason, attempts, detail, decoded=item.decoded, error=error
                    )
                    return
                await asyncio.sleep(self.settings.consumer_retry_backoff_ms / 1000 * 2**attempts)

    async def _retry_transient(self, work: Callable[[], Awaitable[None]]) -> None:
        pause = 0.05
        while True:
            try:
                await work()
                return
            except ConcurrencyConflict:
                # Another writer got there first; the state is reloaded on the next attempt.
                # Not an outage, so no growing backoff: a short random pause breaks ties.
                HANDLER_ERRORS.labels(self.name, "conflict").inc()
                await asyncio.sleep(random.uniform(0, 0.02))
            except Exception as error:
                if not is_transient(error):
                    raise
                HANDLER_ERRORS.labels(self.name, "transient").inc()
                log.warning("transient failure in %s, retrying: %s", self.name, error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_TRANSIENT_BACKOFF_SECONDS)

    # -- dead letters and lag -----------------------------------------------------------

    async def dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        attempts: int,
        detail: str = "",
        *,
        decoded: Decoded | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Publish the original bytes to the consumer's DLQ, retried until the broker has it;
        log it (one line); then answer the sender if this consumer does (`on_refusal`)."""
        headers: list[tuple[str, bytes]] = list(record.headers or ())
        headers += [
            ("dlq.reason", reason[:2000].encode()),
            ("dlq.consumer", self.name.encode()),
            ("dlq.source", f"{record.topic}/{record.partition}@{record.offset}".encode()),
            ("dlq.attempts", str(attempts).encode()),
        ]
        if detail:
            headers.append(("dlq.detail", detail[-4000:].encode()))
        value = record.value
        pause = 0.1
        while True:
            try:
                if self._dlq_producer is None:
                    producer = durable_producer(self.settings, f"{self.name}-dlq")
                    await producer.start()
                    self._dlq_producer = producer
                await self._dlq_producer.send_and_wait(
                    self.dead_letter_topic, value=value, key=record.key, headers=headers
                )
                DEAD_LETTERS.labels(self.name).inc()
                _log_dead_letter(self.name, record, reason, attempts, decoded, error)
                break
            except MessageSizeTooLargeError:
                # The broker will never take it whole: keep our headers and less and less of
                # the original bytes, so the dead letter (its reason above all) gets through.
                value = (value or b"")[: min(DEAD_LETTER_MAX_VALUE_BYTES, len(value or b"") // 2)]
                headers = [h for h in headers if h[0].startswith("dlq.") and h[0] != "dlq.truncated"]
                headers.append(("dlq.truncated", str(len(record.value or b"")).encode()))
                log.warning("dead letter too large for the broker; sending %d bytes of it", len(value))
            except Exception:
                log.warning("dead-letter publish failed; retrying", exc_info=True)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_TRANSIENT_BACKOFF_SECONDS)
        if self.on_refusal is not None:
            await self._answer_refusal(Refusal(record, reason, decoded, error))

    async def _answer_refusal(self, refusal: Refusal) -> None:
        """Run `on_refusal` once per refused message: its inbox claim is keyed by the
        message's event_id (a copy sent again is answered once, as an accepted one is) or, for
        bytes with no readable id, by where they lie in the topic (a redelivery is the same
        record). Transient failures retry; any other is logged and the consumer goes on."""
        handler = self.on_refusal
        if handler is None:
            return
        identity = str(refusal.decoded.envelope.event_id) if refusal.decoded else refusal.source
        claim = uuid5(NAMESPACE_URL, f"ordermesh:refusal:{identity}")
        envelope = refusal.decoded.envelope if refusal.decoded else None
        context = (
            MessageContext.caused_by(envelope, self.actor)
            if envelope is not None
            else MessageContext(correlation_id=refusal.source, actor=self.actor)
        )

        async def answer() -> None:
            async with unit_of_work(self.engine, context, cache=self.cache) as uow:
                if await inbox.claim_all(await uow.db(), self.name, [claim]):
                    await handler(uow, refusal)

        try:
            await self._retry_transient(answer)
        except Exception:
            log.exception("%s could not answer the refusal of %s", self.name, refusal.source)

    def _report_lag(
        self, consumer: AIOKafkaConsumer | None, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        if consumer is None:
            return
        last: dict[TopicPartition, int] = {}
        for record in records:
            last[TopicPartition(record.topic, record.partition)] = record.offset
        by_topic: dict[str, int] = {}
        for tp, offset in last.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(highwater - offset - 1, 0)
        for topic, lag in by_topic.items():
            CONSUMER_LAG.labels(self.name, topic).set(lag)


def _log_dead_letter(
    consumer: str,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    attempts: int,
    decoded: Decoded | None,
    error: BaseException | None,
) -> None:
    """One line per dead letter, for the operator: which consumer, where the message lies,
    what it was and why it was refused; never its bytes (they may hold personal data).
    WARNING for input the system refuses by design (it cannot be read, breaks a rule, holds a
    value the database refuses); ERROR for a failure that may be a fault of ours."""
    refused_input = (
        error is None or isinstance(error, DecodeError | DomainError | ValidationError) or is_bad_value(error)
    )
    what = f"{decoded.envelope.event_type} {decoded.envelope.event_id}" if decoded else "unreadable message"
    extra = {"topic": record.topic}
    if decoded is not None:
        extra |= {"event_type": decoded.envelope.event_type, "event_id": str(decoded.envelope.event_id)}
    log.log(
        logging.WARNING if refused_input else logging.ERROR,
        "dead letter: consumer %s refused %s/%d@%d (%s) after %d attempt%s: %s",
        consumer,
        record.topic,
        record.partition,
        record.offset,
        what,
        attempts,
        "" if attempts == 1 else "s",
        reason[:500],
        extra=extra,
    )


def _reason(error: Exception) -> str:
    """Why a message failed, for the dead letter's headers and the log. A validation error's
    own text quotes the offending input (an intake message's contact data, say): only the
    field paths and messages are kept."""
    if isinstance(error, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors(include_input=False)
        )
        return f"ValidationError: {fields}"
    return f"{type(error).__name__}: {error}"


def _detail(error: Exception) -> str:
    """The traceback for the dead letter; none for a validation error (see _reason)."""
    if isinstance(error, ValidationError):
        return _reason(error)
    return "".join(traceback.format_exception(error))


# -- what the broker says about a group (sampled metrics, the operator's tools) ---------------


def dlq_handled_group(dead_letter_topic_name: str) -> str:
    """The consumer group whose committed offsets mark how far a DLQ has been dealt with
    (re-driven or discarded by `ordermesh dlq`): the DLQ depth counts what lies after them."""
    return f"{dead_letter_topic_name}.handled"


class GroupOffsets:
    """Committed offsets, partition ends and members of consumer groups, read from the broker
    (not from the consumers, which may be the ones that stopped)."""

    def __init__(self, settings: RuntimeSettings) -> None:
        from libs.runtime.kafka import admin_client, client_security

        self._admin = admin_client(settings)
        self._probe = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, **client_security(settings)
        )

    async def start(self) -> None:
        await self._admin.start()
        await self._probe.start()

    async def close(self) -> None:
        await self._probe.stop()
        await self._admin.close()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        described = await self._admin.describe_topics(list(topics))
        return sorted(
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        )

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed offsets; a partition it never committed is absent."""
        offsets = await self._admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def ends(self, partitions: list[TopicPartition]) -> tuple[dict[TopicPartition, int], ...]:
        """(beginning, end) offsets of each partition."""
        if not partitions:
            return {}, {}
        return await self._probe.beginning_offsets(partitions), await self._probe.end_offsets(partitions)

    async def lag(self, group: str, topics: Iterable[str]) -> dict[str, int]:
        """Records after the group's committed offset, per topic; from the partition's start
        where it committed nothing yet (it reads from the earliest offset)."""
        partitions = await self.partitions(topics)
        committed = await self.committed(group)
        starts, ends = await self.ends(partitions)
        by_topic: dict[str, int] = {}
        for tp in partitions:
            behind = ends[tp] - max(committed.get(tp, starts[tp]), starts[tp])
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(behind, 0)
        return by_topic

    async def members(self, group: str) -> list[str]:
        """Client ids of the group's live members (empty when no consumer of it runs)."""
        # One group per request: aiokafka reads a v3 answer with the v2 layout, which holds
        # for the first group only.
        found: list[str] = []
        for response in await self._admin.describe_consumer_groups([group]):
            for described in response.groups:
                _error, _name, _state, _type, _protocol, members = described[:6]
                found += [str(member[1]) for member in members]
        return found


async def sample_consumer_metrics(offsets: GroupOffsets, consumers: Iterable[EventConsumer]) -> None:
    """Consumer lag and DLQ depth of each group, from the broker."""
    for consumer in consumers:
        for topic, behind in (await offsets.lag(consumer.name, consumer.topics)).items():
            CONSUMER_LAG.labels(consumer.name, topic).set(behind)
        depth = await offsets.lag(dlq_handled_group(consumer.dead_letter_topic), [consumer.dead_letter_topic])
        DLQ_DEPTH.labels(consumer.name).set(sum(depth.values()))
