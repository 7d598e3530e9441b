"""Read what Kafka holds about the ledger: the audit topic and the checkpoint topic.

Both are read from their beginning to the high-water mark seen once reading
starts (end offsets are read from fetch responses, not asked for: the embedded
broker answers ``end_offsets`` wrongly). Nothing is committed; no group is joined.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.audit.checkpoints import from_datum
from services.audit.verify import Anchor, TopicEntries
from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError, PuenteError
from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings

CLIENT_ID: Final = "puente-audit-verify"
_POLL_MS: Final = 500
# An empty partition may never report a high-water mark: after this many empty
# polls in a row, what was read is all there is.
_QUIET_POLLS: Final = 6
_READ_SECONDS: Final = 120.0


class KafkaReadError(PuenteError):
    """A topic could not be read to its end."""

    retriable = True


async def read_to_end(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of ``topic`` from its beginning to its end."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, CLIENT_ID))
    try:
        await consumer.start()
        # Fresh metadata: the consumer's own may not hold the topic (Apache Kafka
        # answers its first request, which names no topic, with none).
        cluster = await consumer._client.fetch_all_metadata()
        numbers = sorted(cluster.partitions_for_topic(topic) or ())
        if not numbers:
            return []
        partitions = [TopicPartition(topic, n) for n in numbers]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return await _drain(consumer, partitions, time.monotonic() + _READ_SECONDS)
    except KafkaError as e:
        raise KafkaReadError(f"cannot read {topic}: {e}") from e
    finally:
        await consumer.stop()


async def _drain(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], deadline: float
) -> list[Any]:
    records: list[Any] = []
    quiet = 0
    while time.monotonic() < deadline:
        batch = await consumer.getmany(*partitions, timeout_ms=_POLL_MS)
        got = [r for rs in batch.values() for r in rs]
        records.extend(got)
        quiet = 0 if got else quiet + 1
        if await _at_end(consumer, partitions) or quiet >= _QUIET_POLLS:
            return records
    raise KafkaReadError(
        f"{partitions[0].topic} was not read to its end within the time allowed"
    )


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


def anchors_on(catalog: Catalog, records: Iterable[Any], where: str) -> list[Anchor]:
    """The signed heads on the checkpoint topic (unreadable records are left out)."""
    anchors = []
    for record in records:
        try:
            entry, datum = codec.decode(catalog, record.value or b"")
        except ContractError:
            continue
        if entry.name == "audit_checkpoint":
            anchors.append(Anchor(from_datum(datum), where))
    return anchors


def entries_on(catalog: Catalog, records: Iterable[Any]) -> TopicEntries:
    """The audit ids of the audit topic's records, and how many are unreadable."""
    ids: dict[str, tuple[int, int]] = {}
    ends: dict[int, int] = {}
    unreadable = 0
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
        try:
            _, datum = codec.decode(catalog, record.value or b"", plain=True)
            audit_id = str(uuid.UUID(datum["audit_id"]))
        except (ContractError, KeyError, TypeError, ValueError):
            unreadable += 1
            continue
        ids.setdefault(audit_id, (record.partition, record.offset))
    return TopicEntries(ids, unreadable, ends)


async def both(
    kafka: KafkaSettings, audit_topic: str, checkpoint_topic: str
) -> tuple[list[Any], list[Any]]:
    """The audit topic's and the checkpoint topic's records, read side by side."""
    return await asyncio.gather(
        read_to_end(kafka, audit_topic), read_to_end(kafka, checkpoint_topic)
    )
