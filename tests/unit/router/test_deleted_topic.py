"""A rejection topic deleted after the router saw it: forgotten, then created or held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.router import routing
from services.router.dedupe import DedupeStore
from services.router.held import RejectionTopics
from services.router.metrics import RouterMetrics
from services.router.pipeline import Output, Pipeline
from services.router.routing import BatchRouter
from services.runtime.topic_admin import TopicCreationRefusedError
from tests.unit.router.standins import (
    GHOST,
    HELD,
    MEMBER,
    REJECTED,
    HoldingConsumer,
    stranger_batch,
)

WAIT = 10.0

Send = Callable[[list[Output]], Awaitable[list[asyncio.Future[Any]]]]


class Broker:
    """Topics that exist; creating one is refused (no CREATE right)."""

    def __init__(self) -> None:
        self.topics = {REJECTED}
        self.asked: list[str] = []

    async def create(self, name: str) -> bool:
        self.asked.append(name)
        if name in self.topics:
            return False
        raise TopicCreationRefusedError(f"the broker refused to create topic {name}")


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
async def router(
    pipeline: Pipeline, store: DedupeStore, registry: CollectorRegistry, broker: Broker
) -> AsyncIterator[BatchRouter]:
    router = BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=cast(AIOKafkaProducer, object()),
        metrics=RouterMetrics(registry),
        institutions={"dgme"},
        group="test",
        rejection_topics=RejectionTopics(broker.create),
    )
    router.committer._pause = 0.0  # no back-off between failures in these tests
    yield router
    await router.close()


def _failing_send(sent: list[list[Output]], *, in_acks: bool) -> Send:
    """Sends refusals to a deleted topic: the send or its ack fails, as aiokafka's."""

    async def send(outputs: list[Output]) -> list[asyncio.Future[Any]]:
        sent.append(outputs)
        gone = any(o.topic == REJECTED for o in outputs)
        if gone and not in_acks:
            raise UnknownTopicOrPartitionError
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if gone:
            ack.set_exception(UnknownTopicOrPartitionError())
        else:
            ack.set_result(None)
        return [ack]

    return send


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        if check():
            return
        assert asyncio.get_running_loop().time() < deadline, f"not in {WAIT} s: {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("in_acks", [False, True], ids=["send", "ack"])
async def test_a_failed_send_to_a_deleted_rejection_topic_holds_only_its_partition(
    router: BatchRouter,
    broker: Broker,
    catalog: Catalog,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    in_acks: bool,
) -> None:
    checker = router.rejection_topics
    assert checker is not None
    checker.exist([REJECTED])  # seen before: its refusals are sent without asking
    sent: list[list[Output]] = []
    monkeypatch.setattr(router, "_send", _failing_send(sent, in_acks=in_acks))
    router.start()
    consumer = HoldingConsumer()
    batch = stranger_batch(catalog)

    # Deleted meanwhile: the batch fails, and the router forgets the topic.
    broker.topics.clear()
    await router.route(batch, consumer)
    await _until(lambda: router.committer.generation == 1, "the batch failed")
    assert not checker.known(REJECTED)
    assert consumer.positions == {MEMBER: 0, GHOST: 5}

    # Routed again, the refusal's topic is asked for, refused: only its partition held.
    await router.route(batch, consumer)
    await asyncio.wait_for(router.committer.drain(), WAIT)
    assert broker.asked == [REJECTED]
    assert router.committer.generation == 1  # the second time nothing failed
    assert [o.kind for o in sent[-1]].count("rejection") == 0
    assert consumer.paused == {GHOST}
    assert consumer.positions[GHOST] == 5
    assert router.held.waiting == {GHOST: REJECTED}
    assert registry.get_sample_value(HELD) == 1.0


class TransactionalProducer:
    """A transactional producer's calls; ``stuck`` ones never finish a commit."""

    def __init__(self, name: str, *, stuck: bool) -> None:
        self.name = name
        self.stuck = stuck
        self.calls: list[Any] = []

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.calls.append(("offsets", dict(offsets)))

    async def commit_transaction(self) -> None:
        if self.stuck:
            # As aiokafka's, waiting to add a deleted topic's partition: for ever.
            await asyncio.Event().wait()
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")

    async def stop(self) -> None:
        self.calls.append("stop")


async def test_a_transaction_stuck_on_a_deleted_topic_is_replaced_and_its_batch_held(
    router: BatchRouter,
    broker: Broker,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = router.rejection_topics
    assert checker is not None
    checker.exist([REJECTED])
    stuck = TransactionalProducer("stuck", stuck=True)
    fresh = TransactionalProducer("fresh", stuck=False)

    async def renew() -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, fresh)

    router.use_transactions(cast(AIOKafkaProducer, stuck), renew=renew, stuck_after=0.2)
    sent: list[list[Output]] = []

    async def send(outputs: list[Output]) -> list[asyncio.Future[Any]]:
        sent.append(outputs)
        return []

    monkeypatch.setattr(router, "_send", send)
    router.start()
    consumer = HoldingConsumer()
    batch = stranger_batch(catalog)
    broker.topics.clear()  # deleted after the router saw it

    await router.route(batch, consumer)
    await _until(lambda: router.committer.generation == 1, "the transaction given up")
    assert router.producer is cast(AIOKafkaProducer, fresh)
    assert stuck.calls == ["begin", ("offsets", {MEMBER: 3, GHOST: 8}), "stop"]
    assert not checker.known(REJECTED)

    await router.route(batch, consumer)
    await asyncio.wait_for(router.committer.drain(), WAIT)
    assert fresh.calls == ["begin", ("offsets", {MEMBER: 3}), "commit"]
    assert [o.kind for o in sent[-1]].count("rejection") == 0
    assert router.held.waiting == {GHOST: REJECTED}


class Cluster:
    """The producer's metadata: the topics it knows; tells listeners of updates."""

    def __init__(self) -> None:
        self.topics = {MEMBER.topic, REJECTED}
        self.listeners: set[Callable[[Cluster], None]] = set()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0} if topic in self.topics else None

    def add_listener(self, listener: Callable[[Cluster], None]) -> None:
        self.listeners.add(listener)

    def remove_listener(self, listener: Callable[[Cluster], None]) -> None:
        self.listeners.remove(listener)

    def update(self, topics: set[str]) -> None:
        self.topics = topics
        for listener in list(self.listeners):
            listener(self)


class Client:
    def __init__(self) -> None:
        self.cluster = Cluster()


class PlainProducer:
    """A producer whose metadata the test changes; counts its stops."""

    def __init__(self) -> None:
        self.client = Client()
        self.stopped = 0

    async def stop(self) -> None:
        self.stopped += 1


async def test_refusals_whose_topic_leaves_the_producer_s_metadata_are_given_up_at_once(
    pipeline: Pipeline,
    store: DedupeStore,
    registry: CollectorRegistry,
    broker: Broker,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stuck, fresh = PlainProducer(), PlainProducer()

    async def renew() -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, fresh)

    router = BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=cast(AIOKafkaProducer, stuck),
        metrics=RouterMetrics(registry),
        institutions={"dgme"},
        group="test",
        rejection_topics=RejectionTopics(broker.create),
        renew=renew,
    )
    router.committer._pause = 0.0
    checker = router.rejection_topics
    assert checker is not None
    checker.exist([REJECTED])
    sent: list[list[Output]] = []

    async def send(outputs: list[Output]) -> list[asyncio.Future[Any]]:
        # As aiokafka's for a deleted topic: no ack until the request timeout.
        sent.append(outputs)
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not any(o.topic == REJECTED for o in outputs):
            ack.set_result(None)
        return [ack]

    monkeypatch.setattr(router, "_send", send)
    router.start()
    consumer = HoldingConsumer()
    batch = stranger_batch(catalog)
    try:
        broker.topics.clear()
        await router.route(batch, consumer)
        await asyncio.sleep(0.3)
        assert router.committer.generation == 0  # the topic is still in the metadata
        stuck.client.cluster.update({MEMBER.topic, REJECTED})  # unrelated updates
        await asyncio.sleep(0.1)
        assert router.committer.generation == 0
        stuck.client.cluster.update({MEMBER.topic})  # a refresh lost it

        await _until(lambda: router.committer.generation == 1, "the refusals given up")
        await _until(lambda: router.producer is fresh, "the producer replaced")
        assert stuck.stopped == 1
        assert not checker.known(REJECTED)

        await router.route(batch, consumer)
        await asyncio.wait_for(router.committer.drain(), WAIT)
        assert router.committer.generation == 1
        assert [o.kind for o in sent[-1]].count("rejection") == 0
        assert router.held.waiting == {GHOST: REJECTED}
    finally:
        await router.close()


class RefreshingClient(Client):
    """A producer client whose metadata refresh finds what the test deleted."""

    def __init__(self) -> None:
        super().__init__()
        self.broker_topics = set(self.cluster.topics)
        self.refreshes = 0

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        self.cluster.update(set(self.broker_topics))
        return True


async def test_a_transaction_waiting_on_a_deleted_topic_is_given_up_within_seconds(
    router: BatchRouter,
    broker: Broker,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routing, "CHECK_SECONDS", 0.05)
    checker = router.rejection_topics
    assert checker is not None
    checker.exist([REJECTED])
    stuck = TransactionalProducer("stuck", stuck=True)
    client = RefreshingClient()
    stuck.client = client  # type: ignore[attr-defined]
    fresh = TransactionalProducer("fresh", stuck=False)

    async def renew() -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, fresh)

    # Far beyond the test's patience: only the refreshed metadata can end it.
    router.use_transactions(cast(AIOKafkaProducer, stuck), renew=renew, stuck_after=600)

    async def send(outputs: list[Output]) -> list[asyncio.Future[Any]]:
        return []

    monkeypatch.setattr(router, "_send", send)
    router.start()
    consumer = HoldingConsumer()
    broker.topics.clear()
    client.broker_topics.discard(REJECTED)

    await router.route(stranger_batch(catalog), consumer)
    await _until(lambda: router.producer is cast(AIOKafkaProducer, fresh), "replaced")
    assert client.refreshes >= 1
    assert "stop" in stuck.calls
    assert not checker.known(REJECTED)

    await router.route(stranger_batch(catalog), consumer)
    await asyncio.wait_for(router.committer.drain(), WAIT)
    assert router.held.waiting == {GHOST: REJECTED}
