"""Dead letters of a consumer group (named as the broker knows it, namespace included): list
them, send them back through the normal path, or set them aside.

A consumer dead-letters a message it cannot handle to `<group>.dlq`, with the original key,
bytes and headers plus `dlq.*` headers saying why (libs/runtime/consumer.py). Re-driving puts
the message back on the topic it came from (`dlq.source`), unchanged or as fixed by the
operator, with the same event id: the consumers' inbox then applies it once, however many
times it is re-driven, and the groups that had handled it already skip it as a duplicate.

How far a DLQ has been dealt with is the committed offset of the group `<dlq topic>.handled`
(libs/runtime/consumer.dlq_handled_group); `ordermesh_dlq_depth` counts what lies after it. It
moves over a dead letter once that one and every earlier one of its partition are re-driven
or discarded, so the depth never hides one that was skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from libs.events import DecodeError, decode
from libs.events.topics import dead_letter_topic
from libs.runtime.consumer import GroupOffsets, dlq_handled_group
from libs.runtime.kafka import client_security, durable_producer
from libs.runtime.settings import RuntimeSettings

DLQ_HEADER_PREFIX = "dlq."
# Says, on a re-driven message, which dead letter it came from (for the logs and the operator).
REDRIVEN_FROM_HEADER = "redriven_from"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    handled: bool = False

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def reason(self) -> str:
        return self.header("dlq.reason")

    @property
    def source(self) -> str:
        """Where the message lay when it was refused: `topic/partition@offset`."""
        return self.header("dlq.source")

    @property
    def source_topic(self) -> str:
        return self.source.rsplit("/", 1)[0]

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def identity(self) -> tuple[str, str]:
        """(event_type, event_id) of the message, or ('', '') for bytes that do not decode."""
        try:
            envelope = decode(self.value).envelope
        except (DecodeError, ValueError):
            return "", ""
        return envelope.event_type, str(envelope.event_id)

    def summary(self) -> dict[str, Any]:
        event_type, event_id = self.identity()
        return {
            "position": self.position,
            "handled": self.handled,
            "source": self.source,
            "event_type": event_type or None,
            "event_id": event_id or None,
            "attempts": self.header("dlq.attempts"),
            "reason": self.reason,
        }


@dataclass
class Redriven:
    sent: list[str] = field(default_factory=list)  # positions re-driven
    handled_through: dict[int, int] = field(default_factory=dict)  # partition: next offset


class RedriveRefused(ValueError):
    """The operator's fixed message would not go through the normal path exactly once."""


async def read_dead_letters(
    settings: RuntimeSettings, group: str, include_handled: bool = False
) -> list[DeadLetter]:
    """The group's dead letters in partition and offset order: those not yet dealt with, or
    every one the topic still holds."""
    topic = dead_letter_topic(group)
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        partitions = await offsets.partitions([topic])
        handled = await offsets.committed(dlq_handled_group(topic))
        starts, ends = await offsets.ends(partitions)
    finally:
        await offsets.close()
    wanted = {
        tp: (starts[tp] if include_handled else max(handled.get(tp, starts[tp]), starts[tp]), ends[tp])
        for tp in partitions
    }
    wanted = {tp: (start, end) for tp, (start, end) in wanted.items() if start < end}
    if not wanted:
        return []
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **client_security(settings),
    )
    await reader.start()
    found: list[DeadLetter] = []
    try:
        reader.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            reader.seek(tp, start)
        remaining = set(wanted)
        while remaining:
            batches = await reader.getmany(*remaining, timeout_ms=2000)
            if not batches:
                break  # the broker answers nothing more: what was there has been read
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= wanted[tp][1]:
                        break
                    found.append(
                        DeadLetter(
                            tp.partition,
                            record.offset,
                            record.key,
                            record.value or b"",
                            tuple(record.headers or ()),
                            handled=record.offset < handled.get(tp, starts[tp]),
                        )
                    )
                if records and records[-1].offset >= wanted[tp][1] - 1:
                    remaining.discard(tp)
    finally:
        await reader.stop()
    return sorted(found, key=lambda d: (d.partition, d.offset))


def fixed_value(letter: DeadLetter, value: bytes) -> bytes:
    """An operator's corrected message, accepted only if it is the same message: an envelope
    that decodes, with the dead letter's event id (the inbox dedups by it)."""
    try:
        envelope = decode(value).envelope
    except (DecodeError, ValueError) as error:
        raise RedriveRefused(f"the fixed message does not decode: {error}") from error
    _, original_id = letter.identity()
    if original_id and str(envelope.event_id) != original_id:
        raise RedriveRefused(
            f"the fixed message has event_id {envelope.event_id}, the dead letter {original_id}: keep the"
            " id, so that the consumers' inbox applies it once"
        )
    return value


async def redrive(
    settings: RuntimeSettings,
    group: str,
    letters: Iterable[DeadLetter],
    fixed: dict[str, bytes] | None = None,
) -> Redriven:
    """Publish each dead letter to the topic it came from, with its key and its headers less
    the `dlq.*` ones (a `fixed` value, by position, replaces its bytes), acknowledged by every
    in-sync replica; then move the handled mark over every leading dead letter of a partition
    that is now dealt with."""
    letters = list(letters)
    fixed = fixed or {}
    values = {
        letter.position: fixed_value(letter, fixed[letter.position])
        if letter.position in fixed
        else letter.value
        for letter in letters
    }
    for letter in letters:
        if not letter.source_topic:
            raise RedriveRefused(
                f"dead letter {letter.position} has no dlq.source header: nowhere to send it"
            )
    producer = durable_producer(settings, "ordermesh-dlq-redrive")
    await producer.start()
    done = Redriven()
    try:
        for letter in letters:
            headers = [(k, v) for k, v in letter.headers if not k.startswith(DLQ_HEADER_PREFIX)]
            headers.append(
                (
                    REDRIVEN_FROM_HEADER,
                    f"{dead_letter_topic(group)}/{letter.position}".encode(),
                )
            )
            await producer.send_and_wait(
                letter.source_topic, value=values[letter.position], key=letter.key, headers=headers
            )
            done.sent.append(letter.position)
    finally:
        await producer.stop()
    done.handled_through = await mark_handled(settings, group, letters)
    return done


async def mark_handled(
    settings: RuntimeSettings, group: str, letters: Iterable[DeadLetter]
) -> dict[int, int]:
    """Move the handled mark of each partition over the dead letters given, as far as they
    run on from it without a gap; returns the new marks that moved."""
    topic = dead_letter_topic(group)
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        partitions = await offsets.partitions([topic])
        handled = await offsets.committed(dlq_handled_group(topic))
        starts, _ = await offsets.ends(partitions)
    finally:
        await offsets.close()
    dealt = {(letter.partition, letter.offset) for letter in letters}
    marks: dict[TopicPartition, int] = {}
    for tp in partitions:
        mark = max(handled.get(tp, starts[tp]), starts[tp])
        moved = mark
        while (tp.partition, moved) in dealt:
            moved += 1
        if moved != mark:
            marks[tp] = moved
    if marks:
        committer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=dlq_handled_group(topic),
            enable_auto_commit=False,
            **client_security(settings),
        )
        await committer.start()
        try:
            committer.assign(list(marks))
            await committer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in marks.items()})
        finally:
            await committer.stop()
    return {tp.partition: offset for tp, offset in marks.items()}


def as_json_lines(letters: Iterable[DeadLetter]) -> str:
    return "\n".join(json.dumps(letter.summary()) for letter in letters)
