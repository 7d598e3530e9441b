"""The committer: in-order commits after acks, rewinds on failure, nothing skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from services.router.committer import Committer, Flight

A = TopicPartition("hub.in.dgme.return_arrival", 0)
B = TopicPartition("hub.in.dgme.return_arrival", 1)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int


def records(tp: TopicPartition, first: int, last: int) -> list[Record]:
    return [Record(tp.topic, tp.partition, o) for o in range(first, last + 1)]


@dataclass
class FakeConsumer:
    """Records commits and seeks; holds partitions A and B."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    held: set[TopicPartition] = field(default_factory=lambda: {A, B})

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def committed(self, tp: TopicPartition) -> int | None:
        values = [c[tp] for c in self.commits if tp in c]
        return values[-1] if values else None


@dataclass
class Memory:
    remembered: list[tuple[str, bytes]] = field(default_factory=list)

    async def __call__(self, routed: Iterable[tuple[str, bytes]]) -> None:
        self.remembered.extend(routed)


def committer(memory: Memory | None = None, **options: Any) -> Committer:
    c = Committer(memory or Memory(), pause=0.0, **options)
    c.start()
    return c


async def hand_over(
    c: Committer, consumer: FakeConsumer, batch: list[Record], ids: dict[str, bytes]
) -> tuple[asyncio.Future[None], list[Record]]:
    """Admit, hold and submit ``batch`` with one ack future the test resolves."""
    kept = c.admit(batch, consumer)
    generation = c.generation
    c.hold(ids)
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    nexts: dict[TopicPartition, int] = {}
    for r in kept:
        nexts[TopicPartition(r.topic, r.partition)] = r.offset + 1
    await c.submit(Flight(generation, [ack], nexts, ids))
    return ack, kept


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_offsets_are_committed_in_order_once_every_earlier_batch_is_acked() -> None:
    consumer, memory = FakeConsumer(), Memory()
    c = committer(memory)
    first, _ = await hand_over(c, consumer, records(A, 0, 9), {"e1": b"1"})
    second, _ = await hand_over(c, consumer, records(A, 10, 19), {"e2": b"2"})
    second.set_result(None)
    await settle()
    assert consumer.commits == []  # the later batch is acked, the earlier one is not
    assert memory.remembered == []
    first.set_result(None)
    await c.drain()
    assert consumer.committed(A) == 20
    assert memory.remembered == [("e1", b"1"), ("e2", b"2")]
    await c.close()


async def test_an_id_in_a_batch_not_yet_acked_counts_as_seen_until_it_is_remembered() -> (
    None
):
    consumer = FakeConsumer()
    c = committer()
    ack, _ = await hand_over(c, consumer, records(A, 0, 0), {"e1": b"d"})
    assert c.in_flight(["e1", "e2"]) == {"e1": b"d"}
    ack.set_result(None)
    await c.drain()
    assert c.in_flight(["e1"]) == {}
    await c.close()


async def test_a_failed_ack_rewinds_every_partition_to_its_last_committed_offset() -> (
    None
):
    consumer, memory = FakeConsumer(), Memory()
    failures: list[BaseException] = []
    c = committer(memory, on_failure=failures.append)
    ok, _ = await hand_over(c, consumer, records(A, 0, 4), {"e1": b"1"})
    ok.set_result(None)
    await c.drain()
    bad, _ = await hand_over(
        c, consumer, records(A, 5, 9) + records(B, 0, 3), {"e2": b"2"}
    )
    later, _ = await hand_over(c, consumer, records(B, 4, 6), {"e3": b"3"})
    later.set_result(None)
    bad.set_exception(KafkaTimeoutError())
    await c.drain()
    assert len(failures) == 1
    # A goes back to what was committed, B (never committed) to the first offset seen.
    assert set(consumer.seeks) == {(A, 5), (B, 0)}
    assert consumer.committed(A) == 5
    assert (
        consumer.committed(B) is None
    )  # the acked later batch was dropped, not committed
    assert ("e3", b"3") not in memory.remembered
    assert c.in_flight(["e2", "e3"]) == {}
    await c.close()


async def test_a_batch_fetched_before_a_rewind_is_dropped_and_sought_back() -> None:
    consumer = FakeConsumer()
    c = committer()
    bad, _ = await hand_over(c, consumer, records(A, 0, 4), {})
    bad.set_exception(KafkaTimeoutError())
    await c.drain()
    consumer.seeks.clear()
    # Records 5.. were fetched before the seek back to 0: they must not be routed.
    kept = c.admit(records(A, 5, 9) + records(B, 0, 1), consumer)
    assert [r.offset for r in kept if r.partition == A.partition] == []
    assert consumer.seeks == [(A, 0)]
    again = c.admit(records(A, 0, 9), consumer)
    assert len(again) == 10
    await c.close()


async def test_a_batch_routed_while_a_rewind_happened_is_not_handed_over() -> None:
    consumer = FakeConsumer()
    c = committer()
    c.admit(records(A, 0, 4), consumer)
    generation = c.generation
    c.rewind(KafkaTimeoutError())
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ack.set_result(None)
    assert not await c.submit(Flight(generation, [ack], {A: 5}, {}))
    await c.drain()
    assert consumer.commits == []
    await c.close()


async def test_no_offset_is_ever_committed_past_a_record_whose_outputs_are_unacked() -> (
    None
):
    consumer = FakeConsumer()
    c = committer(depth=8)
    acks: list[tuple[asyncio.Future[None], TopicPartition, int]] = []
    for start in (0, 10, 20):
        for tp in (A, B):
            ack, _ = await hand_over(c, consumer, records(tp, start, start + 9), {})
            acks.append((ack, tp, start))
    # Acknowledge out of order; after each step no commit may pass an unacked record.
    for index in (3, 5, 0, 4, 1, 2):
        acks[index][0].set_result(None)
        await settle()
        for tp in (A, B):
            committed = consumer.committed(tp)
            unacked = [first for ack, p, first in acks if p == tp and not ack.done()]
            if committed is not None and unacked:
                assert committed <= min(unacked)
    await c.drain()
    assert consumer.committed(A) == 30
    assert consumer.committed(B) == 30
    await c.close()


async def test_at_most_depth_batches_are_in_the_air_at_once() -> None:
    consumer = FakeConsumer()
    c = committer(depth=2)
    first, _ = await hand_over(c, consumer, records(A, 0, 0), {})
    await hand_over(c, consumer, records(A, 1, 1), {})
    third = asyncio.create_task(hand_over(c, consumer, records(A, 2, 2), {}))
    await settle()
    assert not third.done()  # waits for a slot
    first.set_result(None)
    await settle()
    assert third.done()
    c.rewind(KafkaTimeoutError())
    await c.close()


async def test_partitions_no_longer_held_are_not_committed() -> None:
    consumer = FakeConsumer()
    c = committer()
    ack, _ = await hand_over(c, consumer, records(A, 0, 1) + records(B, 0, 1), {})
    consumer.held = {A}
    ack.set_result(None)
    await c.drain()
    assert consumer.commits == [{A: 2}]
    await c.close()
