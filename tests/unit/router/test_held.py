"""A refusal's missing rejection topic: created if allowed, else its partition held."""

from __future__ import annotations

import logging
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.router.dedupe import DedupeStore
from services.router.held import HeldPartitions, RejectionTopics
from services.router.metrics import RouterMetrics
from services.router.pipeline import Pipeline
from services.router.routing import BatchRouter
from services.runtime.consume import Backoff
from services.runtime.topic_admin import TopicCreationRefusedError
from tests.unit.router.standins import (
    GHOST,
    HELD,
    MEMBER,
    REJECTED,
    HoldingConsumer,
    consumed,
    stranger_batch,
)


class Broker:
    """Creates topics as asked, unless it refuses them; counts the requests."""

    def __init__(self, *, refuse: bool) -> None:
        self.refuse = refuse
        self.topics: set[str] = set()
        self.asked: list[str] = []

    async def create(self, name: str) -> bool:
        self.asked.append(name)
        if name in self.topics:
            return False
        if self.refuse:
            raise TopicCreationRefusedError(
                f"the broker refused to create topic {name}: "
                "TopicAuthorizationFailedError"
            )
        self.topics.add(name)
        return True


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _checker(broker: Broker, clock: Clock) -> RejectionTopics:
    return RejectionTopics(broker.create, retry=Backoff(first=1.0, most=4.0), clock=clock)


async def test_a_topic_the_router_started_with_is_never_asked_for() -> None:
    broker = Broker(refuse=True)
    topics = _checker(broker, Clock())
    topics.exist([REJECTED])
    assert await topics.missing([REJECTED]) == set()
    assert broker.asked == []


async def test_a_missing_topic_the_broker_lets_the_router_create_is_created_once() -> (
    None
):
    broker = Broker(refuse=False)
    topics = _checker(broker, Clock())
    assert await topics.missing([REJECTED]) == set()
    assert await topics.missing([REJECTED]) == set()
    assert broker.topics == {REJECTED}
    assert broker.asked == [REJECTED]


async def test_a_refused_topic_is_asked_for_again_only_after_its_back_off() -> None:
    broker, clock = Broker(refuse=True), Clock()
    topics = _checker(broker, clock)
    assert await topics.missing([REJECTED]) == {REJECTED}
    assert "TopicAuthorizationFailedError" in topics.why[REJECTED]
    clock.now += 0.9
    assert await topics.missing([REJECTED]) == {REJECTED}
    assert len(broker.asked) == 1
    clock.now += 0.2  # past the first second
    assert await topics.missing([REJECTED]) == {REJECTED}
    assert len(broker.asked) == 2
    clock.now += 1.5  # the second wait is two seconds
    assert await topics.missing([REJECTED]) == {REJECTED}
    assert len(broker.asked) == 2
    broker.topics.add(REJECTED)  # an admin creates it
    clock.now += 1.0
    assert await topics.missing([REJECTED]) == set()
    assert REJECTED not in topics.why


def _held() -> tuple[HeldPartitions, CollectorRegistry]:
    registry = CollectorRegistry()
    return HeldPartitions(RouterMetrics(registry).partitions_held), registry


async def test_a_held_partition_is_paused_at_the_record_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = HoldingConsumer({GHOST})
    held, registry = _held()
    caplog.set_level(logging.INFO)
    held.hold(consumer, GHOST, 7, REJECTED, "refused")
    held.hold(consumer, GHOST, 7, REJECTED, "refused")  # read again after a rebalance
    assert consumer.positions[GHOST] == 7
    assert consumer.paused == {GHOST}
    assert registry.get_sample_value(HELD) == 1.0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{GHOST.topic}[0] held at offset 7" in errors[0]
    assert f"Create {REJECTED}" in errors[0]


async def test_a_held_partition_resumes_once_its_rejection_topic_exists() -> None:
    consumer = HoldingConsumer({GHOST})
    broker, clock = Broker(refuse=True), Clock()
    topics = _checker(broker, clock)
    held, registry = _held()
    held.hold(consumer, GHOST, 7, REJECTED, "refused")
    await held.recheck(consumer, topics)
    assert consumer.paused == {GHOST}
    broker.topics.add(REJECTED)
    clock.now += 10
    await held.recheck(consumer, topics)
    assert consumer.paused == set()
    assert registry.get_sample_value(HELD) == 0.0


async def test_a_held_partition_moved_to_another_router_is_no_longer_counted() -> None:
    consumer = HoldingConsumer({GHOST})
    held, registry = _held()
    held.hold(consumer, GHOST, 7, REJECTED, "refused")
    consumer.held.clear()
    await held.recheck(consumer, _checker(Broker(refuse=True), Clock()))
    assert registry.get_sample_value(HELD) == 0.0


def _router(
    pipeline: Pipeline, store: DedupeStore, registry: CollectorRegistry, broker: Broker
) -> BatchRouter:
    # No sender task runs (start() is not called): the outputs stay in the outbox.
    return BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=cast(AIOKafkaProducer, object()),
        metrics=RouterMetrics(registry),
        institutions={"dgme"},
        group="test",
        rejection_topics=RejectionTopics(broker.create),
    )


async def test_a_refused_creation_holds_only_the_strangers_partition(
    pipeline: Pipeline, store: DedupeStore, registry: CollectorRegistry, catalog: Catalog
) -> None:
    router = _router(pipeline, store, registry, Broker(refuse=True))
    consumer = HoldingConsumer({GHOST, MEMBER})
    await router.route(stranger_batch(catalog), consumer)
    parcel = router._outbox.get_nowait()
    assert {o.kind for o in parcel.outputs} == {"delivery", "audit"}
    # Nothing of the stranger's partition is committed: it goes on at offset 5.
    assert parcel.offsets == {MEMBER: 3}
    assert consumer.positions == {GHOST: 5}
    assert consumer.paused == {GHOST}
    assert registry.get_sample_value(HELD) == 1.0


async def test_a_batch_fetched_before_the_hold_is_dropped_and_sought_back(
    pipeline: Pipeline, store: DedupeStore, registry: CollectorRegistry, catalog: Catalog
) -> None:
    router = _router(pipeline, store, registry, Broker(refuse=True))
    consumer = HoldingConsumer({GHOST, MEMBER})
    await router.route(stranger_batch(catalog), consumer)
    consumer.positions.clear()
    await router.route([consumed(GHOST, 8, b"\x00late")], consumer)
    assert consumer.positions == {GHOST: 5}
    router._outbox.get_nowait()
    late = router._outbox.get_nowait()
    assert (late.outputs, late.offsets) == ([], {})  # the late record was not routed


async def test_a_missing_topic_the_router_may_create_holds_nothing(
    pipeline: Pipeline, store: DedupeStore, registry: CollectorRegistry, catalog: Catalog
) -> None:
    broker = Broker(refuse=False)  # the embedded broker: anyone may create
    router = _router(pipeline, store, registry, broker)
    consumer = HoldingConsumer({GHOST, MEMBER})
    await router.route(stranger_batch(catalog), consumer)
    parcel = router._outbox.get_nowait()
    rejections = [o for o in parcel.outputs if o.kind == "rejection"]
    assert [o.topic for o in rejections] == [REJECTED] * 3
    assert parcel.offsets == {MEMBER: 3, GHOST: 8}
    assert broker.topics == {REJECTED}
    assert consumer.paused == set()
    assert registry.get_sample_value(HELD) == 0.0
