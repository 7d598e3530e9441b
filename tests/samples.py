"""Small, valid natural-JSON records built from any schema (for tests only)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

from services.contracts import lifecycle
from services.contracts.catalog import SchemaEntry
from services.contracts.samples import minimal_event

# Before the unit tests' clock (tests.unit.router.standins.NOW): never in the future.
RECORDED: Final = datetime(2026, 11, 2, 14, 5, 0, 123000, tzinfo=UTC)


def minimal(entry: SchemaEntry, **envelope: Any) -> Any:
    """A record with only its required fields, each set to a simple valid value."""
    record = minimal_event(entry, at=RECORDED)
    if "envelope" in record:
        record["envelope"].update(envelope)
    return record


def authored_referral(datum: Any, publishers: Collection[str]) -> None:
    """Make a generated referral a consistent transition from its rightful author.

    Its lifecycle event, status and source then agree (`contracts.lifecycle`), so the
    router does not refuse it as forged; the source is a publisher among
    ``publishers``, switching to a referring institution's event when needed.
    """
    payload, envelope = datum["payload"], datum["envelope"]
    event = payload["lifecycle_event"]
    author = lifecycle.author_of(event)
    receiving = payload["receiving_institution_id"]
    if author == lifecycle.HUB or (
        author == lifecycle.RECEIVING and receiving not in publishers
    ):
        event = payload["lifecycle_event"] = "CREATED"
        author = lifecycle.REFERRING
    status = payload["status"] = min(lifecycle.TRANSITIONS[event][1])
    payload["previous_status"] = (
        None
        if event == "CREATED"
        else min(p for p, to in lifecycle.EDGES.items() if p and status in to)
    )
    side = "referring" if author == lifecycle.REFERRING else "receiving"
    envelope["source_institution_id"] = payload[f"{side}_institution_id"]
