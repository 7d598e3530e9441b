"""Read delivery topics from their beginning to their end: how a service rebuilds state.

A recipient service's delivery topics hold every event the policy delivered to it,
so its state is reproducible from them alone. This module reads them once, batch by
batch, and hands each batch to the service's own store; the service decides what a
batch does and how a broker failure is reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime.kafka import admin_config, consumer_config
from services.runtime.pubsub import caught_up
from services.runtime.settings import KafkaSettings

# One partition's records of one fetch; the service decodes and applies them.
ApplyBatch = Callable[[list[ConsumerRecord[bytes, bytes]]], None]


async def read_from_beginning(
    kafka: KafkaSettings, topics: Sequence[str], client: str, apply: ApplyBatch
) -> None:
    """Hand every record of ``topics`` to ``apply``, a partition's batch at a time.

    Returns once every partition is read to its high watermark (at once if none of
    ``topics`` exists). A broker failure propagates as ``aiokafka.errors.KafkaError``.
    """
    name = f"{client}-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, name))
    try:
        assigned = await partitions(kafka, topics, name)
        if not assigned:
            return  # nothing was ever delivered to the service
        await consumer.start()
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                apply(records)
            if not batch and await caught_up(consumer, assigned):
                return
    finally:
        await consumer.stop()


async def partitions(
    kafka: KafkaSettings, topics: Sequence[str], client: str
) -> list[TopicPartition]:
    """The partitions of those of ``topics`` that exist, asked of the broker.

    A consumer's metadata cache may not list a topic it never subscribed to (Apache
    Kafka answers its first metadata request for no topic), so an admin client asks.
    """
    admin = AIOKafkaAdminClient(**admin_config(kafka, client))
    await admin.start()
    try:
        listed = set(await admin.list_topics())
        existing = [t for t in topics if t in listed]
        described = await admin.describe_topics(existing) if existing else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    )
