"""The router unit tests' pipeline, with stand-ins for policy and keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.contracts.catalog import Catalog
from services.router.dedupe import DedupeStore
from services.router.pipeline import Pipeline
from tests.unit.router.standins import stand_in_pipeline


@pytest.fixture
def pipeline(catalog: Catalog) -> Pipeline:
    """A fresh pipeline per test."""
    return stand_in_pipeline(catalog)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DedupeStore]:
    """A fresh de-duplication store per test."""
    store = DedupeStore(tmp_path / "dedupe.sqlite")
    yield store
    store.close()
