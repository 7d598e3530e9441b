"""Route one consumed batch: decide every record, send every output, hand it over.

The batch's input offsets are committed by the `Committer` once the broker
acknowledged every output of it (and of every batch before it), so consuming goes
on while outputs are in the air; on a broker error the committer rewinds.

With Kafka transactions (`BatchRouter.use_transactions`) the sender task puts the
outputs of the batches it sends together and their input offsets into one
transaction (begin, sends, ``send_offsets_to_transaction``, commit), so a
``read_committed`` reader sees every delivery and audit entry of a record once, or
none of them while the record is still to be routed again.

A batch whose outputs fail makes the router forget the rejection topics among them
(`RejectionTopics.forget`): one may have been deleted since the router saw it, and
the batch, routed again, creates it or holds its partition. aiokafka does not give
up on a record for a deleted topic in time: inside a transaction it asks the
coordinator to add the topic's partition again and again, for ever; outside one it
asks for metadata in a tight loop (an ERROR line each time) until the request
timeout. So a plain send is given up as soon as the producer's metadata loses one
of its rejection topics, and a transaction with refusals once a refresh of that
metadata (``CHECK_SECONDS`` in, and as often again) does, or after ``stuck_after``
seconds in any case; then the producer is replaced (``renew``), which stops the loop
and, with transactions, fences the old producer and aborts what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.contracts import topics
from services.contracts.errors import PuenteError
from services.contracts.ids import EVENT_TYPES
from services.policy.model import WITHHELD_REASONS
from services.router.committer import Committer, Flight
from services.router.dedupe import DedupeStore
from services.router.held import TICK_SECONDS, HeldPartitions, RejectionTopics
from services.router.metrics import RouterMetrics, bounded
from services.router.pipeline import (
    Accepted,
    Inbound,
    Output,
    Pipeline,
    Rejected,
    conflicting_duplicate,
)
from services.runtime import batches
from services.runtime.consume import Consumer, Offsets, next_offsets

log = logging.getLogger(__name__)

# Records decided between two turns of the event loop (about 5 ms of work).
SLICE = 32
T = TypeVar("T")
_Decided = tuple[
    list[Output],
    list[Accepted],
    TallyCounter[tuple[str, ...]],
    dict[str, bytes],
    Sequence[Any],
]
# Per inbound partition: where it is held, and the rejection topic it waits for.
_Blocked = dict[TopicPartition, tuple[int, str]]
# Starts a producer like the router's (transactional or not) to replace a stuck one.
Renew = Callable[[], Awaitable[AIOKafkaProducer]]
# A healthy transaction commits within the producer's request timeout (30 s default).
STUCK_AFTER_SECONDS = 30.0
# How long a replaced producer gets to close its connections.
DISCARD_SECONDS = 5.0
# A transaction with refusals not committed after this long has the producer refresh
# its metadata (and again as long as it lasts), to find a deleted rejection topic.
CHECK_SECONDS = 2.0


class OutputsDroppedError(PuenteError):
    """A batch's outputs were not (all) sent; the committer routes the batch again."""

    retriable = True


class TransactionAbortedError(OutputsDroppedError):
    """A transaction of outputs and offsets failed and was aborted; routed again."""


class TransactionStuckError(TransactionAbortedError):
    """A transaction did not finish in time; its producer is replaced to abort it."""


@dataclass
class RouteStats:
    """Counters for benchmarks and health: records seen, outputs sent, when."""

    records: int = 0
    outputs: int = 0
    batches: int = 0
    first_started: float | None = None  # time.time(): comparable across processes
    last_finished: float | None = None


class BatchRouter:
    """The router's work for one batch, with its I/O: dedupe store and producer."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        store: DedupeStore,
        producer: AIOKafkaProducer,
        metrics: RouterMetrics,
        institutions: Collection[str],
        group: str,
        depth: int = 4,
        rejection_topics: RejectionTopics | None = None,
        renew: Renew | None = None,
    ) -> None:
        """Route with ``pipeline``, remember in ``store``, send with ``producer``.

        ``rejection_topics`` checks (and creates) the topics refusals go to before
        they are sent; without it every one is taken to exist. ``renew`` starts a
        producer to replace one stuck on a deleted rejection topic.
        """
        self.pipeline = pipeline
        self.store = store
        self.producer = producer
        self.metrics = metrics
        self.institutions = institutions
        self.group = group
        self.committer = Committer(
            lambda routed: store.remember(routed, time.time()),
            depth=depth,
            on_failure=self._output_failure,
        )
        self.stopping = False
        self._outbox: asyncio.Queue[_Parcel] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._partitions = batches.Partitions(producer)
        self._latency: dict[str, Any] = {}  # latency histograms by event type
        self.stats = RouteStats()
        self.rejection_topics = rejection_topics
        self.held = HeldPartitions(metrics.partitions_held)
        self._watcher: asyncio.Task[None] | None = None
        self.transactional = False
        # The generation whose transaction failed: its later parcels must not commit
        # offsets beyond the aborted records (-1: none).
        self._aborted = -1
        self._renew = renew
        self._stuck_after = STUCK_AFTER_SECONDS
        self._stale = False  # the producer is stuck: replace it before the next send
        self._discarded = False  # the stuck producer is closed already

    def use_transactions(
        self,
        producer: AIOKafkaProducer,
        renew: Renew | None = None,
        stuck_after: float = STUCK_AFTER_SECONDS,
    ) -> None:
        """Send through ``producer`` (started, transactional) with the input offsets.

        Called before `start`. From then on a batch counts as routed once its
        outputs and its offsets were committed in one transaction. A transaction
        not finished within ``stuck_after`` seconds is given up, and ``renew``
        starts the producer that replaces ``producer``.
        """
        self.producer = producer
        self._partitions = batches.Partitions(producer)
        self.transactional = True
        self.committer.transactional = True
        self._renew = renew or self._renew
        self._stuck_after = stuck_after

    async def warm(self, topics: Collection[str]) -> None:
        """Learn the output topics' partitions before the first batch needs them."""
        await self._partitions.warm(topics)
        if self.rejection_topics is not None:
            self.rejection_topics.exist(topics)

    def start(self) -> None:
        """Start sending and committing (inside the running loop)."""
        self.committer.start()
        if self._sender is None:
            self._sender = asyncio.create_task(
                self._send_in_order(), name="router-sender"
            )
        if self._watcher is None and self.rejection_topics is not None:
            self._watcher = asyncio.create_task(
                self._watch(self.rejection_topics), name="router-held"
            )

    async def close(self) -> None:
        """Stop routing; commit what is in the air; stop sending."""
        self.stopping = True
        await self.committer.close()
        for task in (self._sender, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sender = self._watcher = None

    async def _watch(self, rejection_topics: RejectionTopics) -> None:
        """Resume held partitions once their rejection topic exists."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.held.recheck(self.committer.consumer, rejection_topics)
            except Exception as e:  # noqa: BLE001 - a dead watcher would never resume
                log.warning("held partitions not rechecked (%s)", type(e).__name__)

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        """The batch loop's work: route ``records``; nothing to commit yet.

        The committer commits their offsets once every output was acknowledged.
        """
        await self.route(records, consumer)
        return {}

    async def rewind(
        self, records: Sequence[Any], consumer: Consumer, error: BaseException
    ) -> None:
        """Routing failed: every partition back to its last committed offset."""
        del records, consumer
        self.committer.rewind(error)

    async def after_commit(self) -> None:
        """Nothing: the committer commits once the outputs are acknowledged."""

    async def route(self, records: Sequence[Any], consumer: Any = None) -> None:
        """Route ``records`` (aiokafka ConsumerRecords) and hand them over.

        The outputs go to the sender task and the batch to the committer, so the
        next batch is decided while these are sent. Returns at once while stopping:
        records not handed over are read again after a restart.
        """
        if self.stopping:
            return
        started = time.perf_counter()
        if self.stats.first_started is None:
            self.stats.first_started = time.time()
        committer = self.committer
        if consumer is not None:
            records = committer.admit(records, consumer)
        generation = committer.generation
        now = datetime.now(UTC)
        decided = await self._decide(records, now, generation, consumer)
        if decided is None or self.stopping:
            return  # a rewind or a stop while deciding: these records are read again
        outputs, routed, tally, held, records = decided
        offsets = next_offsets(records)
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.add_done_callback(_observe)
        self._outbox.put_nowait(_Parcel(generation, outputs, sent, offsets))

        def acked() -> None:
            # Counted only now, so a batch routed again after a broker error counts once.
            self._count(tally)
            self._count_outputs(outputs, routed)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.stats.records += len(records)
            self.stats.outputs += len(outputs)
            self.stats.batches += 1
            self.stats.last_finished = time.time()

        await committer.submit(Flight(generation, [sent], offsets, held, acked))

    async def _decide(
        self, records: Sequence[Any], now: datetime, generation: int, consumer: Any
    ) -> _Decided | None:
        """Every output of ``records``, deciding a slice at a time.

        Between slices the event loop turns, so the producer writes and reads
        while a large batch is decided: without it, a 1 MB produce request went
        out a socket buffer per batch and its acks came several batches late,
        stalling the router on its flights. None if a rewind came before the
        records were checked against the de-duplication memory; a later one makes
        the batch's flight stale, and it is dropped as any other. Also returns the
        records routed: a partition held at a refusal (`services.router.held`) loses
        its records from there on.
        """
        inspected: list[Accepted | Rejected] = []
        for chunk in _slices(records):
            inspected.extend(self.pipeline.inspect(_inbound(r), now) for r in chunk)
            await asyncio.sleep(0)
        blocked = await self._unanswerable(inspected)
        if generation != self.committer.generation:
            return None
        if blocked:
            self._hold(blocked, consumer)
            inspected = [i for i in inspected if not _behind(i.record, blocked)]
            records = [r for r in records if not _behind(r, blocked)]
        ids = [a.event_id for a in inspected if isinstance(a, Accepted)]
        seen = self.store.lookup(ids)
        seen.update(self.committer.in_flight(ids))
        tally: TallyCounter[tuple[str, ...]] = TallyCounter()
        kept = [
            self._deduplicate(item, seen, tally) if isinstance(item, Accepted) else item
            for item in inspected
        ]
        accepted = {d.event_id: d.digest for d in kept if isinstance(d, Accepted)}
        # Held before the next await: a later batch must find them in the air.
        self.committer.hold(accepted)
        outputs: list[Output] = []
        routed: list[Accepted] = []
        for chunk in _slices(kept):
            for decided in chunk:
                if isinstance(decided, Rejected):
                    outputs.append(self.pipeline.reject(decided, now))
                    tally[self._rejection_labels(decided)] += 1
                elif decided is not None:
                    outputs.extend(self._deliver(decided, now, routed, tally))
            await asyncio.sleep(0)
        held = {a.event_id: a.digest for a in routed}
        # An event the hub failed to route is not remembered: sent again, it is
        # routed again.
        self.committer.release(accepted.keys() - held.keys())
        return outputs, routed, tally, held, records

    async def _unanswerable(self, inspected: Sequence[Accepted | Rejected]) -> _Blocked:
        """Per partition, the first refused record whose rejection topic is missing.

        Sent anyway, its refusal would wait for the topic, fail the batch and stop
        every partition's routing, again on each retry.
        """
        checker = self.rejection_topics
        if checker is None:
            return {}
        wanted = {
            name
            for i in inspected
            if isinstance(i, Rejected)
            and not checker.known(name := topics.rejected(i.source))
        }
        if not wanted:
            return {}
        missing = await checker.missing(wanted)
        blocked: _Blocked = {}
        for item in inspected:
            if isinstance(item, Rejected) and topics.rejected(item.source) in missing:
                tp = TopicPartition(item.record.topic, item.record.partition)
                if tp not in blocked:
                    blocked[tp] = (item.record.offset, topics.rejected(item.source))
        return blocked

    def _hold(self, blocked: _Blocked, consumer: Any) -> None:
        """Leave each blocked partition paused at its record, uncommitted."""
        why = self.rejection_topics.why if self.rejection_topics is not None else {}
        for tp, (offset, topic) in blocked.items():
            self.committer.hold_back(tp, offset)
            self.held.hold(consumer, tp, offset, topic, why.get(topic, "missing"))

    def _deduplicate(
        self, item: Accepted, seen: dict[str, bytes], tally: TallyCounter[tuple[str, ...]]
    ) -> Accepted | Rejected | None:
        previous = seen.get(item.event_id)
        if previous is None:
            seen[item.event_id] = item.digest  # also catches repeats inside this batch
            return item
        if previous == item.digest:
            tally[("duplicate", *self._labels(item.source, item.event_type))] += 1
            return None
        return conflicting_duplicate(item)

    def _deliver(
        self,
        item: Accepted,
        now: datetime,
        routed: list[Accepted],
        tally: TallyCounter[tuple[str, ...]],
    ) -> list[Output]:
        try:
            outputs = self.pipeline.deliver(item, now)
        except Exception as e:  # noqa: BLE001 - one bad record must not block its partition
            # Only the type: an exception's text or traceback may carry personal data.
            log.error(  # noqa: TRY400
                "routing failed on %s@%d: %s",
                item.record.topic,
                item.record.offset,
                type(e).__name__,
            )
            self.metrics.errors.inc()
            failure = Rejected(
                item.record,
                item.source,
                item.event_type,
                "other",
                "the hub could not route this event; operators were alerted",
                item.event_id,
            )
            tally[self._rejection_labels(failure)] += 1
            return [self.pipeline.reject(failure, now)]
        routed.append(item)
        tally[("accepted", *self._labels(item.source, item.event_type))] += 1
        return outputs

    async def _send_in_order(self) -> None:
        """Send parcels one after another, so each partition keeps its input order.

        Parcels that queued up meanwhile go out together: fewer, larger record
        batches, which is what the broker's time depends on.
        """
        while True:
            parcels = [await self._outbox.get()]
            while not self._outbox.empty():
                parcels.append(self._outbox.get_nowait())
            current = self._current(parcels)
            if not current:
                continue
            if self.transactional:
                await self._send_in_transaction(current)
                continue
            outputs = [o for p in current for o in p.outputs]
            try:
                if self._stale:
                    await self._replace_producer()
                acks = await self._send(outputs)
            except KafkaError as e:
                error: BaseException = e
            except Exception as e:  # noqa: BLE001 - a dead sender would stall routing
                error = OutputsDroppedError(f"outputs not sent: {type(e).__name__}")
            else:
                gathered = asyncio.gather(*acks)
                # Before the relays: the batch must be routed again knowing it.
                gathered.add_done_callback(partial(self._forget_on_failure, outputs))
                for parcel in current:
                    gathered.add_done_callback(partial(_relay, parcel.sent))
                # The producer has one request in the air per broker and takes one
                # batch per partition into it; parcels that arrive meanwhile are
                # merged into one batch per partition instead of queueing behind it.
                gone = await self._acknowledged(gathered, outputs)
                if not gone:
                    continue
                self._stale = True
                error = OutputsDroppedError(f"rejection topics deleted: {sorted(gone)}")
            self._lost(outputs)
            for parcel in current:
                parcel.sent.set_exception(error)
            if self._stale:
                # Now, not at the next send: the stuck producer keeps asking the
                # broker for the deleted topic until it is closed.
                await self._replace_producer()

    async def _acknowledged(
        self, gathered: asyncio.Future[list[Any]], outputs: Sequence[Output]
    ) -> set[str]:
        """Wait for ``gathered``; the rejection topics deleted meanwhile, if any.

        While refusals are in the air every metadata update of the producer is
        looked at: one that loses their topic would have the producer retry them
        until its request timeout, so they are given up at once (their batch is
        routed again).
        """
        names = {o.topic for o in outputs if o.kind == "rejection"}
        cluster = getattr(getattr(self.producer, "client", None), "cluster", None)
        if not names or self._renew is None or cluster is None:
            await asyncio.wait([gathered])
            return set()
        lost = asyncio.Event()

        def updated(metadata: Any) -> None:
            if any(metadata.partitions_for_topic(n) is None for n in names):
                lost.set()

        cluster.add_listener(updated)
        waiting: asyncio.Future[Any] = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait([gathered, waiting], return_when=asyncio.FIRST_COMPLETED)
        finally:
            cluster.remove_listener(updated)
            waiting.cancel()
        if gathered.done():
            return set()
        return {n for n in names if cluster.partitions_for_topic(n) is None}

    def _forget_on_failure(
        self, outputs: Sequence[Output], acks: asyncio.Future[list[Any]]
    ) -> None:
        if acks.cancelled() or acks.exception() is not None:
            self._lost(outputs)

    def _lost(self, outputs: Sequence[Output]) -> None:
        """``outputs`` were not (all) sent: their rejection topics may be gone.

        Forgotten, each is asked for again (and created, or its partition held)
        when the batch is routed again; one that exists costs a look-up.
        """
        checker = self.rejection_topics
        if checker is None:
            return
        names = {o.topic for o in outputs if o.kind == "rejection"}
        if names:
            checker.forget(names)
            # Created again, a topic may have another partition count.
            self._partitions.forget()

    def _current(self, parcels: list[_Parcel]) -> list[_Parcel]:
        """The parcels still to send; the others' batches are routed again."""
        live = self.committer.generation
        current = []
        for parcel in parcels:
            if parcel.generation == live and parcel.generation != self._aborted:
                current.append(parcel)
            else:
                parcel.sent.set_exception(OutputsDroppedError("dropped by a rewind"))
        return current

    async def _send_in_transaction(self, parcels: list[_Parcel]) -> None:
        """Send ``parcels``' outputs and commit their input offsets in one transaction.

        Their futures resolve once the transaction committed. On a failure it is
        aborted, and the later parcels of the same generation are dropped as well:
        committing their offsets would skip the aborted records.
        """
        offsets: dict[TopicPartition, int] = {}
        for parcel in parcels:
            offsets.update(parcel.offsets)  # later batches read further
        outputs = [o for p in parcels for o in p.outputs]
        acks: list[asyncio.Future[Any]] = []
        try:
            if self._stale:
                await self._replace_producer()
            async with asyncio.timeout(self._stuck_after):
                await self._transact_watching(outputs, offsets, acks)
        except Exception as e:  # noqa: BLE001 - a dead sender would stall routing
            self._aborted = parcels[0].generation
            for ack in acks:
                ack.add_done_callback(_observe)
            self._lost(outputs)
            if isinstance(e, TimeoutError):
                e = TransactionStuckError(
                    f"transaction not finished within {self._stuck_after:.0f} s"
                )
            if isinstance(e, TransactionStuckError) and self._renew is not None:
                self._stale = True
            if self._stale:
                # Replaced before the batch is routed again: the stuck producer
                # would take its next transaction as well.
                await self._replace_producer()
            else:
                await self._abort()
            error = TransactionAbortedError(f"transaction aborted: {type(e).__name__}")
            error.__cause__ = e
            for parcel in parcels:
                parcel.sent.set_exception(error)
            return
        for parcel in parcels:
            parcel.sent.set_result(None)

    async def _transact_watching(
        self,
        outputs: list[Output],
        offsets: dict[TopicPartition, int],
        acks: list[asyncio.Future[Any]],
    ) -> None:
        """`_transact`, given up once a rejection topic among ``outputs`` is deleted.

        While aiokafka asks to add a deleted topic's partition to the transaction it
        never looks at its metadata again, so it is asked to, ``CHECK_SECONDS``
        into the transaction and as often again while it lasts.
        """
        names = {o.topic for o in outputs if o.kind == "rejection"}
        client = getattr(self.producer, "client", None)
        transaction = asyncio.ensure_future(self._transact(outputs, offsets, acks))
        if not names or client is None or self._renew is None:
            await transaction
            return
        watcher = asyncio.ensure_future(_deleted(client, names))
        try:
            await asyncio.wait(
                [transaction, watcher], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watcher.cancel()
            if not transaction.done():
                transaction.cancel()
        if transaction.done() and not transaction.cancelled():
            transaction.result()  # its error, if any
            return
        raise TransactionStuckError(
            f"rejection topics deleted: {sorted(watcher.result())}"
        )

    async def _replace_producer(self) -> None:
        """Close the stuck producer, then start a new one in its place.

        With transactions the new one has the same transactional id: the broker
        aborts the stuck one's open transaction, so nothing it sent becomes visible
        to ``read_committed`` readers. If the new one cannot start, the next send
        tries again.
        """
        if self._renew is None:
            return
        if not self._discarded:
            # First: until closed, it asks the broker for the deleted topic again
            # and again (aiokafka logs an ERROR line each time).
            self._discarded = True
            await _discard(self.producer)
        try:
            producer = await self._renew()
        except Exception as e:  # noqa: BLE001 - tried again before the next send
            log.warning("router producer not replaced (%s)", type(e).__name__)
            return
        self.producer = producer
        self._partitions = batches.Partitions(producer)
        self._stale = self._discarded = False
        log.warning(
            "router producer replaced: it was stuck on a deleted rejection topic; "
            "its batches are routed again"
        )

    async def _transact(
        self,
        outputs: list[Output],
        offsets: dict[TopicPartition, int],
        acks: list[asyncio.Future[Any]],
    ) -> None:
        """One transaction: ``outputs`` (their futures into ``acks``) and ``offsets``."""
        producer = self.producer
        await producer.begin_transaction()
        acks.extend(await self._send(outputs))
        if offsets:
            await producer.send_offsets_to_transaction(offsets, self.group)
        if not self.committer.holds(offsets):
            # A rebalance gave some of these records to another router, which reads
            # them from the last committed offsets: committing these outputs as
            # well would deliver them twice.
            raise TransactionAbortedError("input partitions moved to another router")
        await producer.commit_transaction()
        await asyncio.gather(*acks)

    async def _abort(self) -> None:
        """Abort the open transaction; what it sent stays invisible to read_committed."""
        try:
            await self.producer.abort_transaction()
        except Exception as e:  # noqa: BLE001 - the rewind routes the records again
            # A fenced producer cannot abort: another router took this transactional
            # id, and this one's transactions fail until it is restarted.
            log.warning("transaction could not be aborted (%s)", type(e).__name__)

    async def _send(self, outputs: list[Output]) -> list[asyncio.Future[Any]]:
        """Hand every output to the producer, whole record batches per partition.

        The futures resolve on the broker's acks. Building the batches here costs
        about half of what one `send` per record does.
        """
        groups = await batches.by_partition(outputs, self._partitions)
        return [
            await self.producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), group in groups.items()
            for batch in batches.fill(self.producer, group)
        ]

    def _output_failure(self, error: BaseException) -> None:
        self.metrics.output_failures.inc()
        log.warning(
            "broker did not acknowledge a batch (%s); routing it again",
            type(error).__name__,
        )

    def _rejection_labels(self, item: Rejected) -> tuple[str, ...]:
        return ("rejected", *self._labels(item.source, item.event_type), item.reason)

    def _count(self, tally: TallyCounter[tuple[str, ...]]) -> None:
        counters = {
            "accepted": self.metrics.accepted,
            "rejected": self.metrics.rejected,
            "duplicate": self.metrics.duplicates,
        }
        for (kind, *labels), count in tally.items():
            counters[kind].labels(*labels).inc(count)

    def _count_outputs(self, outputs: list[Output], routed: list[Accepted]) -> None:
        raw: TallyCounter[tuple[str | None, str, str | None]] = TallyCounter()
        delivered: set[str | None] = set()
        withheld: TallyCounter[tuple[str | None, str, str]] = TallyCounter()
        for output in outputs:
            if output.kind == "delivery":
                raw[(output.recipient, output.topic, output.view)] += 1
                delivered.add(output.event_id)
            elif output.withheld is not None:
                key = (output.recipient, output.event_type or "", output.withheld)
                withheld[key] += 1
        for (recipient, event_type, reason), count in withheld.items():
            self.metrics.withheld.labels(
                bounded(recipient, self.institutions),
                bounded(event_type, EVENT_TYPES),
                bounded(reason, WITHHELD_REASONS),
            ).inc(count)
        for (recipient, topic, view), count in raw.items():
            event_type = topic.rsplit(".", 1)[1]
            named = bounded(recipient, self.institutions)
            self.metrics.deliveries.labels(named, event_type, str(view)).inc(count)
        # Once per event: all deliveries of an event are acknowledged together.
        done_ms = time.time() * 1000
        latency = self._latency
        for event in routed:
            if event.event_id in delivered:
                histogram = latency.get(event.event_type)
                if histogram is None:
                    histogram = self.metrics.latency.labels(event.event_type)
                    latency[event.event_type] = histogram
                histogram.observe(max((done_ms - event.recorded_at_ms) / 1000, 0.0))

    def _labels(self, source: str, event_type: str | None) -> tuple[str, str]:
        return bounded(source, self.institutions), bounded(event_type, EVENT_TYPES)


def _slices(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), SLICE):
        yield items[start : start + SLICE]


def _behind(record: Any, blocked: _Blocked) -> bool:
    """Whether ``record`` lies at or after where its partition is held."""
    held = blocked.get(TopicPartition(record.topic, record.partition))
    return held is not None and record.offset >= held[0]


def _inbound(record: Any) -> Inbound:
    return Inbound(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.timestamp,
        record.headers or (),
    )


@dataclass(frozen=True, slots=True)
class _Parcel:
    """A batch's outputs on their way to the sender task."""

    generation: int
    outputs: list[Output]
    sent: asyncio.Future[None]  # resolves once every output was acknowledged
    offsets: dict[TopicPartition, int]  # the batch's next input offsets


def _relay(target: asyncio.Future[None], acks: asyncio.Future[list[Any]]) -> None:
    if target.done():
        return
    if acks.cancelled():
        target.set_exception(OutputsDroppedError("acknowledgements cancelled"))
    elif (error := acks.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(None)


async def _deleted(client: Any, names: set[str]) -> set[str]:
    """Those of ``names`` a refresh of ``client``'s metadata finds deleted, once any."""
    while True:
        await asyncio.sleep(CHECK_SECONDS)
        # Unanswered, it keeps the old metadata: nothing is found deleted. A failed
        # look must not end a transaction that may be healthy.
        with contextlib.suppress(Exception):
            await client.force_metadata_update()
        if gone := {n for n in names if client.cluster.partitions_for_topic(n) is None}:
            return gone


async def _discard(producer: AIOKafkaProducer) -> None:
    """Close ``producer``, stuck on a deleted topic, without flushing it.

    Its batches were given up (routed again), and one of them never flushes: its
    sender retries the deleted topic's partition for ever in a transaction (the
    broker answers "unknown topic" before it sees the fenced epoch), or asks for
    metadata in a tight loop until the request timeout. So the sender is cancelled
    and the connections closed, where `stop` would wait for the flush first.
    """
    sender = getattr(producer, "_sender", None)
    try:
        async with asyncio.timeout(DISCARD_SECONDS):
            if sender is None:  # not aiokafka's: nothing to flush around
                await producer.stop()
                return
            await sender.close()
            await producer.client.close()
    except Exception as e:  # noqa: BLE001 - it is discarded either way
        log.info("replaced router producer closed with %s", type(e).__name__)


def _observe(future: asyncio.Future[Any]) -> None:
    # Dropped batches' failures are expected; mark them retrieved so asyncio does
    # not report them as lost.
    if not future.cancelled():
        future.exception()
