"""Helpers shared by the simulator's tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.contracts.codec import decode, encode
from services.contracts.natural import codec_for

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)

Wire = Callable[[dict[str, Any]], Any]


@pytest.fixture
def now() -> datetime:
    """A fixed, aware clock reading."""
    return NOW


@pytest.fixture
def wire(catalog: Catalog) -> Wire:
    """Natural JSON -> datum -> single-object bytes -> datum; returns what was read."""

    def convert(event: dict[str, Any]) -> Any:
        entry = catalog.get(event["envelope"]["event_type"])
        datum = codec_for(entry).to_datum(event)
        data = encode(entry, datum)
        read_entry, read = decode(catalog, data)
        assert read_entry.name == entry.name
        assert read == datum
        return read

    return convert
