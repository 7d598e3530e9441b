"""Rebuild the tracker's state from Kafka alone, and compare it with the live state.

The tracker's topic holds every lifecycle event the policy delivered to it, so the
state is reproducible: read the topic from its beginning into a fresh database and
the referrals and their histories come out the same. Notices are not on the topic
(they are the checker's output at a time), so they are not part of the comparison.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from services.contracts.catalog import Catalog
from services.referrals.errors import ReferralsError
from services.referrals.handlers import read_batch
from services.referrals.store import BatchResult, Store
from services.runtime.rebuild import read_from_beginning
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
    done = Rebuilt()

    def apply(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        decoded = read_batch(catalog, records)
        done.add(len(records), store.apply(decoded.transitions), decoded.unreadable)

    try:
        await read_from_beginning(kafka, [topic], "puente-referrals-rebuild", apply)
    except KafkaError as e:
        raise RebuildError(f"reading {topic} failed: {e}") from e
    finally:
        store.close()
    return done


def _fresh(target: Path) -> Store:
    if target.exists():
        raise ReferralsError(f"{target} exists; a rebuild writes a fresh database")
    return Store.open(target)


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
