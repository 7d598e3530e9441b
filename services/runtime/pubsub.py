"""Publish natural-JSON events and read hub topics back, for the CLI and tests."""

from __future__ import annotations

import asyncio
import logging
import time
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
from services.runtime.kafka import bootstrap, consumer_config, producer_config
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

# Default seconds ``send_all`` waits for the broker to start and for each next ack.
PUBLISH_TIMEOUT_S: Final = 30.0
# Seconds a failed publish waits for its producer to close (normally milliseconds).
ABANDON_S: Final = 2.0
# Default seconds ``read`` waits, without follow, for a broker that stops answering.
READ_TIMEOUT_S: Final = 30.0
# Seconds one question to the broker may take while reading.
PROBE_S: Final = 5.0
# Seconds between attempts to reach a broker that a follower waits for.
RETRY_S: Final = 1.0


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


class ReadIncompleteError(BrokerUnavailableError):
    """The broker stopped answering before every record of the topic was read."""


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
    wait_s: float = READ_TIMEOUT_S,
    notify: Callable[[str], None] | None = None,
) -> AsyncIterator[Received]:
    """Yield records of ``topic``: the last ``last`` per partition (None: all).

    Without ``follow`` it ends at the end of the topic; it raises
    `BrokerUnavailableError` when the broker cannot be reached at the start, and
    `ReadIncompleteError` when the broker answers nothing for ``wait_s`` seconds
    before the end. With ``follow`` it waits for the broker as long as it takes and
    tells ``notify`` once that it waits and once that the broker answers again.
    """
    watch = _BrokerWatch(bootstrap(kafka), topic, wait_s, notify, follow=follow)
    consumer = await _connect(kafka, watch)
    try:
        assigned = await _assign(consumer, topic)
        watch.answered()
        if last is not None:
            await _seek_to_last(consumer, assigned, last)
        else:
            await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            for records in batch.values():
                for record in records:
                    yield decode_record(catalog, record)
            if batch:
                watch.answered()
            elif not follow and await caught_up(consumer, assigned):
                return
            else:
                await watch.check(consumer)
                await _rewind_where_truncated(consumer, assigned)
    except KafkaError as e:
        raise BrokerUnavailableError(
            f"reading {topic} from the broker at {watch.where} failed "
            f"({type(e).__name__}: {e})"
        ) from e
    finally:
        await _close(consumer)


async def _connect(kafka: KafkaSettings, watch: _BrokerWatch) -> AIOKafkaConsumer:
    """A started consumer; when following, it waits for a broker that does not answer."""
    while True:
        consumer = AIOKafkaConsumer(
            **consumer_config(kafka, None, f"puente-tail-{uuid.uuid4().hex[:6]}")
        )
        try:
            async with asyncio.timeout(watch.start_s):
                await consumer.start()
        except (KafkaError, TimeoutError) as e:
            await _close(consumer)
            if not watch.follow:
                raise watch.unreachable(e) from e
            watch.lost()
            await asyncio.sleep(RETRY_S)
            continue
        return consumer


async def _assign(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to ``consumer``."""
    # Fresh metadata: the consumer's own may not hold the topic (Apache Kafka answers
    # its first request, which names no topic, with none). The await also lets
    # aiokafka start its internal task, which a stop right after start would
    # otherwise fail on.
    cluster = await consumer._client.fetch_all_metadata()
    if topic not in cluster.topics():
        raise ContractError(f"topic {topic} does not exist")
    partitions = cluster.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    return assigned


async def _rewind_where_truncated(
    consumer: AIOKafkaConsumer, assigned: list[TopicPartition]
) -> None:
    """Read again from the start a partition that now ends before the position.

    Apache Kafka answers such a fetch with an out-of-range error, and the consumer
    resets to the earliest record; the embedded broker, which keeps no record across
    a restart, answers with nothing, and the reader would wait there for ever.
    """
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is not None and await consumer.position(tp) > high:
            await consumer.seek_to_beginning(tp)


async def _close(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``; bounded, as the broker may be away."""
    try:
        async with asyncio.timeout(ABANDON_S):
            await _stop(consumer)
    except TimeoutError:
        log.warning("the consumer did not close within %g s", ABANDON_S)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # Closed during an outage, aiokafka's fetcher awaits its own cancelled retry
        # task and stop() ends with that task's CancelledError, the client still open.
        await consumer._client.close()


class _BrokerWatch:
    """Whether a reader's broker answers, and the one line said when that changes.

    aiokafka's consumer retries a broker that went away for ever and says so only in
    its log (many lines a second); a round that brings no record is the moment to ask
    the broker directly.
    """

    def __init__(
        self,
        where: str,
        topic: str,
        wait_s: float,
        notify: Callable[[str], None] | None,
        *,
        follow: bool,
    ) -> None:
        self.where = where
        self.topic = topic
        self.wait_s = wait_s
        self.follow = follow
        self.notify = notify
        # One ask may take this long (a connect to an address that drops packets).
        self.probe_s = PROBE_S if follow else min(wait_s, PROBE_S)
        # A reader that does not follow waits its whole bound for the first answer.
        self.start_s = PROBE_S if follow else wait_s
        self.answered_at = time.monotonic()
        self.waiting = False
        self.topic_missing = False

    def answered(self) -> None:
        """The broker answered (with records or metadata holding the topic)."""
        self.answered_at = time.monotonic()
        if self.waiting:
            self.waiting = self.topic_missing = False
            self._say(f"the broker at {self.where} answers again; following {self.topic}")

    def lost(self) -> None:
        """The broker did not answer; said once per outage."""
        if not self.waiting:
            self.waiting = True
            self._say(f"the broker at {self.where} does not answer; waiting for it")

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        """Ask the broker for its topics after a round that brought no record.

        Raises `ReadIncompleteError` when not following and the broker has answered
        nothing for ``wait_s`` seconds or no longer holds the topic.
        """
        try:
            async with asyncio.timeout(self.probe_s):
                cluster = await consumer._client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            self.lost()
            self._give_up_after_wait()
            return
        if self.topic in cluster.topics():
            self.answered()
            return
        if not self.follow:
            raise ReadIncompleteError(
                f"the broker at {self.where} no longer holds {self.topic}; "
                f"the records printed are not all of {self.topic}"
            )
        self.waiting = True
        if not self.topic_missing:
            self.topic_missing = True
            self._say(
                f"the broker at {self.where} holds no topic {self.topic}; waiting for it"
            )

    def _give_up_after_wait(self) -> None:
        silent = time.monotonic() - self.answered_at
        if not self.follow and silent >= self.wait_s:
            raise ReadIncompleteError(
                f"the broker at {self.where} did not answer for {self.wait_s:g} s; "
                f"the records printed are not all of {self.topic}"
            )

    def unreachable(self, cause: BaseException) -> BrokerUnavailableError:
        """The error for a broker that cannot be reached at the start."""
        if isinstance(cause, TimeoutError):
            what = f"the broker at {self.where} did not answer within {self.start_s:g} s"
        elif isinstance(cause, KafkaConnectionError):
            what = f"cannot reach the broker at {self.where}"
        else:
            what = (
                f"the broker at {self.where} refused the connection "
                f"({type(cause).__name__}: {cause})"
            )
        return BrokerUnavailableError(f"{what}; nothing was read")

    def _say(self, line: str) -> None:
        if self.notify is not None and self.follow:
            self.notify(line)


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
