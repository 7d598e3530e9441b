"""Minimal records: valid for every schema of the catalog, fresh or fixed in time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.contracts.samples import minimal_event
from services.runtime.settings import REPO_ROOT

CATALOG = Catalog.load(REPO_ROOT / "schemas")


@pytest.mark.parametrize("name", CATALOG.names)
def test_a_minimal_record_of_every_schema_encodes_and_decodes_back(name: str) -> None:
    entry = CATALOG.get(name)
    datum = codec_for(entry).to_datum(minimal_event(entry))

    _, decoded = codec.decode(CATALOG, codec.encode(entry, datum, check=True))

    assert decoded == datum


def test_an_event_names_its_publisher_its_id_and_the_time_asked_for() -> None:
    entry = CATALOG.get("return_arrival")
    at = datetime(2026, 11, 2, 14, 5, tzinfo=UTC)

    event = minimal_event(entry, "minsal", "evt-1", at=at)

    envelope = event["envelope"]
    assert (envelope["event_id"], envelope["source_institution_id"]) == (
        "evt-1",
        "minsal",
    )
    assert envelope["event_type"] == "return_arrival"
    assert envelope["occurred_at"] == "2026-11-02T14:05:00.000Z"


def test_two_events_get_different_ids() -> None:
    entry = CATALOG.get("referral")

    first, second = minimal_event(entry), minimal_event(entry)

    assert first["envelope"]["event_id"] != second["envelope"]["event_id"]
