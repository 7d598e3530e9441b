"""Publish natural-JSON events and read hub topics back, for the CLI and tests."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, PuenteError
from services.contracts.natural import codec_for
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

# Default seconds ``send_all`` waits for the broker to start and for each next ack.
PUBLISH_TIMEOUT_S: Final = 30.0
# Seconds a failed publish waits for its producer to close (normally milliseconds).
ABANDON_S: Final = 2.0


class BrokerUnavailableError(PuenteError):
    """The Kafka cluster could not be reached or refused a request (retriable)."""

    retriable = True


class PublishIncompleteError(BrokerUnavailableError):
    """The broker acknowledged only some events; the others may or may not be stored.

    Publishing every event again is safe: the router routes an event id once.
    """

    def __init__(self, what: str, acknowledged: Sequence[Prepared], total: int) -> None:
        self.acknowledged = tuple(acknowledged)
        self.total = total
        left = total - len(self.acknowledged)
        super().__init__(
            f"{what}: {len(self.acknowledged)} of {total} event(s) acknowledged; "
            f"the other {left} may or may not be stored. Publishing all {total} again "
            "is safe: the hub de-duplicates by event id"
        )


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
    *,
    wait_s: float = PUBLISH_TIMEOUT_S,
) -> None:
    """Send every event without awaiting each, then wait for all acknowledgements.

    The broker has ``wait_s`` seconds to answer the start and then to acknowledge
    each next event. An idempotent producer never gives an event up (it retries until
    a broker takes it), so without this bound a publish would wait out a whole outage.
    Raises `PublishIncompleteError` (naming the acknowledged events) when the broker
    does not answer in time or fails.
    """
    producer = AIOKafkaProducer(**producer_config(kafka, "puente-cli"))
    try:
        await _start(producer, kafka, wait_s)
        await _Acks(events).wait_all(producer, wait_s, progress)
    except BaseException:
        await _abandon(producer)
        raise
    await producer.stop()


async def _start(producer: AIOKafkaProducer, kafka: KafkaSettings, wait_s: float) -> None:
    """Start ``producer``; nothing is sent yet, so a failure stores nothing."""
    where = kafka.bootstrap_servers
    try:
        async with asyncio.timeout(wait_s):
            await producer.start()
    except TimeoutError as e:
        raise BrokerUnavailableError(
            f"the broker at {where} did not answer within {wait_s:g} s; "
            "nothing was published"
        ) from e
    except KafkaConnectionError as e:
        raise BrokerUnavailableError(
            f"cannot reach the broker at {where}; nothing was published"
        ) from e
    except KafkaError as e:
        raise BrokerUnavailableError(
            f"the broker at {where} refused the connection ({type(e).__name__}: {e}); "
            "nothing was published"
        ) from e


class _Acks:
    """The acknowledgements of one publish, counted as they arrive."""

    def __init__(self, events: Sequence[Prepared]) -> None:
        self.events = events
        self.pending: list[asyncio.Future[Any]] = []

    async def wait_all(
        self,
        producer: AIOKafkaProducer,
        wait_s: float,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Send every event, then wait for each acknowledgement in turn.

        Every step has ``wait_s`` from the one before: a send waits only while the
        producer's buffer is full, which acknowledgements empty.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait_s) as bound:
                for event in self.events:
                    self.pending.append(
                        await producer.send(
                            event.topic, event.value, key=event.key, headers=event.headers
                        )
                    )
                    bound.reschedule(loop.time() + wait_s)
                for done, future in enumerate(self.pending, 1):
                    # Shielded: cancelling the wait must not cancel the event's delivery
                    # future, whose outcome is counted below.
                    await asyncio.shield(future)
                    bound.reschedule(loop.time() + wait_s)
                    if progress:
                        progress(done)
        except TimeoutError as e:
            raise self.incomplete(f"no acknowledgement within {wait_s:g} s") from e
        except KafkaError as e:
            raise self.incomplete(f"the broker failed ({type(e).__name__})") from e

    def acknowledged(self) -> list[Prepared]:
        """The events the broker has acknowledged so far, in the order given."""
        return [
            event
            for event, future in zip(self.events, self.pending, strict=False)
            if future.done() and not future.cancelled() and future.exception() is None
        ]

    def incomplete(self, what: str) -> PublishIncompleteError:
        """The error for a publish that ends before every acknowledgement."""
        for future in self.pending:
            # Their outcome is counted above and no longer awaited.
            future.add_done_callback(_outcome_seen)
        return PublishIncompleteError(what, self.acknowledged(), len(self.events))


def _outcome_seen(future: asyncio.Future[Any]) -> None:
    # Marks a failed delivery's exception as retrieved, so asyncio does not log it.
    if not future.cancelled():
        future.exception()


async def _abandon(producer: AIOKafkaProducer) -> None:
    """Close ``producer`` without waiting for events in the air to be delivered.

    ``stop()`` alone flushes first, and an idempotent producer's flush lasts as long
    as the broker is away; the caller has said that those events may not be stored.
    aiokafka has no call that drops pending batches, so its sender task is ended
    first (then ``stop()`` finds nothing left to flush with and only closes).
    """
    sender = producer._sender
    try:
        async with asyncio.timeout(ABANDON_S):
            if sender is not None:
                await sender.close()
            await producer.stop()
    except TimeoutError:
        log.warning("the producer did not close within %g s", ABANDON_S)


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
