"""Rebuild the counts from Kafka alone, and compare them with the live database.

The service's delivery topics hold every event the policy delivered to it, so the
counts are reproducible: read the topics from their beginning into a fresh database
and every indicator's counts come out the same (event ids keep each event once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue
from services.indicators.errors import IndicatorsError
from services.indicators.handlers import read_batch
from services.indicators.store import Store
from services.runtime.rebuild import read_from_beginning
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
    *,
    releases_from: Path | None = None,
) -> Rebuilt:
    """Read ``topics`` from their beginning into a fresh database at ``target``.

    ``releases_from``: a database whose releases the new one takes over. A release
    is what was published; the topics cannot tell which events came in after it.
    """
    store = await asyncio.to_thread(_fresh, target)
    done = Rebuilt()

    def apply(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        decoded = read_batch(catalog, records)
        result = store.apply(catalogue, decoded.records)
        done.records += len(records)
        done.counted += result.counted
        done.duplicates += result.duplicates
        done.unreadable += decoded.unreadable + result.unreadable

    try:
        await read_from_beginning(kafka, topics, "puente-indicators-rebuild", apply)
        # After the counts: with releases in place, every event read would be late.
        if releases_from is not None:
            await asyncio.to_thread(_adopt, store, releases_from)
    except KafkaError as e:
        raise RebuildError(f"reading {', '.join(topics)} failed: {e}") from e
    finally:
        store.close()
    return done


def _adopt(store: Store, source: Path) -> None:
    other = Store.open(source, readonly=True)
    try:
        store.adopt_releases(other)
    finally:
        other.close()


def _fresh(target: Path) -> Store:
    if target.exists():
        raise IndicatorsError(f"{target} exists; a rebuild writes a fresh database")
    return Store.open(target)


def differences(live: Store, rebuilt: Store, catalogue: Catalogue) -> list[str]:
    """The indicators whose counts (live or released) differ between two databases."""
    return [
        ident
        for ident in catalogue.indicators
        if live.day_counts(ident) != rebuilt.day_counts(ident)
        or live.released_counts(ident) != rebuilt.released_counts(ident)
    ]
