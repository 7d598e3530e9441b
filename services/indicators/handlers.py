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
from services.runtime.deliveries import decode_each

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
    events, unreadable = decode_each(records, lambda v: _event(catalog, v), log)
    return Decoded(events, unreadable)


def _event(catalog: Catalog, value: bytes | None) -> tuple[str, Mapping[str, Any]]:
    entry, datum = codec.decode(catalog, value or b"", plain=True)
    event_type = entry.name.split(".")[0]
    if event_type not in EVENT_TYPES or not isinstance(datum, Mapping):
        raise ContractError(f"a {entry.name} record, not an event")
    return event_type, datum
