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
from services.runtime.deliveries import decode_each

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
    transitions, unreadable = decode_each(
        records,
        lambda v: transition_of(_referral(catalog, v)),
        log,
        (ContractError, KeyError, TypeError),
    )
    return Decoded(transitions, unreadable)


def _referral(catalog: Catalog, value: bytes | None) -> Any:
    entry, datum = codec.decode(catalog, value or b"")
    if entry.name.split(".")[0] != "referral":
        raise ContractError(f"a {entry.name} record, not a referral")
    return datum
