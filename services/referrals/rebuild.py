"""Rebuild the tracker's state from Kafka alone, and compare it with the live state.

The tracker's topic holds every lifecycle event the policy delivered to it, so the
state is reproducible: read the topic from its beginning into a fresh database and
the referrals and their histories come out the same. Notices are not on the topic
(they are the checker's output at a time), so they are not part of the comparison.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.contracts.catalog import Catalog
from services.referrals.errors import ReferralsError
from services.referrals.handlers import read_batch
from services.referrals.store import BatchResult, Store
from services.runtime.kafka import admin_config, consumer_config
from services.runtime.settings import KafkaSettings


class RebuildError(ReferralsError):
    """The topic could not be read to the end (the broker may be unreachable)."""

    retriable = True


@dataclass
class Rebuilt:
    """What a rebuild read and did."""

    records: int = 0
    applied: int = 0
    refused: int = 0
    duplicates: int = 0
    unreadable: int = 0

    def add(self, records: int, result: BatchResult, unreadable: int) -> None:
        """Count one batch."""
        self.records += records
        self.applied += result.applied
        self.refused += len(result.refused)
        self.duplicates += result.duplicates
        self.unreadable += unreadable


async def rebuild(
    kafka: KafkaSettings, catalog: Catalog, topic: str, target: Path
) -> Rebuilt:
    """Read ``topic`` from its beginning into a fresh database at ``target``."""
    store = await asyncio.to_thread(_fresh, target)
    consumer = AIOKafkaConsumer(
        **consumer_config(kafka, None, f"puente-referrals-rebuild-{uuid.uuid4().hex[:6]}")
    )
    done = Rebuilt()
    try:
        assigned = await partitions(kafka, topic)
        if not assigned:
            return done  # nothing was ever delivered to the tracker
        await consumer.start()
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                decoded = read_batch(catalog, records)
                done.add(
                    len(records), store.apply(decoded.transitions), decoded.unreadable
                )
            if not batch and await _caught_up(consumer, assigned):
                return done
    except KafkaError as e:
        raise RebuildError(f"reading {topic} failed: {e}") from e
    finally:
        await consumer.stop()
        store.close()


async def partitions(kafka: KafkaSettings, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none if it does not exist), asked of the broker.

    A consumer's metadata cache may not list a topic it never subscribed to (Apache
    Kafka answers its first metadata request for no topic), so an admin client asks.
    """
    admin = AIOKafkaAdminClient(
        **admin_config(kafka, f"puente-referrals-rebuild-{uuid.uuid4().hex[:6]}")
    )
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    )


def _fresh(target: Path) -> Store:
    if target.exists():
        raise ReferralsError(f"{target} exists; a rebuild writes a fresh database")
    return Store.open(target)


async def _caught_up(consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> bool:
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is not None and await consumer.position(tp) < high:
            return False
    return True


def differences(live: Store, rebuilt: Store) -> list[str]:
    """Referral ids whose state or history differ between two databases."""
    a, b = live.snapshot(), rebuilt.snapshot()
    states = _by_id(a["referrals"]), _by_id(b["referrals"])
    histories = _histories(a["history"]), _histories(b["history"])
    ids = set(states[0]) | set(states[1]) | set(histories[0]) | set(histories[1])
    return sorted(
        i
        for i in ids
        if states[0].get(i) != states[1].get(i)
        or histories[0].get(i) != histories[1].get(i)
    )


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["referral_id"]): r for r in rows}


def _histories(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    # Per referral: events of different referrals may interleave differently when
    # the topic has several partitions; one referral's events are in one partition.
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["referral_id"]), []).append(row)
    return out
