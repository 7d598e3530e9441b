"""Partition lists asked of the producer once per topic, all at once when warmed."""

from __future__ import annotations

import asyncio
from typing import cast

from aiokafka import AIOKafkaProducer

from services.runtime.batches import Partitions


class _Producer:
    """Answers partitions_for after a turn of the loop, counting the questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.waiting = 0
        self.most_waiting = 0

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked.append(topic)
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await asyncio.sleep(0.01)
        self.waiting -= 1
        return {1, 0}


async def test_warming_asks_for_every_unknown_topic_at_once_and_only_once() -> None:
    producer = _Producer()
    partitions = Partitions(cast(AIOKafkaProducer, producer))
    assert await partitions.of("hub.audit") == [0, 1]
    await partitions.warm(["hub.out.a.referral", "hub.out.b.referral", "hub.audit"])
    assert producer.most_waiting == 2  # the two new topics were asked together
    assert sorted(producer.asked) == [
        "hub.audit",
        "hub.out.a.referral",
        "hub.out.b.referral",
    ]
    assert await partitions.of("hub.out.b.referral") == [0, 1]
    assert len(producer.asked) == 3  # known from now on
