"""Publish natural-JSON events and read hub topics back, for the CLI and tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, PuenteError
from services.contracts.natural import codec_for
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import KafkaSettings


class BrokerUnavailableError(PuenteError):
    """The Kafka cluster could not be reached or refused a request (retriable)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class Prepared:
    """One event ready to send: topic, key, value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: headers.KafkaHeaders
    event_id: str


def prepare(catalog: Catalog, event_type: str, source: str, natural: Any) -> Prepared:
    """Validate a natural-JSON event; encode it for ``hub.in.<source>.<event_type>``."""
    entry = catalog.get(event_type)
    datum = codec_for(entry).to_datum(natural)
    envelope = datum["envelope"]
    if envelope["event_type"] != event_type:
        raise ContractError(
            f"envelope.event_type is {envelope['event_type']!r} but the event is "
            f"published as {event_type!r}"
        )
    if envelope["source_institution_id"] != source:
        raise ContractError(
            f"envelope.source_institution_id is {envelope['source_institution_id']!r} "
            f"but the event is published as {source!r}; "
            "the topic is the publisher's identity"
        )
    return Prepared(
        topic=topics.inbound(source, event_type),
        key=partition_key(entry, datum),
        value=codec.encode(entry, datum),
        headers=headers.build(headers.for_envelope(envelope)),
        event_id=str(envelope["event_id"]),
    )


def partition_key(entry: SchemaEntry, datum: Any) -> bytes:
    """``referral_id`` for referrals (keeps a lifecycle in order), else the event id."""
    if entry.name == "referral":
        return str(datum["payload"]["referral_id"]).encode()
    key = datum["envelope"].get("subject_key") or datum["envelope"]["event_id"]
    return str(key).encode()


async def send_all(
    kafka: KafkaSettings,
    events: Sequence[Prepared],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Send every event without awaiting each, then wait for all acknowledgements."""
    producer = AIOKafkaProducer(**producer_config(kafka, "puente-cli"))
    try:
        await producer.start()
        pending = []
        for event in events:
            future = await producer.send(
                event.topic, event.value, key=event.key, headers=event.headers
            )
            pending.append(future)
        for done, future in enumerate(pending, 1):
            await future
            if progress:
                progress(done)
    except KafkaError as e:
        raise BrokerUnavailableError(f"publishing failed: {e}") from e
    finally:
        await producer.stop()


@dataclass(frozen=True, slots=True)
class Received:
    """One record read from a hub topic, decoded when possible."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    schema: str | None
    value: Any
    error: str | None


def decode_record(catalog: Catalog, record: Any) -> Received:
    """Decode one consumer record to natural JSON, or describe why it cannot be."""
    hdrs = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}
    base = (record.topic, record.partition, record.offset, record.key, hdrs)
    try:
        entry, datum = codec.decode(catalog, record.value or b"")
    except ContractError as e:
        return Received(*base, None, None, f"{e.reason}: {e}")
    return Received(
        *base, f"{entry.name} v{entry.version}", codec_for(entry).to_natural(datum), None
    )


async def read(
    kafka: KafkaSettings,
    catalog: Catalog,
    topic: str,
    *,
    last: int | None,
    follow: bool,
    idle_ms: int = 1000,
) -> AsyncIterator[Received]:
    """Yield records of ``topic``: the last ``last`` per partition (None: all)."""
    consumer = AIOKafkaConsumer(
        **consumer_config(kafka, None, f"puente-tail-{uuid.uuid4().hex[:6]}")
    )
    try:
        await consumer.start()
        # Fresh metadata: the consumer's own may not hold the topic (Apache Kafka
        # answers its first request, which names no topic, with none). The await
        # also lets aiokafka start its internal task, which a stop right after start
        # would otherwise fail on.
        cluster = await consumer._client.fetch_all_metadata()
        if topic not in cluster.topics():
            raise ContractError(f"topic {topic} does not exist")
        partitions = cluster.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if last is not None:
            await _seek_to_last(consumer, assigned, last)
        else:
            await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            for records in batch.values():
                for record in records:
                    yield decode_record(catalog, record)
            if not batch and not follow and await caught_up(consumer, assigned):
                return
    except KafkaError as e:
        raise BrokerUnavailableError(f"reading {topic} failed: {e}") from e
    finally:
        await consumer.stop()


async def caught_up(consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> bool:
    """Whether every partition's position has reached its known high-water mark."""
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is not None and await consumer.position(tp) < high:
            return False
    return True


async def _seek_to_last(
    consumer: AIOKafkaConsumer, assigned: list[TopicPartition], last: int
) -> None:
    # end_offsets/seek_to_end are wrong on the embedded broker; the high-water mark
    # learned from one fetch is right on both brokers.
    await consumer.seek_to_beginning(*assigned)
    await consumer.getmany(timeout_ms=500)
    starts = await consumer.beginning_offsets(assigned)
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is not None:
            consumer.seek(tp, max(starts[tp], high - last))
