"""One raw-batch consumer loop for every hub service that reads Kafka.

FastStream joins the group (or takes the assigned partitions), fetches, reconnects,
stops gracefully and counts every batch in its ``faststream_*`` series. A service
hands this loop a `BatchWork` and gets, for every fetched batch:

- the raw aiokafka records, never decoded by FastStream (each service decodes
  only what it needs, and the router reads bytes straight into its fast codec);
- ``process`` shielded from cancellation, so a stop never cuts a database or
  ledger transaction in half;
- after the work, a commit of exactly the offsets the work returns (offsets are
  acknowledged on the loop's terms: ``AckPolicy.MANUAL``, never FastStream's), then
  the work's ``after_commit`` (follow-up work that must not hold the commit back);
- on a failure: the work's ``rewind`` (by default every partition of the batch is
  sought back to its first record), a count, one log line, a pause that doubles
  up to a maximum, and the error re-raised so FastStream counts it too;
- the consumer lag (high-water minus the next offset, summed over the partitions
  the loop holds) and the batch's duration on the series the service passes in;
- FastStream kept quiet (warnings and errors only) and records with binary header
  values let through (the work reads the raw records, never FastStream's headers).

The loop can be started again after a stop (the audit service restarts in place).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka import TopicPartition as SubscribedPartition
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from services.runtime.kafka import broker_options, subscriber_options
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
# How long a stop waits for the batch in hand before FastStream cancels its handler
# (the work itself is shielded and still ends).
DEFAULT_STOP_SECONDS: Final = 30.0
# How long `read_through` waits for a partition's position (one being reset waits).
POSITION_WAIT: Final = 5.0


class Consumer(Protocol):
    """What the loop and the services' work use of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        """Read ``partitions`` from the start of their logs next."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit explicit next offsets."""

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's high-water mark as of the last fetch."""


class BatchWork(Protocol):
    """A service's work on one fetched batch of raw records."""

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        """Do the batch's work; the next offsets to commit now (empty: none)."""

    async def rewind(
        self, records: Sequence[Any], consumer: Consumer, error: BaseException
    ) -> None:
        """Seek back so the records ``process`` failed on are read again."""

    async def after_commit(self) -> None:
        """Follow-up work once the batch's offsets were committed (may do nothing)."""


class SeekBack:
    """The usual rewind, for a `BatchWork` to inherit: back to the batch's start."""

    async def after_commit(self) -> None:
        """Nothing to follow up."""

    async def rewind(
        self, records: Sequence[Any], consumer: Consumer, error: BaseException
    ) -> None:
        """Seek every partition of ``records`` back to its first record."""
        del error
        seek_back(consumer, records)


def next_offsets(records: Sequence[Any]) -> Offsets:
    """Per partition, the offset after the last of ``records`` (what to commit)."""
    last: dict[tuple[str, int], int] = {}
    for record in records:
        last[(record.topic, record.partition)] = record.offset
    return {TopicPartition(*tp): offset + 1 for tp, offset in last.items()}


def seek_back(consumer: Consumer, records: Sequence[Any]) -> None:
    """Seek every partition of ``records`` back to the first of its records."""
    first: dict[tuple[str, int], int] = {}
    for record in records:
        first.setdefault((record.topic, record.partition), record.offset)
    for tp, offset in first.items():
        # A partition moved away meanwhile is read from the committed offset by its
        # next holder: nothing to seek.
        with contextlib.suppress(Exception):
            consumer.seek(TopicPartition(*tp), offset)


@dataclass(frozen=True)
class Subscription:
    """What to read: topics, a pattern or fixed partitions, and how.

    Exactly one of ``topics``, ``pattern`` and ``partitions`` is given. Fixed
    partitions are assigned, not joined: no other group member may take them.
    """

    group_id: str
    max_records: int
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    partitions: tuple[tuple[str, int], ...] = ()
    # Only records of committed transactions (the router may write in transactions).
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    listener: ConsumerRebalanceListener | None = None
    tuning: Mapping[str, Any] = field(default_factory=dict)  # subscriber options

    def where(self) -> dict[str, Any]:
        """FastStream's subscriber arguments naming what to read."""
        given = sum((bool(self.topics), self.pattern is not None, bool(self.partitions)))
        if given != 1:
            raise ValueError("a subscription names topics, a pattern or partitions")
        if self.pattern is not None:
            return {"pattern": self.pattern}
        if self.partitions:
            # Created with their final partition counts by the services; never
            # auto-created.
            return {
                "partitions": [
                    SubscribedPartition(t, n, declare=False) for t, n in self.partitions
                ]
            }
        return {}


class _Settable(Protocol):
    def set(self, value: float) -> None: ...


class _Observable(Protocol):
    def observe(self, amount: float) -> None: ...


class _Countable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


@dataclass(frozen=True)
class LoopMetrics:
    """The service's own series the loop keeps (each optional)."""

    lag: _Settable | None = None  # records not yet consumed, all partitions
    seconds: _Observable | None = None  # one batch's work, commit included
    failures: _Countable | None = None  # batches whose work failed


@dataclass(frozen=True)
class Backoff:
    """The pause after a failed batch: ``first``, doubling up to ``most`` seconds."""

    first: float = 1.0
    most: float = 30.0

    def after(self, failures: int) -> float:
        """The pause after ``failures`` consecutive failed batches."""
        doublings = min(max(failures - 1, 0), 32)  # 2**32 s outlasts any maximum
        return min(self.first * float(1 << doublings), self.most)


class BatchLoop:
    """Consume raw batches into a `BatchWork`: commit after it, rewind on failure."""

    def __init__(
        self,
        name: str,
        kafka: KafkaSettings,
        work: BatchWork,
        registry: CollectorRegistry,
        *,
        client_id: str,
        metrics: LoopMetrics | None = None,
        backoff: Backoff | None = None,
        stop_seconds: float = DEFAULT_STOP_SECONDS,
    ) -> None:
        self.name = name
        self.kafka = kafka
        self.work = work
        self.client_id = client_id
        self.metrics = metrics or LoopMetrics()
        self.backoff = backoff or Backoff()
        self.stop_seconds = stop_seconds
        # Made once: its faststream_* series live on the service's registry.
        self._prometheus = KafkaPrometheusMiddleware(registry=registry, app_name=name)
        self._broker: KafkaBroker | None = None
        self._subscriber: Any = None
        self._halt = asyncio.Event()
        self.failed = asyncio.Event()  # set at the first failed batch since start
        self.error: BaseException | None = None  # that batch's error
        self.failures = 0  # consecutive failed batches
        self._lag: dict[tuple[str, int], int] = {}
        # Per partition, since start: the newest record timestamp done, and how
        # many batches are in hand (what `read_through` answers from).
        self._newest: dict[TopicPartition, int] = {}
        self._in_hand = 0

    async def start(self, subscription: Subscription) -> None:
        """Subscribe as ``subscription`` says and start consuming."""
        self._halt.clear()
        self.failed.clear()
        self.error, self.failures = None, 0
        self._lag.clear()
        self._newest.clear()
        broker = KafkaBroker(
            **broker_options(self.kafka, self.client_id),
            consumer_only=True,  # services produce through their own producers
            middlewares=[self._prometheus],
            logger=_quiet_logger(self.name),
            log_level=logging.DEBUG,  # FastStream logs every batch; keep that out of INFO
            graceful_timeout=self.stop_seconds,
        )
        options = dict(subscription.tuning)
        options.setdefault("isolation_level", subscription.isolation_level)
        subscriber = broker.subscriber(
            *subscription.topics,
            **subscription.where(),
            group_id=subscription.group_id,
            batch=True,
            max_records=subscription.max_records,
            # Offsets are committed by this loop once the work is done (or by the
            # work itself, later): never by FastStream on receipt.
            ack_policy=AckPolicy.MANUAL,
            **({"listener": subscription.listener} if subscription.listener else {}),
            parser=_tolerate_headers,
            decoder=_skip_bodies,  # the work reads the raw records
            **subscriber_options(self.kafka, **options),
        )
        subscriber(self._handle)
        self._broker, self._subscriber = broker, subscriber
        await broker.start()

    async def stop(self) -> None:
        """Stop consuming; the batch in hand ends first (up to ``stop_seconds``)."""
        self._halt.set()
        broker, self._broker, self._subscriber = self._broker, None, None
        if broker is not None:
            await broker.stop()

    def assigned(self) -> int:
        """How many partitions the loop holds right now."""
        consumer = getattr(self._subscriber, "consumer", None)
        return len(consumer.assignment()) if consumer is not None else 0

    async def read_through(self, at_ms: int, consumer: Any = None) -> bool:
        """Whether every record appended before ``at_ms`` is done.

        True when every partition the loop holds has either a record done whose
        timestamp is ``at_ms`` or later (records are appended in time order), or,
        with no batch in hand, its position at the high-water mark of the last
        fetch (the position, not the offsets done: it also steps over transaction
        markers). False while the loop holds nothing or a high-water mark is not
        known yet. A service uses it to act only on a past it has wholly read (the
        indicators release a period). ``consumer``: the loop's own unless given.
        """
        if consumer is None:
            consumer = getattr(self._subscriber, "consumer", None)
        held = consumer.assignment() if consumer is not None else set()
        if not held:
            return False
        for tp in held:
            if self._newest.get(tp, -1) >= at_ms:
                continue
            high = consumer.highwater(tp)
            if high is None or self._in_hand:
                return False
            try:
                position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT)
            except (KafkaError, TimeoutError):
                return False
            if position < high:
                return False
        return True

    def _out_of_hand(self, task: asyncio.Future[None]) -> None:
        del task
        self._in_hand -= 1

    def _note_done(self, records: Sequence[Any]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            stamp = getattr(record, "timestamp", None)
            if isinstance(stamp, int) and stamp > self._newest.get(tp, -1):
                self._newest[tp] = stamp

    async def halted_within(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the loop is stopping; whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt.wait(), seconds)
        return self._halt.is_set()

    async def _handle(self, body: None, msg: KafkaMessage) -> None:
        del body  # the raw records carry topic, partition, offset and value
        raw: Any = msg.raw_message
        records: Sequence[Any] = raw if isinstance(raw, tuple) else (raw,)
        consumer: Any = msg.consumer  # the aiokafka consumer behind FastStream's
        await self.consume(records, consumer)

    async def consume(self, records: Sequence[Any], consumer: Consumer) -> None:
        """One fetched batch: the work, then commit and metrics; a failure re-raised.

        Shielded: a stop that outwaits the graceful timeout cancels the handler, but
        the work in hand still ends before the service closes its stores.
        """
        self._in_hand += 1
        work = asyncio.ensure_future(self._batch(records, consumer))
        work.add_done_callback(_retrieve)
        work.add_done_callback(self._out_of_hand)
        try:
            await asyncio.shield(work)
        except Exception:
            # Not at once: the store or the broker may need a moment.
            await self.halted_within(self.backoff.after(self.failures))
            raise  # FastStream logs it and counts it in faststream_*_exceptions_total

    async def _batch(self, records: Sequence[Any], consumer: Consumer) -> None:
        started = time.perf_counter()
        try:
            offsets = await self.work.process(records, consumer)
            await self._commit(consumer, offsets)
            await self.work.after_commit()
        except Exception as e:
            await self._fail(records, consumer, e)
            raise
        self.failures = 0
        self._note_done(records)
        self._update_lag(consumer, records)
        if self.metrics.seconds is not None:
            self.metrics.seconds.observe(time.perf_counter() - started)

    async def _fail(
        self, records: Sequence[Any], consumer: Consumer, error: BaseException
    ) -> None:
        self.failures += 1
        if self.metrics.failures is not None:
            self.metrics.failures.inc()
        if self.error is None:
            self.error = error
        self.failed.set()
        # The type and the message of our own errors; never a record's content.
        log.error(
            "%s: a batch of %d records failed (%s: %s); it is read again",
            self.name, len(records), type(error).__name__, error,
        )  # fmt: skip
        try:
            await self.work.rewind(records, consumer, error)
        except Exception as e:  # noqa: BLE001 - the next fetch finds it out again
            log.warning("%s: rewind failed (%s)", self.name, type(e).__name__)

    async def _commit(self, consumer: Consumer, offsets: Offsets) -> None:
        assigned = consumer.assignment()
        held = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not held:
            return
        try:
            await consumer.commit(held)
        except KafkaError as e:
            # The work is done and stored: whoever reads these records again finds
            # them done, so a lost commit costs only a re-read.
            log.warning(
                "%s: offset commit failed (%s); records may be read again",
                self.name, type(e).__name__,
            )  # fmt: skip

    def _update_lag(self, consumer: Consumer, records: Sequence[Any]) -> None:
        if self.metrics.lag is None:
            return
        # highwater(), not end_offsets(): the latter is wrong on the embedded broker.
        # The batch's own next offsets, not position(): that one waits for a
        # partition whose position is being reset.
        lag = self._lag
        for tp, offset in next_offsets(records).items():
            high = consumer.highwater(tp)
            if high is not None:
                lag[(tp.topic, tp.partition)] = max(high - offset, 0)
        held = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for moved in lag.keys() - held:
            del lag[moved]
        self.metrics.lag.set(sum(lag.values()))


def _retrieve(task: asyncio.Future[None]) -> None:
    # A batch whose handler was cancelled at stop still ends; its error was logged.
    if not task.cancelled():
        task.exception()


async def _skip_bodies(msg: KafkaMessage) -> None:
    """A decoder that decodes nothing: the work reads the raw aiokafka records.

    FastStream would otherwise copy every record's value into a list first.
    """
    del msg


def _quiet_logger(service: str) -> logging.Logger:
    """The logger for a service's FastStream broker: warnings and errors only.

    FastStream logs every batch and each partition assignment at INFO, and warns at
    every start that it will not create topics (the services create them).
    """
    logger = logging.getLogger(f"puente.{service}.faststream")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoTopicCreationNotice) for f in logger.filters):
        logger.addFilter(_NoTopicCreationNotice())
    return logger


class _NoTopicCreationNotice(logging.Filter):
    """Drops FastStream's notice that it will not create topics: the services do."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one notice."""
        return not record.getMessage().startswith("Auto create topics is disabled")


async def _tolerate_headers(
    records: Any, original: Callable[[Any], Awaitable[Any]]
) -> Any:
    """A parser that lets records with non-UTF-8 header values through.

    FastStream's batch parser decodes every header value as UTF-8; one record with a
    binary value (anyone may write one) would fail its whole batch on every retry
    and stop the service. The work reads bodies, never FastStream's headers, so such
    a value is blanked in the copy FastStream sees.
    """
    if isinstance(records, tuple):
        return await original(tuple(_readable(r) for r in records))
    return await original(_readable(records))


def _readable(record: Any) -> Any:
    headers = record.headers
    if all(_utf8(value) for _, value in headers):
        return record
    safe = tuple((key, value if _utf8(value) else b"") for key, value in headers)
    return dataclasses.replace(record, headers=safe)


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
