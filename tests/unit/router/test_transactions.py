"""Exactly-once routing: a batch's outputs and input offsets in one Kafka transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.router.dedupe import DedupeStore
from services.router.metrics import RouterMetrics
from services.router.pipeline import Output, Pipeline
from services.router.routing import BatchRouter, OutputsDroppedError, _Parcel
from tests.unit.router.standins import record

TOPIC = "hub.in.dgme.return_arrival"
TP = TopicPartition(TOPIC, 0)


class TransactionalProducer:
    """Records the transactional calls; ``fail_commits`` commits raise."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.fail_commits = 0

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.calls.append(("offsets", dict(offsets), group_id))

    async def commit_transaction(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            self.calls.append("commit failed")
            raise KafkaConnectionError("broker gone")
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")


class Consumer:
    """The consumer calls the router and committer make."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.assigned = {TP}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def highwater(self, partition: TopicPartition) -> int | None:
        return None


@pytest.fixture
async def router(
    pipeline: Pipeline, tmp_path: Path, registry: CollectorRegistry
) -> AsyncIterator[BatchRouter]:
    store = DedupeStore(tmp_path / "dedupe.sqlite")
    router = BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=cast(AIOKafkaProducer, object()),
        metrics=RouterMetrics(registry),
        institutions={"dgme", "conapina", "minsal"},
        group="puente-router",
    )
    router.committer._pause = 0.0  # no back-off between failures in these tests
    yield router
    await router.close()
    store.close()


@pytest.fixture
async def producer(
    router: BatchRouter, monkeypatch: pytest.MonkeyPatch
) -> TransactionalProducer:
    fake = TransactionalProducer()
    router.use_transactions(cast(AIOKafkaProducer, fake))

    async def send(outputs: list[Output]) -> list[asyncio.Future[Any]]:
        fake.calls.append(("send", len(outputs)))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    monkeypatch.setattr(router, "_send", send)
    router.start()
    return fake


def consumed(catalog: Catalog, first: int, count: int) -> tuple[list[Any], list[str]]:
    """``count`` consumed records of valid events from ``first`` on, and their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    records = []
    for offset, event_id in enumerate(ids, start=first):
        inbound = record(catalog, TOPIC, event_id=event_id)
        value = inbound.value or b""
        records.append(
            ConsumerRecord(TOPIC, 0, offset, inbound.timestamp_ms, 0, None, value,
                           None, 0, len(value), [])
        )  # fmt: skip
    return records, ids


async def test_a_batch_s_outputs_and_next_offsets_commit_in_one_transaction(
    router: BatchRouter, producer: TransactionalProducer, catalog: Catalog
) -> None:
    consumer = Consumer()
    records, ids = consumed(catalog, 0, 3)
    await router.route(records, consumer)
    await asyncio.wait_for(router.committer.drain(), 5)

    sends = [c for c in producer.calls if isinstance(c, tuple) and c[0] == "send"]
    assert producer.calls == [
        "begin",
        *sends,
        ("offsets", {TP: 3}, "puente-router"),
        "commit",
    ]
    assert sends
    assert sends[0][1] > 0
    assert consumer.commits == []  # the offsets went with the outputs
    assert sorted(router.store.lookup(ids)) == sorted(ids)
    assert router.stats.records == 3


async def test_a_failed_transaction_is_aborted_and_its_records_are_read_again(
    router: BatchRouter, producer: TransactionalProducer, catalog: Catalog
) -> None:
    producer.fail_commits = 1
    consumer = Consumer()
    records, ids = consumed(catalog, 0, 3)
    await router.route(records, consumer)
    await asyncio.wait_for(router.committer.drain(), 5)

    assert producer.calls[-2:] == ["commit failed", "abort"]
    assert consumer.seeks == [(TP, 0)]  # back to the last committed offset
    assert router.store.lookup(ids) == {}  # not remembered: routed again when re-read
    assert router.committer.in_flight(ids) == {}
    assert router.stats.records == 0

    await router.route(records, consumer)  # the re-read records
    await asyncio.wait_for(router.committer.drain(), 5)
    assert producer.calls[-2:] == [("offsets", {TP: 3}, "puente-router"), "commit"]
    assert sorted(router.store.lookup(ids)) == sorted(ids)


async def test_after_an_aborted_transaction_later_batches_of_its_generation_are_dropped(
    router: BatchRouter, producer: TransactionalProducer, catalog: Catalog
) -> None:
    """Committing a later batch's offsets would skip the aborted batch's records."""
    producer.fail_commits = 1
    consumer = Consumer()
    first, _ = consumed(catalog, 0, 2)
    second, _ = consumed(catalog, 2, 2)
    await router.route(first, consumer)
    # Decided before the committer learns of the abort: the same generation.
    await router.route(second, consumer)
    await asyncio.wait_for(router.committer.drain(), 5)

    assert "commit failed" in producer.calls
    assert "commit" not in producer.calls  # in whichever order the tasks ran
    assert consumer.seeks[0] == (TP, 0)


async def test_outputs_of_records_a_rebalance_moved_away_are_aborted_not_committed(
    router: BatchRouter,
    producer: TransactionalProducer,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another router reads them from the last committed offset and routes them."""
    consumer = Consumer()
    send = router._send

    async def send_then_lose_the_partition(outputs: list[Output]) -> Any:
        consumer.assigned = set()  # the group rebalanced while the outputs went out
        return await send(outputs)

    monkeypatch.setattr(router, "_send", send_then_lose_the_partition)
    records, ids = consumed(catalog, 0, 3)
    await router.route(records, consumer)
    await asyncio.wait_for(router.committer.drain(), 5)

    assert producer.calls[-1] == "abort"
    assert "commit" not in producer.calls
    assert router.store.lookup(ids) == {}


async def test_a_parcel_of_the_generation_of_an_aborted_transaction_is_not_sent(
    router: BatchRouter,
) -> None:
    generation = router.committer.generation
    router._aborted = generation
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert router._current([_Parcel(generation, [], sent, {TP: 1})]) == []
    assert isinstance(sent.exception(), OutputsDroppedError)

    router._aborted = -1
    fresh: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    parcel = _Parcel(generation, [], fresh, {TP: 1})
    assert router._current([parcel]) == [parcel]
