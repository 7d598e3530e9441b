"""Rebuild the counts from Kafka alone, and compare them with the live database.

The service's delivery topics hold every event the policy delivered to it, so the
counts are reproducible: read the topics from their beginning into a fresh database
and every indicator's counts come out the same (event ids keep each event once).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue
from services.indicators.errors import IndicatorsError
from services.indicators.handlers import read_batch
from services.indicators.store import Store
from services.runtime.kafka import admin_config, consumer_config
from services.runtime.settings import KafkaSettings


class RebuildError(IndicatorsError):
    """The topics could not be read to the end (the broker may be unreachable)."""

    retriable = True


@dataclass
class Rebuilt:
    """What a rebuild read and did."""

    records: int = 0
    counted: int = 0
    duplicates: int = 0
    unreadable: int = 0


async def rebuild(
    kafka: KafkaSettings,
    catalog: Catalog,
    catalogue: Catalogue,
    topics: Sequence[str],
    target: Path,
) -> Rebuilt:
    """Read ``topics`` from their beginning into a fresh database at ``target``."""
    store = await asyncio.to_thread(_fresh, target)
    name = f"puente-indicators-rebuild-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, name))
    done = Rebuilt()
    try:
        assigned = await partitions(kafka, topics, name)
        if not assigned:
            return done  # nothing was ever delivered to the service
        await consumer.start()
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                decoded = read_batch(catalog, records)
                result = store.apply(catalogue, decoded.records)
                done.records += len(records)
                done.counted += result.counted
                done.duplicates += result.duplicates
                done.unreadable += decoded.unreadable + result.unreadable
            if not batch and await _caught_up(consumer, assigned):
                return done
    except KafkaError as e:
        raise RebuildError(f"reading {', '.join(topics)} failed: {e}") from e
    finally:
        await consumer.stop()
        store.close()


def _fresh(target: Path) -> Store:
    if target.exists():
        raise IndicatorsError(f"{target} exists; a rebuild writes a fresh database")
    return Store.open(target)


async def partitions(
    kafka: KafkaSettings, topics: Sequence[str], client: str
) -> list[TopicPartition]:
    """The partitions of those of ``topics`` that exist, asked of the broker."""
    admin = AIOKafkaAdminClient(**admin_config(kafka, client))
    await admin.start()
    try:
        existing = [t for t in topics if t in set(await admin.list_topics())]
        described = await admin.describe_topics(existing) if existing else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    )


async def _caught_up(consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> bool:
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is not None and await consumer.position(tp) < high:
            return False
    return True


def differences(live: Store, rebuilt: Store, catalogue: Catalogue) -> list[str]:
    """The indicators whose counts differ between two databases."""
    return [
        ident
        for ident in catalogue.indicators
        if live.day_counts(ident) != rebuilt.day_counts(ident)
    ]
