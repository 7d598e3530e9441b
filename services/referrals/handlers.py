"""From delivered Kafka records to the tracker's transitions."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.errors import ContractError
from services.referrals.machine import Transition, transition_of

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    """A batch read: its transitions in order, and how many records were unreadable."""

    transitions: list[Transition] = field(default_factory=list)
    unreadable: int = 0


def read_batch(catalog: Catalog, records: Iterable[Any]) -> Decoded:
    """Decode referral deliveries; a record that is not one is logged and skipped.

    The router writes this topic, so an unreadable record is a hub fault, not an
    institution's: it must not stop the tracker, and it is left behind with its
    position (topic, partition, offset) in the log, never its content.
    """
    out = Decoded()
    for record in records:
        try:
            out.transitions.append(transition_of(_referral(catalog, record.value)))
        except (ContractError, KeyError, TypeError) as e:
            out.unreadable += 1
            log.warning(
                "skipping unreadable record %s[%d]@%d: %s",
                record.topic, record.partition, record.offset, type(e).__name__,
            )  # fmt: skip
    return out


def _referral(catalog: Catalog, value: bytes | None) -> Any:
    entry, datum = codec.decode(catalog, value or b"")
    if entry.name.split(".")[0] != "referral":
        raise ContractError(f"a {entry.name} record, not a referral")
    return datum
