"""The router unit tests' pipeline, with stand-ins for policy and keys."""

from __future__ import annotations

import pytest

from services.contracts.catalog import Catalog
from services.router.pipeline import Pipeline
from tests.unit.router.standins import stand_in_pipeline


@pytest.fixture
def pipeline(catalog: Catalog) -> Pipeline:
    """A fresh pipeline per test."""
    return stand_in_pipeline(catalog)
