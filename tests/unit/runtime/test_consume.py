"""The shared batch loop: commit after the work, rewind on failure, lag and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.consume import (
    Backoff,
    BatchLoop,
    Consumer,
    LoopMetrics,
    Offsets,
    SeekBack,
    Subscription,
    next_offsets,
)
from services.runtime.settings import KafkaSettings

A = TopicPartition("hub.out.minsal.referral", 0)
B = TopicPartition("hub.out.minsal.referral", 1)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


def records(tp: TopicPartition, first: int, last: int) -> list[Record]:
    return [Record(tp.topic, tp.partition, o) for o in range(first, last + 1)]


@dataclass
class FakeConsumer:
    """Records commits and seeks; holds A and B; high-water marks as given."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    held: set[TopicPartition] = field(default_factory=lambda: {A, B})
    high: dict[TopicPartition, int] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    refuse_commits: bool = False

    async def position(self, partition: TopicPartition) -> int:
        return self.positions.get(partition, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        self.seeks.extend((tp, 0) for tp in partitions)
        return True

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse_commits:
            raise KafkaConnectionError("simulated: the coordinator is away")
        self.commits.append(dict(offsets))

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.high.get(partition)


class Work(SeekBack):
    """Stores batches; fails the next ``failing`` of them; may wait for a gate."""

    def __init__(self, failing: int = 0) -> None:
        self.failing = failing
        self.stored: list[list[Any]] = []
        self.gate: asyncio.Event | None = None
        self.followed_up: list[int] = []  # commits seen at each follow-up
        self.consumer: FakeConsumer | None = None
        self.follow_up_fails = False

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            self.failing -= 1
            raise OSError("simulated: the disk is full")
        self.stored.append(list(records))
        return next_offsets(records)

    async def after_commit(self) -> None:
        if self.follow_up_fails:
            raise OSError("simulated: the checkpoint could not be signed")
        self.followed_up.append(len(self.consumer.commits) if self.consumer else -1)


@dataclass
class Series:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.lag = Gauge("test_lag", "lag", registry=self.registry)
        self.seconds = Histogram("test_batch_seconds", "seconds", registry=self.registry)
        self.failures = Counter("test_failures", "failures", registry=self.registry)

    def metrics(self) -> LoopMetrics:
        return LoopMetrics(lag=self.lag, seconds=self.seconds, failures=self.failures)

    def value(self, name: str) -> float | None:
        return self.registry.get_sample_value(name)


def batch_loop(work: Work, series: Series | None = None, **options: Any) -> BatchLoop:
    series = series or Series()
    return BatchLoop(
        "test",
        KafkaSettings(bootstrap_servers="localhost:9"),
        work,
        series.registry,
        client_id="puente-test",
        metrics=series.metrics(),
        backoff=Backoff(first=0.01, most=0.01),
        **options,
    )


async def test_after_the_work_the_loop_commits_the_next_offset_of_every_partition() -> (
    None
):
    work, consumer = Work(), FakeConsumer()
    loop = batch_loop(work)

    await loop.consume([*records(A, 0, 4), *records(B, 7, 8)], consumer)

    assert len(work.stored) == 1
    assert consumer.commits == [{A: 5, B: 9}]
    assert consumer.seeks == []


async def test_offsets_of_a_partition_no_longer_held_are_not_committed() -> None:
    consumer = FakeConsumer(held={A})
    loop = batch_loop(Work())

    await loop.consume([*records(A, 0, 1), *records(B, 0, 1)], consumer)

    assert consumer.commits == [{A: 2}]


async def test_a_failed_batch_is_sought_back_counted_reported_and_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    series, consumer = Series(), FakeConsumer()
    loop = batch_loop(Work(failing=1), series)

    with caplog.at_level(logging.ERROR), pytest.raises(OSError, match="disk is full"):
        await loop.consume([*records(A, 3, 5), *records(B, 9, 9)], consumer)

    assert consumer.commits == []
    assert sorted(consumer.seeks) == [(A, 3), (B, 9)]
    assert series.value("test_failures_total") == 1
    assert loop.failures == 1
    assert loop.failed.is_set()
    assert isinstance(loop.error, OSError)
    assert "a batch of 4 records failed (OSError" in caplog.text


async def test_a_good_batch_after_failures_clears_the_count_keeps_the_first_error() -> (
    None
):
    work, consumer = Work(failing=2), FakeConsumer()
    loop = batch_loop(work)
    batch = records(A, 0, 2)

    for _ in range(2):
        with pytest.raises(OSError, match="disk is full"):
            await loop.consume(batch, consumer)
    assert loop.failures == 2
    await loop.consume(batch, consumer)

    assert loop.failures == 0
    assert isinstance(loop.error, OSError)
    assert work.stored == [batch]
    assert consumer.commits == [{A: 3}]


async def test_a_failed_commit_is_logged_and_the_next_batch_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work, consumer = Work(), FakeConsumer(refuse_commits=True)
    loop = batch_loop(work)

    with caplog.at_level(logging.WARNING):
        await loop.consume(records(A, 0, 1), consumer)
        consumer.refuse_commits = False
        await loop.consume(records(A, 2, 3), consumer)

    assert "offset commit failed (KafkaConnectionError)" in caplog.text
    assert consumer.commits == [{A: 4}]
    assert loop.failures == 0


async def test_lag_sums_high_water_minus_next_offset_over_the_partitions_held() -> None:
    series = Series()
    consumer = FakeConsumer(high={A: 10, B: 20})
    loop = batch_loop(Work(), series)

    await loop.consume(records(A, 0, 4), consumer)
    assert series.value("test_lag") == 5
    await loop.consume(records(B, 0, 14), consumer)
    assert series.value("test_lag") == 5 + 5
    consumer.held = {B}  # A moved to another member: its lag is no longer ours
    await loop.consume(records(B, 15, 19), consumer)
    assert series.value("test_lag") == 0


async def test_every_done_batch_is_timed_and_a_failed_one_is_not() -> None:
    series, consumer = Series(), FakeConsumer()
    loop = batch_loop(Work(failing=1), series)

    with pytest.raises(OSError, match="disk is full"):
        await loop.consume(records(A, 0, 1), consumer)
    await loop.consume(records(A, 0, 1), consumer)
    await loop.consume(records(A, 2, 3), consumer)

    assert series.value("test_batch_seconds_count") == 2


async def test_a_cancelled_handler_leaves_the_work_in_hand_to_end() -> None:
    work, consumer = Work(), FakeConsumer()
    work.gate = asyncio.Event()
    loop = batch_loop(work)

    handler = asyncio.create_task(loop.consume(records(A, 0, 1), consumer))
    await asyncio.sleep(0.01)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    work.gate.set()
    for _ in range(100):
        if consumer.commits:
            break
        await asyncio.sleep(0.01)

    assert work.stored == [records(A, 0, 1)]
    assert consumer.commits == [{A: 2}]


async def test_the_pause_after_a_failure_ends_at_once_when_the_loop_stops() -> None:
    loop = BatchLoop(
        "test",
        KafkaSettings(bootstrap_servers="localhost:9"),
        Work(failing=1),
        CollectorRegistry(),
        client_id="puente-test",
        backoff=Backoff(first=60, most=60),
    )
    handler = asyncio.create_task(loop.consume(records(A, 0, 0), FakeConsumer()))
    await asyncio.sleep(0.05)
    await loop.stop()

    with pytest.raises(OSError, match="disk is full"):
        await asyncio.wait_for(handler, 5)


def test_the_pause_doubles_from_the_first_up_to_the_most() -> None:
    backoff = Backoff(first=1.0, most=30.0)

    pauses = [backoff.after(n) for n in (1, 2, 3, 5, 6, 10_000)]

    assert pauses == [1.0, 2.0, 4.0, 16.0, 30.0, 30.0]


@pytest.mark.parametrize(
    "where",
    [
        {},
        {"topics": ("a",), "pattern": "hub[.]in[.].*"},
        {"pattern": "x", "partitions": (("a", 0),)},
    ],
)
def test_a_subscription_names_exactly_one_of_topics_pattern_or_partitions(
    where: dict[str, Any],
) -> None:
    subscription = Subscription(group_id="g", max_records=10, **where)

    with pytest.raises(ValueError, match="topics, a pattern or partitions"):
        subscription.where()


def test_fixed_partitions_are_assigned_and_never_declared() -> None:
    subscription = Subscription(
        group_id="g", max_records=10, partitions=(("hub.audit", 0), ("hub.audit", 1))
    )

    (partitions,) = subscription.where().values()

    assert [(p.topic, p.partition, p.declare) for p in partitions] == [
        ("hub.audit", 0, False),
        ("hub.audit", 1, False),
    ]


async def test_the_follow_up_work_runs_once_the_batch_was_committed() -> None:
    work, consumer = Work(), FakeConsumer()
    work.consumer = consumer
    loop = batch_loop(work)

    await loop.consume(records(A, 0, 1), consumer)
    await loop.consume(records(A, 2, 3), consumer)

    assert work.followed_up == [1, 2]


async def test_a_failed_follow_up_is_a_failed_batch_read_again() -> None:
    work, consumer = Work(), FakeConsumer()
    work.follow_up_fails = True
    loop = batch_loop(work)

    with pytest.raises(OSError, match="could not be signed"):
        await loop.consume(records(A, 4, 6), consumer)

    assert consumer.commits == [{A: 7}]
    assert consumer.seeks == [(A, 4)]
    assert loop.failures == 1


async def test_the_past_is_read_through_only_when_every_partition_is_done_up_to_it() -> (
    None
):
    work = Work()
    loop = batch_loop(work)
    consumer = FakeConsumer(high={A: 6, B: 3}, positions={A: 6, B: 2})
    await loop.consume(records(A, 0, 4), consumer)
    # A's position is at its high-water mark (past a transaction marker at 5); B's
    # is one short of it.
    assert not await loop.read_through(1_000, consumer)
    consumer.positions[B] = 3
    assert await loop.read_through(1_000, consumer)
    # New records on A, not read yet: the past is no longer wholly read...
    consumer.high[A] = 9
    assert not await loop.read_through(1_000, consumer)
    # ...unless a record done on A is newer than the moment asked about.
    await loop.consume([Record(A.topic, A.partition, 6, timestamp=2_000)], consumer)
    assert await loop.read_through(1_000, consumer)
    assert not await loop.read_through(3_000, consumer)
    # While a batch is in hand, a position says nothing about what is done.
    consumer.positions[A] = 9
    assert await loop.read_through(3_000, consumer)
    work.gate = asyncio.Event()
    in_hand = asyncio.ensure_future(loop.consume(records(A, 9, 9), consumer))
    await asyncio.sleep(0)
    assert not await loop.read_through(3_000, consumer)
    work.gate.set()
    await in_hand
    # Holding nothing (a rebalance) knows nothing.
    consumer.held = set()
    assert not await loop.read_through(1_000, consumer)
