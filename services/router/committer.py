"""Commit input offsets in order, after every output of a batch was acknowledged.

The router sends a batch's outputs and hands the batch to this committer as a
`Flight`, then goes on consuming; the committer awaits each flight's acks in the
order the batches were consumed, records the routed event ids, and commits the
next offset of every partition the flight read. So no offset is committed past a
record whose outputs are not all acknowledged, and consumption no longer stalls
for a produce and a commit round trip per batch.

On a failure every partition is rewound to its last committed offset and every
flight in the air is dropped: their records are read and routed again
(at-least-once; the de-duplication memory keeps repeats from being delivered
twice once an event was recorded). A batch fetched before the rewind that starts
beyond the rewound position is dropped when it arrives; the partition is sought
back again, so no record can be skipped.

With Kafka transactions (``transactional``), a flight's acks resolve only once its
outputs and its input offsets were committed together in one transaction; the
committer then records the ids and the committed offsets and commits nothing
itself. A failed transaction was aborted, so the rewind re-reads exactly what no
``read_committed`` reader saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.contracts.errors import PuenteError

log = logging.getLogger(__name__)

# Batches whose outputs may be unacknowledged at once; bounds memory and how much
# is routed again after a broker error.
DEFAULT_DEPTH = 4
# How long a stop waits for the flights in the air to be committed.
SETTLE_SECONDS = 10.0


class Consumer(Protocol):
    """What the committer needs of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit explicit next offsets."""


@dataclass(eq=False)
class Flight:
    """One routed batch whose outputs are on their way to the broker."""

    generation: int
    acks: Sequence[asyncio.Future[Any]]
    next_offsets: dict[TopicPartition, int]
    routed: dict[str, bytes]  # event id -> content digest, remembered once acked
    on_acked: Callable[[], None] = field(default=lambda: None)


class Committer:
    """In-order acknowledgement, de-duplication memory and offset commits."""

    def __init__(
        self,
        remember: Callable[[Iterable[tuple[str, bytes]]], Awaitable[None]],
        *,
        depth: int = DEFAULT_DEPTH,
        on_failure: Callable[[BaseException], None] = lambda e: None,
        pause: float = 1.0,
    ) -> None:
        self._remember = remember
        self._on_failure = on_failure
        self._pause = pause
        self._flights: deque[Flight] = deque()
        self._slots = asyncio.Semaphore(depth)
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumer: Consumer | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._expected: dict[TopicPartition, int] = {}
        self._ids: dict[str, bytes] = {}
        self._task: asyncio.Task[None] | None = None
        self.generation = 0
        # True when a flight's offsets were committed in its outputs' transaction.
        self.transactional = False

    def start(self) -> None:
        """Start the committing task (inside the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="router-committer")

    async def close(self) -> None:
        """Commit what is in the air (bounded by ``SETTLE_SECONDS``), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_SECONDS):
                await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> None:
        """Wait until every flight handed over so far was committed or dropped."""
        await self._idle.wait()

    @property
    def pending(self) -> int:
        """Flights handed over and not yet committed or dropped."""
        return len(self._flights)

    def admit(self, records: Sequence[Any], consumer: Consumer) -> list[Any]:
        """The records of a fetched batch to route; drops what a rewind made stale.

        A partition whose records start beyond the next expected offset was fetched
        before a rewind: its records are dropped and it is sought back once more.
        """
        self._consumer = consumer
        # Keyed by plain tuples: a TopicPartition per record cost more than the rest.
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            if key not in first:
                first[key] = record.offset
            last[key] = record.offset
        stale = set()
        for key, offset in first.items():
            tp = TopicPartition(*key)
            expected = self._expected.get(tp)
            if expected is not None and offset > expected:
                stale.add(key)
                consumer.seek(tp, expected)
                continue
            self._committed.setdefault(tp, offset)
            self._expected[tp] = last[key] + 1
        if not stale:
            return list(records)
        return [r for r in records if (r.topic, r.partition) not in stale]

    def in_flight(self, event_ids: Iterable[str]) -> dict[str, bytes]:
        """The digest of each of ``event_ids`` routed in a batch not yet committed."""
        return {i: self._ids[i] for i in event_ids if i in self._ids}

    def hold(self, routed: dict[str, bytes]) -> None:
        """Count ``routed`` as seen from now on, before their outputs are acked."""
        self._ids.update(routed)

    def release(self, event_ids: Iterable[str]) -> None:
        """Stop counting ``event_ids`` as seen (held, then not routed after all)."""
        for event_id in event_ids:
            self._ids.pop(event_id, None)

    async def submit(self, flight: Flight) -> bool:
        """Hand ``flight`` over for commit; waits while ``depth`` flights are in the air.

        False if a rewind happened since the flight's batch was admitted: it is
        dropped, and its records will be read again.
        """
        await self._slots.acquire()
        if flight.generation != self.generation:
            self._slots.release()
            return False
        self._flights.append(flight)
        self._idle.clear()
        self._arrived.set()
        return True

    def rewind(self, error: BaseException) -> None:
        """Seek every partition back to its last committed offset; drop all flights."""
        self.generation += 1
        self._on_failure(error)
        while self._flights:
            self._done(self._flights.popleft())
        self._ids.clear()
        consumer = self._consumer
        assigned = consumer.assignment() if consumer is not None else set()
        for tp, offset in self._committed.items():
            self._expected[tp] = offset
            if consumer is not None and tp in assigned:
                consumer.seek(tp, offset)

    @property
    def consumer(self) -> Any:
        """The consumer of the batches admitted so far (None before the first)."""
        return self._consumer

    def hold_back(self, tp: TopicPartition, offset: int) -> None:
        """Expect ``tp`` to go on at ``offset``: records fetched beyond it are stale.

        The router holds a partition there (`services.router.held`); a batch fetched
        before the hold is dropped and the partition sought back once more.
        """
        self._expected[tp] = offset

    def holds(self, partitions: Iterable[TopicPartition]) -> bool:
        """Whether the consumer still holds every one of ``partitions``."""
        consumer = self._consumer
        if consumer is None:
            return True
        assigned = consumer.assignment()
        return all(tp in assigned for tp in partitions)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop what is known of ``partitions`` (after a rebalance moved them)."""
        for tp in partitions:
            self._committed.pop(tp, None)
            self._expected.pop(tp, None)

    def _done(self, flight: Flight) -> None:
        del flight
        self._slots.release()
        if not self._flights:
            self._idle.set()

    async def _run(self) -> None:
        while True:
            if not self._flights:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._settle(self._flights[0])

    async def _settle(self, head: Flight) -> None:
        """Acknowledge, remember and commit ``head`` and the flights ready after it."""
        generation = head.generation
        try:
            for ack in head.acks:
                await ack
            if generation != self.generation:
                return  # a rewind dropped it while we waited
            # Later batches acknowledged meanwhile are committed with it: one commit.
            ready = 1
            while ready < len(self._flights) and _acked(self._flights[ready]):
                ready += 1
            flights = [self._flights[i] for i in range(ready)]
            await self._remember([p for f in flights for p in f.routed.items()])
        except (KafkaError, PuenteError) as e:
            if generation == self.generation:
                self.rewind(e)
                await asyncio.sleep(self._pause)  # do not spin while the broker recovers
            return
        await self._commit(flights)
        for f in flights:
            for event_id in f.routed:
                self._ids.pop(event_id, None)
            f.on_acked()
            # A rewind during the commit already dropped them.
            if self._flights and self._flights[0] is f:
                self._done(self._flights.popleft())

    async def _commit(self, flights: list[Flight]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for f in flights:
            offsets.update(f.next_offsets)
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        if self.transactional:
            self._committed.update(offsets)  # committed with the outputs
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as e:
            # Outputs and ids are recorded: whoever reads these records again finds
            # them routed, so a lost commit costs only a re-read.
            log.warning(
                "offset commit failed (%s); records will be re-read", type(e).__name__
            )
            return
        self._committed.update(offsets)


def _acked(flight: Flight) -> bool:
    return all(
        a.done() and not a.cancelled() and a.exception() is None for a in flight.acks
    )
