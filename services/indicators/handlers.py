"""From delivered Kafka records to (event type, datum) pairs the store counts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError
from services.contracts.ids import EVENT_TYPES

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    """A batch read: its records in order, and how many were unreadable."""

    records: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    unreadable: int = 0


def read_batch(catalog: Catalog, records: Iterable[Any]) -> Decoded:
    """Decode deliveries (projected schemas); an unreadable one is logged and skipped.

    The router writes these topics, so an unreadable record is a hub fault: it must
    not stop the counts, and it is logged with its position, never its content.
    """
    out = Decoded()
    for record in records:
        try:
            out.records.append(_event(catalog, record.value))
        except ContractError as e:
            out.unreadable += 1
            log.warning(
                "skipping unreadable record %s[%d]@%d: %s",
                record.topic, record.partition, record.offset, type(e).__name__,
            )  # fmt: skip
    return out


def _event(catalog: Catalog, value: bytes | None) -> tuple[str, Mapping[str, Any]]:
    entry, datum = codec.decode(catalog, value or b"", plain=True)
    event_type = entry.name.split(".")[0]
    if event_type not in EVENT_TYPES or not isinstance(datum, Mapping):
        raise ContractError(f"a {entry.name} record, not an event")
    return event_type, datum
