"""Reading and writing real topics in integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import KafkaSettings


def header(record: Any, name: str) -> str | None:
    """The value of header ``name`` of a consumer record, decoded."""
    for key, value in record.headers:
        if key == name:
            return (value or b"").decode()
    return None


async def produce(
    kafka: KafkaSettings,
    records: Iterable[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]],
) -> list[tuple[str, int, int]]:
    """Produce (topic, key, value, headers) records; return their positions."""
    producer = AIOKafkaProducer(**producer_config(kafka, "test-producer"))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        done = await asyncio.gather(*futures)
        return [(m.topic, m.partition, m.offset) for m in done]
    finally:
        await producer.stop()


async def collect(
    kafka: KafkaSettings,
    topics: Iterable[str],
    keep: Callable[[Any], bool],
    *,
    expected: int | None = None,
    timeout: float = 30.0,
    settle: float = 1.0,
) -> list[Any]:
    """Records of ``topics`` (from the beginning) that ``keep`` accepts.

    Stops when ``expected`` records were found (then waits ``settle`` seconds more to
    catch extras), or at ``timeout``.
    """
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-collector"))
    await consumer.start()
    found: list[Any] = []
    try:
        existing = await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return found
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=200)
            found.extend(r for rs in batch.values() for r in rs if keep(r))
            if expected is not None and len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
        return found
    finally:
        await consumer.stop()
