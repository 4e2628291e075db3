"""Replay a consumer group: move its committed offsets back to the start of its topics or to the
first message at or after a time, through the broker's own group offsets (what
kafka-consumer-groups --reset-offsets does).

Refused while the group has live members: the broker would refuse the commit anyway, and a
running consumer would commit its own position over it. Stop the group's consumers first
(scale the service to 0, or run it with OM_RUN_CONSUMERS=false), replay, start them again.

A replayed message goes through the normal path: the group's inbox skips what it applied
before, so a replay re-applies only what the group's database no longer remembers (a restored
backup, a rebuilt read model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from libs.runtime.consumer import GroupOffsets
from libs.runtime.kafka import client_security
from libs.runtime.settings import RuntimeSettings


class ReplayRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class Move:
    partition: TopicPartition
    committed: int | None  # None: the group never committed on it
    target: int
    end: int

    @property
    def messages(self) -> int:
        """How many messages the group will read (again) from the target on."""
        return max(self.end - self.target, 0)


def topics_of(settings: RuntimeSettings, group: str) -> tuple[str, ...]:
    """The topics a group of ours reads, from the services' own wiring."""
    from tools.processes import consumer_groups

    for found in consumer_groups(settings):
        if found.group == settings.topic(group) or found.group == group:
            return found.topics
    return ()


async def plan(
    settings: RuntimeSettings, group: str, topics: tuple[str, ...], since: datetime | None = None
) -> list[Move]:
    """Where each partition of `topics` would move: the earliest offset the broker still
    holds, or the first at or after `since`; refused while the group has live members."""
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        members = await offsets.members(group)
        if members:
            raise ReplayRefused(
                f"consumer group {group} has {len(members)} live member(s) ({', '.join(sorted(members))}):"
                " stop its consumers first (scale the service to 0 or set OM_RUN_CONSUMERS=false),"
                " then replay"
            )
        partitions = await offsets.partitions(topics)
        if not partitions:
            raise ReplayRefused(f"none of the topics {', '.join(topics) or '(none)'} exists")
        committed = await offsets.committed(group)
        starts, ends = await offsets.ends(partitions)
        targets = dict(starts)
        if since is not None:
            targets = await _offsets_at(settings, partitions, since, ends)
    finally:
        await offsets.close()
    return [Move(tp, committed.get(tp), targets[tp], ends[tp]) for tp in partitions]


async def _offsets_at(
    settings: RuntimeSettings,
    partitions: list[TopicPartition],
    since: datetime,
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, **client_security(settings)
    )
    await probe.start()
    try:
        found = await probe.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    finally:
        await probe.stop()
    # No message at or after the time: the partition's end (nothing to replay there).
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}


async def apply(settings: RuntimeSettings, group: str, moves: list[Move]) -> None:
    """Commit the planned offsets as the group's (the broker refuses if a member joined since)."""
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **client_security(settings),
    )
    await committer.start()
    try:
        committer.assign([move.partition for move in moves])
        await committer.commit({move.partition: OffsetAndMetadata(move.target, "replay") for move in moves})
    finally:
        await committer.stop()


async def remaining(settings: RuntimeSettings, group: str, topics: tuple[str, ...]) -> int:
    """Messages the group still has to read (its lag), to follow a replay to its end."""
    offsets = GroupOffsets(settings)
    await offsets.start()
    try:
        return sum((await offsets.lag(group, topics)).values())
    finally:
        await offsets.close()
