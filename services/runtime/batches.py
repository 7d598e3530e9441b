"""Whole record batches per partition, built by the hub's producers themselves.

The broker's cost is per record batch, and one batch per partition is written
whole or not at all: a failed batch leaves no later record of its partition
ahead of it, which is what keeps a retried partition in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer

from services.contracts.headers import KafkaHeaders
from services.runtime.kafka import crc32_partitioner


class Record(Protocol):
    """What a record needs to be produced."""

    @property
    def topic(self) -> str:
        """Where it goes."""

    @property
    def key(self) -> bytes | None:
        """Its partitioning key."""

    @property
    def value(self) -> bytes:
        """Its encoded value."""

    @property
    def headers(self) -> KafkaHeaders:
        """Its headers."""


class Partitions:
    """Partition lists of topics, asked of the producer once per topic.

    Partition counts are final at topic creation (the embedded broker cannot add any),
    so they can be kept until ``forget`` (a broker that lost its topics).
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._known: dict[str, list[int]] = {}

    async def of(self, topic: str) -> list[int]:
        """The partitions of ``topic``, waiting for its metadata if need be."""
        known = self._known.get(topic)
        if known is None:
            known = sorted(await self._producer.partitions_for(topic))
            self._known[topic] = known
        return known

    async def warm(self, topics: Iterable[str]) -> None:
        """Ask for ``topics``' partitions now, all at once.

        Otherwise the first record to each topic waits for a metadata round trip:
        after a start, the first delivery to every recipient topic came late.
        """
        await asyncio.gather(*(self.of(t) for t in set(topics) - self._known.keys()))

    def forget(self) -> None:
        """Ask again next time."""
        self._known.clear()


R = TypeVar("R", bound=Record)


async def by_partition(
    records: Iterable[R], partitions: Partitions
) -> dict[tuple[str, int], list[R]]:
    """``records`` grouped by (topic, partition), each group in the given order."""
    groups: dict[tuple[str, int], list[R]] = {}
    for record in records:
        numbers = await partitions.of(record.topic)
        partition = crc32_partitioner(record.key, numbers, numbers)
        groups.setdefault((record.topic, partition), []).append(record)
    return groups


def fill(producer: AIOKafkaProducer, records: Sequence[Record]) -> Iterator[Any]:
    """``records`` packed into as few aiokafka batches as their size allows."""
    batch = producer.create_batch()
    for record in records:
        if _append(batch, record) is None:  # full: hand it over, go on in a new one
            yield batch
            batch = producer.create_batch()
            _append(batch, record)
    yield batch


def _append(batch: Any, record: Record) -> Any:
    return batch.append(
        key=record.key, value=record.value, timestamp=None, headers=record.headers
    )
