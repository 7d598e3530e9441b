"""Holding back a partition whose refusal has no rejection topic, and resuming it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from services.router.stalls import Stalls, TopicCheck

TP = TopicPartition("hub.in.ghost.referral", 0)
REJECTED = "hub.rejected.ghost"


class FakeConsumer:
    """Records seeks, pauses and resumes of the partitions it holds."""

    def __init__(self, held: set[TopicPartition]) -> None:
        self.held = held
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)


class FakeProducer:
    """A producer whose cluster knows ``cached`` and whose broker holds ``listed``."""

    def __init__(self, cached: set[str], listed: set[str]) -> None:
        self.listed = listed
        self.requests = 0
        cluster = SimpleNamespace(
            partitions_for_topic=lambda t: {0} if t in cached else None
        )
        self.client = SimpleNamespace(cluster=cluster, fetch_all_metadata=self._fetch)

    async def _fetch(self) -> Any:
        self.requests += 1
        listed = set(self.listed)
        return SimpleNamespace(topics=lambda: listed)


def stalls() -> tuple[Stalls, CollectorRegistry]:
    registry = CollectorRegistry()
    return Stalls(Gauge("stalled", "held back", registry=registry)), registry


async def test_a_topic_the_producer_knows_is_present_without_asking_the_broker() -> None:
    producer = FakeProducer(cached={REJECTED}, listed=set())
    assert await TopicCheck(producer).missing([REJECTED]) == set()
    assert producer.requests == 0


async def test_a_missing_topic_is_asked_for_once_per_recheck_interval() -> None:
    producer = FakeProducer(cached=set(), listed=set())
    check = TopicCheck(producer, recheck=3600)
    assert await check.missing([REJECTED]) == {REJECTED}
    assert await check.missing([REJECTED]) == {REJECTED}
    assert producer.requests == 1


async def test_a_held_partition_is_paused_at_the_record_and_counted() -> None:
    consumer = FakeConsumer({TP})
    held, registry = stalls()
    held.hold(consumer, TP, 7, REJECTED)
    assert consumer.positions[TP] == 7
    assert consumer.paused == {TP}
    assert registry.get_sample_value("stalled") == 1.0


async def test_a_held_partition_resumes_once_its_rejection_topic_exists() -> None:
    consumer = FakeConsumer({TP})
    producer = FakeProducer(cached=set(), listed=set())
    check = TopicCheck(producer, recheck=3600)
    held, registry = stalls()
    held.hold(consumer, TP, 7, REJECTED)
    await held.recheck(consumer, check)
    assert consumer.paused == {TP}
    producer.listed.add(REJECTED)
    await held.recheck(consumer, check)
    assert consumer.paused == set()
    assert registry.get_sample_value("stalled") == 0.0


async def test_a_held_partition_moved_to_another_router_is_no_longer_counted() -> None:
    consumer = FakeConsumer({TP})
    held, registry = stalls()
    held.hold(consumer, TP, 7, REJECTED)
    consumer.held.clear()
    await held.recheck(consumer, TopicCheck(FakeProducer(set(), set())))
    assert registry.get_sample_value("stalled") == 0.0
