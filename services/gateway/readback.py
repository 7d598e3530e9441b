"""Read back what the broker acknowledged: the event id stored at given offsets."""

from __future__ import annotations

import contextlib
import time
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.contracts import headers
from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings

_PATIENCE_S: Final = 3.0

Where = tuple[str, int]


class ReadBack:
    """A group-less consumer, started on first use, that reads single records."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None

    async def ids_at(self, offsets: dict[Where, int]) -> dict[Where, str | None]:
        """The ``ce_id`` of the record at each (topic, partition) offset, if found."""
        found: dict[Where, str | None] = dict.fromkeys(offsets)
        consumer = await self._started()
        consumer.assign([TopicPartition(t, p) for t, p in offsets])
        for (topic, partition), offset in offsets.items():
            consumer.seek(TopicPartition(topic, partition), offset)
        deadline = time.monotonic() + _PATIENCE_S
        waiting = set(offsets)
        while waiting and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                where = (tp.topic, tp.partition)
                for record in records:
                    if where in waiting and record.offset == offsets[where]:
                        found[where] = headers.event_id_of(record.headers)
                        waiting.discard(where)
                    elif where in waiting and record.offset > offsets[where]:
                        waiting.discard(where)  # the offset holds nothing now
        return found

    async def close(self) -> None:
        """Stop the consumer if it was started."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **consumer_config(self._kafka, None, "puente-gateway-readback")
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
